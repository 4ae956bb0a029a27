package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

func newConvertCommand(o *options) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "convert -f FILE",
		Short: "Turn the DaemonSets of a manifest into NodeAgentSets, passing everything else through",
		Long: `Read a manifest as projects ship it (- reads standard input): YAML documents
separated by ---, or JSON, possibly List objects. Every apps/v1 DaemonSet
becomes the equivalent NodeAgentSet (the same selector, template, update
strategy, minReadySeconds and revisionHistoryLimit); every other document
(ServiceAccount, RBAC, PodDisruptionBudget, ...) is printed unchanged, comments
included. Empty documents are dropped.

To move a running DaemonSet without a gap, see "kubectl nodeagentset migrate".`,
		Example: `  kubectl nodeagentset convert -f calico.yaml | kubectl apply -f -
  curl -sL https://example.org/agent.yaml | kubectl nodeagentset convert -f - > agent-nas.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for i, file := range files {
				b, err := o.readManifest(file)
				if err != nil {
					return err
				}
				out, err := Convert(b)
				if err != nil {
					return fmt.Errorf("%s: %w", displayName(file), err)
				}
				if i > 0 && len(out) > 0 {
					o.printf("---\n")
				}
				if _, err := o.streams.Out.Write(out); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "the manifest (- for standard input); may be repeated")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

func (o *options) readManifest(file string) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(o.streams.In)
	}
	return os.ReadFile(file)
}

func displayName(file string) string {
	if file == "-" {
		return "standard input"
	}
	return file
}

// Convert rewrites a manifest: each apps/v1 DaemonSet, alone or in a List,
// becomes the equivalent NodeAgentSet; other documents are kept byte for
// byte (a PodDisruptionBudget or a ClusterRole is the user's, not ours to
// reformat); empty documents are dropped. Errors name the document by its
// number and line, kind and name.
func Convert(manifest []byte) ([]byte, error) {
	var out bytes.Buffer
	number := 0
	for _, doc := range splitDocuments(manifest) {
		if blank(doc.text) {
			continue
		}
		number++
		converted, err := convertDocument(doc.text)
		if err != nil {
			return nil, fmt.Errorf("document %d (line %d%s): %w", number, doc.line, describe(doc.text), err)
		}
		if converted == nil {
			continue
		}
		if out.Len() > 0 {
			out.WriteString("---\n")
		}
		out.Write(converted)
	}
	return out.Bytes(), nil
}

type document struct {
	text []byte
	line int // where the document starts, counted from 1
}

// splitDocuments cuts a YAML stream at its "---" lines. Done by hand rather
// than with a YAML decoder so that a document passed through keeps its
// comments and layout, and an error can give the line it starts on.
func splitDocuments(manifest []byte) []document {
	var docs []document
	cur := document{line: 1}
	lines := strings.SplitAfter(string(manifest), "\n")
	for n, line := range lines {
		if rest, ok := separator(line); ok {
			docs = append(docs, cur)
			// "--- {a: 1}" starts the next document on the separator's line.
			cur = document{text: []byte(rest), line: n + 1}
			if rest == "" {
				cur.line = n + 2
			}
			continue
		}
		cur.text = append(cur.text, line...)
	}
	return append(docs, cur)
}

// blank says whether a document holds nothing but comments and blank
// lines: it is not counted when documents are numbered.
func blank(doc []byte) bool {
	for line := range strings.Lines(string(doc)) {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}

func separator(line string) (string, bool) {
	trimmed := strings.TrimRight(line, "\r\n")
	if trimmed == "---" {
		return "", true
	}
	if rest, ok := strings.CutPrefix(trimmed, "--- "); ok {
		if strings.HasPrefix(strings.TrimSpace(rest), "#") {
			return "", true
		}
		return rest + "\n", true
	}
	return "", false
}

// describe is ", Kind namespace/name" for an error message, as far as the
// document can be read.
func describe(doc []byte) string {
	var head struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if yaml.Unmarshal(doc, &head) != nil || head.Kind == "" {
		return ""
	}
	name := head.Metadata.Name
	if head.Metadata.Namespace != "" {
		name = head.Metadata.Namespace + "/" + name
	}
	return strings.TrimRight(", "+head.Kind+" "+name, " ")
}

// convertDocument returns the document to print in place of doc, nil to
// drop it.
func convertDocument(doc []byte) ([]byte, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	if len(obj) == 0 {
		return nil, nil // only comments, or nothing: kubectl apply ignores it too
	}
	kind, _ := obj["kind"].(string)
	apiVersion, _ := obj["apiVersion"].(string)
	switch {
	case kind == "DaemonSet":
		set, err := convertDaemonSet(doc, apiVersion)
		if err != nil {
			return nil, err
		}
		return yaml.Marshal(set)
	case strings.HasSuffix(kind, "List"):
		return convertList(obj, doc)
	}
	return withFinalNewline(doc), nil
}

// convertList converts the DaemonSets among a List's items, keeping the
// List. A List without DaemonSets is passed through unchanged.
func convertList(list map[string]any, doc []byte) ([]byte, error) {
	items, _ := list["items"].([]any)
	typedList := list["kind"] == "DaemonSetList" // its items may omit kind
	changed := false
	for i, item := range items {
		m, ok := item.(map[string]any)
		if !ok {
			continue
		}
		if typedList {
			m["kind"], m["apiVersion"] = "DaemonSet", list["apiVersion"]
		}
		if m["kind"] != "DaemonSet" {
			continue
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		apiVersion, _ := m["apiVersion"].(string)
		set, err := convertDaemonSet(b, apiVersion)
		if err != nil {
			return nil, fmt.Errorf("item %d%s: %w", i+1, describe(b), err)
		}
		items[i], changed = set, true
	}
	if !changed {
		return withFinalNewline(doc), nil
	}
	if typedList { // a DaemonSetList of NodeAgentSets would be refused
		list["apiVersion"], list["kind"] = "v1", "List"
	}
	return yaml.Marshal(list)
}

func withFinalNewline(doc []byte) []byte {
	doc = bytes.TrimRight(doc, " \t\r\n")
	return append(doc, '\n')
}

// convertDaemonSet reads a DaemonSet strictly (a misspelt field is an
// error, not silently dropped) and returns the NodeAgentSet as a manifest:
// without status or null creationTimestamps.
func convertDaemonSet(doc []byte, apiVersion string) (map[string]any, error) {
	if apiVersion != "apps/v1" {
		return nil, fmt.Errorf("apiVersion %q: only apps/v1 DaemonSets can be converted", apiVersion)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(doc, &ds); err != nil {
		return nil, fmt.Errorf("reading the DaemonSet: %w", err)
	}
	b, err := json.Marshal(NodeAgentSetFor(&ds))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	asManifest(m)
	return m, nil
}

// dropEmptyStatus is asManifest on YAML.
func dropEmptyStatus(b []byte) []byte {
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return b
	}
	asManifest(m)
	out, err := yaml.Marshal(m)
	if err != nil {
		return b
	}
	return out
}

// asManifest removes what the Go types always marshal and a manifest
// should not carry: the status, and creationTimestamp: null on the object
// and its pod template.
func asManifest(m map[string]any) {
	delete(m, "status")
	dropNullTimestamp(m)
	if spec, ok := m["spec"].(map[string]any); ok {
		dropNullTimestamp(spec["template"])
	}
}

func dropNullTimestamp(obj any) {
	if m, ok := obj.(map[string]any); ok {
		if md, ok := m["metadata"].(map[string]any); ok && md["creationTimestamp"] == nil {
			delete(md, "creationTimestamp")
		}
	}
}

// NodeAgentSetFor is the NodeAgentSet equivalent to a DaemonSet.
func NodeAgentSetFor(ds *appsv1.DaemonSet) *nasv1alpha1.NodeAgentSet {
	set := &nasv1alpha1.NodeAgentSet{
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
			if surges(set) && hostPorts(&set.Spec.Template.Spec) {
				// A surge agent can never bind its node's host port beside
				// the old one (k/k #106417: the DaemonSet stalls), and the
				// CRD refuses the combination: replace one node at a time.
				out.MaxSurge, out.MaxUnavailable = ptr.To(intstr.FromInt32(0)), ptr.To(intstr.FromInt32(1))
			}
		}
	}
	if annotations := withoutLastApplied(ds.Annotations); len(annotations) > 0 {
		set.Annotations = annotations
	}
	return set
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
