package plugin

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

func newConvertCommand(o *options) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "convert -f FILE",
		Short: "Print the NodeAgentSet equivalent to a DaemonSet",
		Long: `Print the NodeAgentSet equivalent to a DaemonSet manifest (- reads standard
input): the same selector, template, update strategy, minReadySeconds and
revisionHistoryLimit. Apply the output, then delete the DaemonSet.`,
		Example: `  kubectl nodeagentset convert -f fluent-bit-daemonset.yaml | kubectl apply -f -`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := o.streams.In
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			b, err := io.ReadAll(in)
			if err != nil {
				return err
			}
			out, err := Convert(b)
			if err != nil {
				return err
			}
			_, err = o.streams.Out.Write(out)
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "the DaemonSet manifest (- for standard input)")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

// Convert turns a DaemonSet manifest into the equivalent NodeAgentSet YAML.
func Convert(manifest []byte) ([]byte, error) {
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(manifest, &ds); err != nil {
		return nil, fmt.Errorf("reading the DaemonSet: %w", err)
	}
	if ds.Kind != "DaemonSet" {
		return nil, fmt.Errorf("expected kind DaemonSet, got %q", ds.Kind)
	}
	set := nasv1alpha1.NodeAgentSet{
		TypeMeta: metav1.TypeMeta{APIVersion: nasv1alpha1.GroupVersion.String(), Kind: "NodeAgentSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name: ds.Name, Namespace: ds.Namespace, Labels: ds.Labels,
		},
		Spec: nasv1alpha1.NodeAgentSetSpec{
			Selector:             nasv1alpha1.SelectorFromMeta(ds.Spec.Selector),
			Template:             ds.Spec.Template,
			MinReadySeconds:      ds.Spec.MinReadySeconds,
			RevisionHistoryLimit: ds.Spec.RevisionHistoryLimit,
		},
	}
	switch ds.Spec.UpdateStrategy.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
		set.Spec.UpdateStrategy.Type = nasv1alpha1.OnDeleteStrategy
	default:
		set.Spec.UpdateStrategy.Type = nasv1alpha1.RollingUpdateStrategy
		if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil {
			out := &nasv1alpha1.RollingUpdate{MaxUnavailable: ru.MaxUnavailable, MaxSurge: ru.MaxSurge}
			if ru.MaxSurge != nil && ru.MaxSurge.String() != "0" && ru.MaxSurge.String() != "0%" {
				// apps/v1 allows a surge only with maxUnavailable 0, and a
				// surging DaemonSet never takes an available agent down
				// first: say so rather than leave our default of 1.
				out.MaxUnavailable = ptr.To(intstr.FromInt32(0))
			}
			set.Spec.UpdateStrategy.RollingUpdate = out
		}
	}
	if annotations := withoutLastApplied(ds.Annotations); len(annotations) > 0 {
		set.Annotations = annotations
	}
	out, err := yaml.Marshal(set)
	if err != nil {
		return nil, err
	}
	return dropEmptyStatus(out), nil
}

func withoutLastApplied(in map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		if k != "kubectl.kubernetes.io/last-applied-configuration" && k != "deprecated.daemonset.template.generation" {
			out[k] = v
		}
	}
	return out
}

// dropEmptyStatus removes the zero status (and creationTimestamp: null) the
// Go types always marshal, which a manifest should not carry.
func dropEmptyStatus(b []byte) []byte {
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return b
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	if spec, ok := m["spec"].(map[string]any); ok {
		if t, ok := spec["template"].(map[string]any); ok {
			if md, ok := t["metadata"].(map[string]any); ok {
				delete(md, "creationTimestamp")
			}
		}
	}
	out, err := yaml.Marshal(m)
	if err != nil {
		return b
	}
	return out
}
