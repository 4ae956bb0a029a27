package plugin

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

// migrateFlags are migrate's own flags.
type migrateFlags struct {
	dryRun  bool
	file    string
	dir     string
	timeout time.Duration
}

func newMigrateCommand(o *options) *cobra.Command {
	var f migrateFlags
	cmd := &cobra.Command{
		Use:   "migrate daemonset/NAME [-f NODEAGENTSET.yaml]",
		Short: "Replace a DaemonSet by a NodeAgentSet that takes over its running agents",
		Long: `Replace a DaemonSet by the equivalent NodeAgentSet without restarting an agent:
the DaemonSet is deleted with its pods orphaned, the pods of its current
revision are labelled as the NodeAgentSet's first revision (same template),
and the NodeAgentSet, created paused, adopts them; once it owns every agent
it is resumed. No node ever runs two agents or none.

With -f, the NodeAgentSet ends with that file's spec (same name and
selector as the DaemonSet); if its template differs, a rolling update under
its budgets follows the takeover.

--dry-run prints the steps, with the kubectl commands that do each by hand,
and changes nothing. Should a step fail, migrate says what state the
cluster is in and how to continue or go back to the DaemonSet.`,
		Example: `  kubectl nodeagentset migrate daemonset/node-exporter -n monitoring --dry-run
  kubectl nodeagentset migrate daemonset/node-exporter -n monitoring
  kubectl nodeagentset migrate ds/fluent-bit -n logging -f fluent-bit-nas.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.migrate(cmd, args[0], f)
		},
	}
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "print the steps and change nothing")
	cmd.Flags().StringVarP(&f.file, "filename", "f", "", "the NodeAgentSet to end with (default: the DaemonSet converted)")
	cmd.Flags().StringVar(&f.dir, "backup-dir", ".", "where to save the DaemonSet (to revert) and the NodeAgentSet created")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 5*time.Minute, "the longest to wait for the garbage collector and for the adoption")
	return cmd
}

// daemonSetName reads daemonset/NAME (or ds/, daemonsets.apps/).
func daemonSetName(ref string) (string, error) {
	kind, name, ok := strings.Cut(ref, "/")
	switch {
	case !ok || name == "":
		return "", fmt.Errorf("%q: give the DaemonSet as daemonset/NAME", ref)
	case kind != "daemonset" && kind != "daemonsets" && kind != "ds" && kind != "daemonset.apps" && kind != "daemonsets.apps":
		return "", fmt.Errorf("%q: only a DaemonSet can be migrated", ref)
	}
	return name, nil
}

func (o *options) migrate(cmd *cobra.Command, ref string, f migrateFlags) error {
	name, err := daemonSetName(ref)
	if err != nil {
		return err
	}
	// kubectl's own limits: client-go's default (5 per second) would make
	// labelling a thousand agents take minutes, while no controller runs.
	o.flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.QPS, c.Burst = 50, 300
		return c
	}
	c, ns, err := o.client()
	if err != nil {
		return err
	}
	x := &migrator{c: c, out: o.streams.Out, errOut: o.streams.ErrOut, timeout: f.timeout}
	in, err := x.read(cmd.Context(), ns, name, f)
	if err != nil {
		return err
	}
	m, err := assess(in)
	if err != nil {
		return fmt.Errorf("not migrating: %w", err)
	}
	m.print(x.out)
	if f.dryRun {
		b, err := manifest(in.First)
		if err != nil {
			return err
		}
		fmt.Fprintf(x.out, "\nThe NodeAgentSet created in step 4 (%s):\n%s\nDry run: nothing was changed.\n", in.Manifest, b)
		return nil
	}
	return x.run(cmd.Context(), m)
}

// print writes what the migration adopts, its notes and its steps.
func (m *migration) print(w io.Writer) {
	ds := m.in.DS
	fmt.Fprintf(w, "Migration of daemonset/%s (namespace %s) to nodeagentset/%s:\n", ds.Name, ds.Namespace, ds.Name)
	fmt.Fprintf(w, "  %d agents of the DaemonSet's revision %s are adopted as they are, as the NodeAgentSet's revision 1 (%s).\n",
		len(m.current), m.dsHash, m.hash)
	for _, n := range m.notes {
		fmt.Fprintf(w, "  Note: %s.\n", n)
	}
	fmt.Fprintln(w, "Steps (each with the kubectl commands that do it by hand):")
	for i, s := range m.steps {
		fmt.Fprintf(w, "  %d. %s\n", i+1, s.title)
		for _, c := range s.manual {
			fmt.Fprintf(w, "       $ %s\n", c)
		}
	}
}

// failed is the report of a step that failed: the state the cluster is
// in, and how to continue or go back.
func (m *migration) failed(w io.Writer, i int, err error) error {
	s := m.steps[i]
	fmt.Fprintf(w, "\nStep %d failed: %v\n", i+1, err)
	state := "Nothing in the cluster has changed."
	if i > 0 {
		state = m.steps[i-1].after
	}
	fmt.Fprintf(w, "The cluster is as after step %d: %s Step %d (%s) may be partly done.\n", i, state, i+1, s.title)
	fmt.Fprintln(w, "To continue, run these (each is safe to run again):")
	todo := m.steps[i:]
	if s.kind == stepAdopt {
		// An agent the set would replace is one the labelling missed.
		todo = append([]step{m.steps[stepRelabel]}, todo...)
	}
	for _, rest := range todo {
		for _, c := range rest.manual {
			fmt.Fprintf(w, "  $ %s\n", c)
		}
	}
	if len(s.revert) > 0 {
		fmt.Fprintln(w, "To go back to the DaemonSet instead:")
		for _, c := range s.revert {
			fmt.Fprintf(w, "  $ %s\n", c)
		}
	}
	return fmt.Errorf("migration stopped at step %d: %w", i+1, err)
}

// manifest is a set as a file to create: no server fields, no status.
func manifest(set *nasv1alpha1.NodeAgentSet) ([]byte, error) {
	b, err := yaml.Marshal(fresh(set))
	if err != nil {
		return nil, err
	}
	return dropEmptyStatus(b), nil
}

// backup is the DaemonSet as a file to re-create it from.
func backup(ds *appsv1.DaemonSet) ([]byte, error) {
	out := &appsv1.DaemonSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: ds.Name, Namespace: ds.Namespace, Labels: ds.Labels,
			Annotations: withoutLastApplied(ds.Annotations)},
		Spec: ds.Spec,
	}
	b, err := yaml.Marshal(out)
	if err != nil {
		return nil, err
	}
	return dropEmptyStatus(b), nil
}

// firstSet is the set created first: the DaemonSet converted (with the
// non-template spec of -f, so the set never runs another strategy than
// the one asked for), paused.
func firstSet(ds *appsv1.DaemonSet, target *nasv1alpha1.NodeAgentSet) (*nasv1alpha1.NodeAgentSet, error) {
	live, err := backup(ds)
	if err != nil {
		return nil, err
	}
	converted, err := Convert(live)
	if err != nil {
		return nil, err
	}
	set := &nasv1alpha1.NodeAgentSet{}
	if err := yaml.UnmarshalStrict(converted, set); err != nil {
		return nil, fmt.Errorf("reading the converted DaemonSet: %w", err)
	}
	if target != nil {
		template := set.Spec.Template
		set.Spec = *target.Spec.DeepCopy()
		set.Spec.Template = template
		// The first set takes the DaemonSet's agents over as they run: node
		// overrides are part of the revision (the agents' relabelled hash
		// has none), and suspend would delete every adopted agent. Both
		// come with the target's spec once the takeover is done (finish).
		set.Spec.NodeOverrides, set.Spec.Suspend = nil, false
	}
	if set.Spec.UpdateStrategy.RollingUpdate == nil {
		set.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{}
	}
	set.Spec.UpdateStrategy.RollingUpdate.Paused = true
	return set, nil
}

// readTarget reads the set of -f.
func readTarget(path string) (*nasv1alpha1.NodeAgentSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	set := &nasv1alpha1.NodeAgentSet{}
	if err := yaml.UnmarshalStrict(b, set); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if set.Kind != "NodeAgentSet" {
		return nil, fmt.Errorf("%s: expected kind NodeAgentSet, got %q", path, set.Kind)
	}
	return set, nil
}

// files are where the DaemonSet and the first set are saved.
func files(dir, ns, name string) (backupPath, manifestPath string) {
	return filepath.Join(dir, fmt.Sprintf("daemonset-%s-%s.yaml", ns, name)),
		filepath.Join(dir, fmt.Sprintf("nodeagentset-%s-%s.yaml", ns, name))
}

// isGone tells a read that found nothing from a failed one.
func isGone(err error) (bool, error) {
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	return false, err
}

// liveAgents are the pods of a list that are not being deleted.
func liveAgents(pods []corev1.Pod) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

var errMismatch = errors.New("revision mismatch")

// revisionOf is the revision name the set's controller reports, checked
// against the one the pods were labelled with.
func revisionOf(set *nasv1alpha1.NodeAgentSet, hash string) error {
	want := revision.Name(set, hash)
	if got := set.Status.UpdateRevision; got != "" && got != want {
		return fmt.Errorf("%w: the controller made %s the first revision, not %s, so it counts the agents as outdated; the set is paused and replaces none: compare the two revisions' templates (kubectl get controllerrevision -o yaml) and report the difference",
			errMismatch, got, want)
	}
	return nil
}

// checkHash refuses an agent the set would count as outdated: every agent
// must carry the first revision's hash, but those of the DaemonSet's older
// revisions (OnDelete), which are adopted as they are.
func (m *migration) checkHash(p *corev1.Pod) error {
	got := podtemplate.Hash(p)
	if got == m.hash {
		return nil
	}
	for i := range m.older {
		if podtemplate.Hash(&m.older[i]) == got {
			return nil
		}
	}
	return fmt.Errorf("%w: pod %s carries revision hash %q, not %q: resuming the set would replace it; the set is paused and replaces nothing: label the agents (step 3) and run step 5 on",
		errMismatch, p.Name, got, m.hash)
}
