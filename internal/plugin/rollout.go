package plugin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/inplace"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

// RestartedAtAnnotation on the template makes `rollout restart` a new
// revision. It is kubectl's own (kubectl rollout restart stamps it on
// Deployments, DaemonSets and StatefulSets), so tools that look for it
// (dashboards, policies) see a restart of a NodeAgentSet the same way.
const RestartedAtAnnotation = inplace.AnnotationRestartedAt

func newRolloutCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout SUBCOMMAND",
		Short: "Manage the rollout of a NodeAgentSet",
		Long:  "Manage the rollout of a NodeAgentSet: watch it, see its history, undo, pause, resume or restart it.",
	}
	cmd.AddCommand(newRolloutStatus(o), newRolloutHistory(o), newRolloutUndo(o),
		newRolloutPause(o, true), newRolloutPause(o, false), newRolloutRestart(o))
	cmd.AddCommand(newRolloutVerbs(o)...)
	return cmd
}

func newRolloutStatus(o *options) *cobra.Command {
	var timeout time.Duration
	follow := true
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show the status of the rollout",
		Long: `Show the status of the rollout, watching the set until it finishes unless
--watch=false.

Exits 0 once the rollout is complete; non-zero, with the reason, when the
progress deadline is exceeded or --timeout passes. With the OnDelete strategy
nothing replaces an old agent until its pod is deleted: once every node has an
available agent, status exits non-zero if some still run an old revision,
saying how many, rather than wait for deletions that may never come.`,
		Example: `  kubectl nodeagentset rollout status node-exporter -n monitoring --timeout 5m`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, set, err := o.getSet(cmd, args[0])
			if err != nil {
				return err
			}
			bar := isTerminal(o.streams.Out)
			if !follow {
				_, line, err := rolloutState(set)
				o.show(line, false, true)
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			last := ""
			_, err = watchtools.UntilWithSync(ctx, watchOne(c, set), &nasv1alpha1.NodeAgentSet{}, nil, func(ev watch.Event) (bool, error) {
				if ev.Type == watch.Deleted {
					return false, fmt.Errorf("%s was deleted", kind(set))
				}
				got, ok := ev.Object.(*nasv1alpha1.NodeAgentSet)
				if !ok {
					return false, nil
				}
				done, line, err := rolloutState(got)
				if line != last {
					o.show(line, bar, done || err != nil)
					last = line
				}
				return done, err
			})
			if err != nil && ctx.Err() != nil && cmd.Context().Err() == nil {
				if bar {
					o.printf("\n")
				}
				return fmt.Errorf("timed out after %v waiting for the rollout of %s", timeout, kind(set))
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait for ever)")
	cmd.Flags().BoolVarP(&follow, "watch", "w", true, "watch the set until the rollout finishes")
	return cmd
}

// watchOne lists and watches the one set, as kubectl rollout status does
// (a field selector on its name), so each change is seen as it happens
// rather than at the next poll.
func watchOne(c client.WithWatch, set *nasv1alpha1.NodeAgentSet) cache.ListerWatcher {
	opts := func(raw metav1.ListOptions) *client.ListOptions {
		return &client.ListOptions{Namespace: set.Namespace, Raw: &raw,
			FieldSelector: fields.OneTermEqualSelector("metadata.name", set.Name)}
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, raw metav1.ListOptions) (runtime.Object, error) {
			list := &nasv1alpha1.NodeAgentSetList{}
			return list, c.List(ctx, list, opts(raw))
		},
		WatchFuncWithContext: func(ctx context.Context, raw metav1.ListOptions) (watch.Interface, error) {
			return c.Watch(ctx, &nasv1alpha1.NodeAgentSetList{}, opts(raw))
		},
	}
}

// rolloutState says whether the rollout is done, a line about it, and an
// error when it failed.
func rolloutState(set *nasv1alpha1.NodeAgentSet) (bool, string, error) {
	st := set.Status
	if st.ObservedGeneration < set.Generation {
		return false, fmt.Sprintf("Waiting for %s rollout to start: the controller has not seen the latest spec yet...", kind(set)), nil
	}
	if c := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionStalled); c != nil && c.Status == "True" {
		return false, "", fmt.Errorf("rollout of %s failed: %s: %s", kind(set), c.Reason, c.Message)
	}
	if c := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionReconciling); c != nil && c.Status == "False" && c.Reason == "Complete" {
		// With OnDelete the controller is done once every node has an
		// available agent, old or new; only a person deleting pods moves
		// the rest, so waiting for them could last for ever.
		if old := st.DesiredNumberScheduled - st.UpdatedNumberScheduled; set.Spec.UpdateStrategy.Type == nasv1alpha1.OnDeleteStrategy && old > 0 {
			return false, "", fmt.Errorf("%s uses the OnDelete strategy: %d of %d nodes still run an old revision; delete their pods to update them",
				kind(set), old, st.DesiredNumberScheduled)
		}
		return true, fmt.Sprintf("%s successfully rolled out (%d nodes)", kind(set), st.DesiredNumberScheduled), nil
	}
	if set.Spec.Suspend {
		return false, fmt.Sprintf("Waiting for %s rollout: suspended (spec.suspend), no agent runs...", kind(set)), nil
	}
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Paused {
		return false, fmt.Sprintf("Waiting for %s rollout: paused (%d of %d nodes updated)...", kind(set), st.UpdatedNumberScheduled, st.DesiredNumberScheduled), nil
	}
	stage := ""
	if line := stageLine(set, time.Now()); line != "" {
		stage = " (" + line + ")"
	}
	return false, fmt.Sprintf("Waiting for %s rollout to finish: %d of %d nodes updated, %d available%s...",
		kind(set), st.UpdatedNumberScheduled, st.DesiredNumberScheduled, st.NumberAvailable, stage), nil
}

// show prints a progress line: redrawn in place on a terminal, one line per
// change otherwise.
func (o *options) show(line string, bar, final bool) {
	if line == "" {
		return
	}
	if !bar {
		o.printf("%s\n", line)
		return
	}
	o.printf("\r\033[K%s", line)
	if final {
		o.printf("\n")
	}
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func newRolloutHistory(o *options) *cobra.Command {
	var number, diffWith int64
	var output *outputFlags
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "Show the revisions of a NodeAgentSet",
		Long: `Show the revisions of a NodeAgentSet with their change cause (the set's
kubernetes.io/change-cause annotation when the revision was made), one
revision's pod template with --revision, or the difference between two with
--revision N --diff-with M.

-o name, json, yaml, jsonpath=... and go-template=... print the set as it was
at each revision (or at the one --revision names): the NodeAgentSet with that
revision's pod template, as kubectl rollout history does for a DaemonSet.`,
		Example: `  kubectl nodeagentset rollout history node-exporter
  kubectl nodeagentset rollout history node-exporter --revision 3
  kubectl nodeagentset rollout history node-exporter --revision 3 --diff-with 2
  kubectl nodeagentset rollout history node-exporter --revision 3 -o jsonpath='{.spec.template.spec.containers[0].image}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !output.table() {
				return o.printRevisions(cmd, args[0], number, output)
			}
			c, set, err := o.getSet(cmd, args[0])
			if err != nil {
				return err
			}
			revs, err := history(cmd.Context(), c, set)
			if err != nil {
				return err
			}
			if number == 0 {
				o.printf("%s\nREVISION  CHANGE-CAUSE\n", kind(set))
				for _, cr := range revs {
					o.printf("%-9d %s\n", cr.Revision, cmp.Or(cr.Annotations[revision.ChangeCauseAnnotation], "<none>"))
				}
				return nil
			}
			text, err := templateYAML(revs, number)
			if err != nil {
				return err
			}
			if diffWith == 0 {
				o.printf("%s with revision #%d\n%s", kind(set), number, text)
				return nil
			}
			other, err := templateYAML(revs, diffWith)
			if err != nil {
				return err
			}
			o.printf("--- revision #%d\n+++ revision #%d\n%s", diffWith, number, lineDiff(other, text))
			return nil
		},
	}
	cmd.Flags().Int64Var(&number, "revision", 0, "show this revision's pod template")
	cmd.Flags().Int64Var(&diffWith, "diff-with", 0, "with --revision: show the difference from this revision")
	output = addOutputFlags(cmd)
	return cmd
}

// printRevisions prints, oldest first, the set as it was at each revision
// (or at the one numbered): its object with that revision's pod template,
// which is what kubectl rollout history -o prints for a DaemonSet, and a
// manifest that would roll the set back if applied.
func (o *options) printRevisions(cmd *cobra.Command, name string, number int64, output *outputFlags) error {
	printer, err := output.printer()
	if err != nil {
		return err
	}
	c, set, err := o.getSet(cmd, name)
	if err != nil {
		return err
	}
	revs, err := history(cmd.Context(), c, set)
	if err != nil {
		return err
	}
	if number != 0 {
		cr, err := findRevision(revs, number)
		if err != nil {
			return err
		}
		revs = []*appsv1.ControllerRevision{cr}
	}
	current, err := unstructuredSet(cmd, c, client.ObjectKeyFromObject(set))
	if err != nil {
		return err
	}
	for _, cr := range revs {
		t, err := revision.Decode(cr)
		if err != nil {
			return err
		}
		template, err := runtime.DefaultUnstructuredConverter.ToUnstructured(t)
		if err != nil {
			return err
		}
		at := current.DeepCopy()
		if err := unstructured.SetNestedField(at.Object, template, "spec", "template"); err != nil {
			return err
		}
		if err := printer.PrintObj(at, o.streams.Out); err != nil {
			return err
		}
	}
	return nil
}

func findRevision(revs []*appsv1.ControllerRevision, number int64) (*appsv1.ControllerRevision, error) {
	for _, cr := range revs {
		if cr.Revision == number {
			return cr, nil
		}
	}
	return nil, fmt.Errorf("revision %d not found", number)
}

func templateYAML(revs []*appsv1.ControllerRevision, number int64) (string, error) {
	cr, err := findRevision(revs, number)
	if err != nil {
		return "", err
	}
	t, err := revision.Decode(cr)
	if err != nil {
		return "", err
	}
	b, err := yaml.Marshal(t)
	return string(b), err
}

// lineDiff marks the lines only in a with "-" and only in b with "+", in
// order (a longest-common-subsequence diff; templates are small).
func lineDiff(a, b string) string {
	x, y := strings.Split(strings.TrimRight(a, "\n"), "\n"), strings.Split(strings.TrimRight(b, "\n"), "\n")
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			out.WriteString("  " + x[i] + "\n")
			i, j = i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			out.WriteString("- " + x[i] + "\n")
			i++
		default:
			out.WriteString("+ " + y[j] + "\n")
			j++
		}
	}
	return out.String()
}

func newRolloutUndo(o *options) *cobra.Command {
	var to int64
	cmd := &cobra.Command{
		Use:   "undo NAME",
		Short: "Roll back to the previous revision, or to --to-revision",
		Long: `Roll back to the previous revision, or to --to-revision. The set's template
and node overrides become that revision's again; the controller re-uses the
revision (same hash), so agents already running it are not restarted.`,
		Example: `  kubectl nodeagentset rollout undo node-exporter
  kubectl nodeagentset rollout undo node-exporter --to-revision 2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, set, err := o.getSet(cmd, args[0])
			if err != nil {
				return err
			}
			revs, err := history(cmd.Context(), c, set)
			if err != nil {
				return err
			}
			target, err := undoTarget(revs, to)
			if err != nil {
				return err
			}
			spec, err := revision.DecodeSpec(target)
			if err != nil {
				return err
			}
			if alreadyAt(set, target) {
				// kubectl's words for a DaemonSet already at that revision.
				o.printf("%s skipped rollback (current template already matches revision %d)\n", kind(set), target.Revision)
				return nil
			}
			err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				got := &nasv1alpha1.NodeAgentSet{}
				if err := c.Get(cmd.Context(), client.ObjectKeyFromObject(set), got); err != nil {
					return err
				}
				restore(got, spec)
				return c.Update(cmd.Context(), got)
			})
			if err != nil {
				return err
			}
			o.printf("%s rolled back to revision %d\n", kind(set), target.Revision)
			return nil
		},
	}
	cmd.Flags().Int64Var(&to, "to-revision", 0, "the revision to roll back to (0: the previous one)")
	return cmd
}

// restore puts set's revision part back as a revision holds it: the
// template and the node overrides. Restoring the template alone left the
// overrides of the revision undone from, so the set hashed to a revision
// that never ran, and every agent whose sizing differed was recreated.
func restore(set *nasv1alpha1.NodeAgentSet, spec *revision.Spec) {
	set.Spec.Template = spec.Template
	set.Spec.NodeOverrides = spec.NodeOverrides
}

// alreadyAt tells whether set's template and node overrides are what
// revision cr holds. The template alone is not enough: undoing a change of
// overrides alone would be skipped as done.
func alreadyAt(set *nasv1alpha1.NodeAgentSet, cr *appsv1.ControllerRevision) bool {
	current, err := revision.EncodeSpec(revision.SpecOf(set))
	return err == nil && revision.Holds(cr, current)
}

// undoTarget picks the revision to roll back to; revs are oldest first.
func undoTarget(revs []*appsv1.ControllerRevision, to int64) (*appsv1.ControllerRevision, error) {
	if to != 0 {
		return findRevision(revs, to)
	}
	if len(revs) < 2 {
		return nil, errors.New("no previous revision to roll back to")
	}
	return revs[len(revs)-2], nil
}

func newRolloutPause(o *options, pause bool) *cobra.Command {
	use, short := "resume NAME", "Resume a paused rollout"
	if pause {
		use, short = "pause NAME", "Pause the rollout: no agent is replaced until resumed (empty nodes still get one)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			verb := "resumed"
			if pause {
				verb = "paused"
			}
			return o.mutate(cmd, args[0], verb, func(s *nasv1alpha1.NodeAgentSet) error {
				if s.Spec.UpdateStrategy.Type == nasv1alpha1.OnDeleteStrategy {
					return fmt.Errorf("%s uses the OnDelete strategy: there is no rollout to %s", kind(s), strings.TrimSuffix(verb, "d"))
				}
				if s.Spec.UpdateStrategy.RollingUpdate == nil {
					s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{}
				}
				s.Spec.UpdateStrategy.RollingUpdate.Paused = pause
				return nil
			})
		},
	}
}

func newRolloutRestart(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "restart NAME",
		Short: "Restart every agent, as a rollout within the set's budgets",
		Long: `Restart every agent by stamping the pod template with kubectl's
kubectl.kubernetes.io/restartedAt annotation (the time, RFC 3339): a new
revision, rolled out like any other.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.mutate(cmd, args[0], "restarted", func(s *nasv1alpha1.NodeAgentSet) error {
				if s.Spec.Template.Annotations == nil {
					s.Spec.Template.Annotations = map[string]string{}
				}
				s.Spec.Template.Annotations[RestartedAtAnnotation] = time.Now().Format(time.RFC3339) // as kubectl writes it
				return nil
			})
		},
	}
}

// mutate changes the set's spec, retrying on conflicts.
func (o *options) mutate(cmd *cobra.Command, name, verb string, change func(*nasv1alpha1.NodeAgentSet) error) error {
	c, set, err := o.getSet(cmd, name)
	if err != nil {
		return err
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := &nasv1alpha1.NodeAgentSet{}
		if err := c.Get(cmd.Context(), client.ObjectKeyFromObject(set), got); err != nil {
			return err
		}
		if err := change(got); err != nil {
			return err
		}
		return c.Update(cmd.Context(), got)
	})
	if err != nil {
		return err
	}
	o.printf("%s %s\n", kind(set), verb)
	return nil
}
