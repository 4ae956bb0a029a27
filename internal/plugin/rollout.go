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
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

// RestartedAtAnnotation on the template makes `rollout restart` a new
// revision, as kubectl's kubectl.kubernetes.io/restartedAt does.
const RestartedAtAnnotation = "nodeagentset.io/restartedAt"

func newRolloutCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout SUBCOMMAND",
		Short: "Manage the rollout of a NodeAgentSet",
		Long:  "Manage the rollout of a NodeAgentSet: watch it, see its history, undo, pause, resume or restart it.",
	}
	cmd.AddCommand(newRolloutStatus(o), newRolloutHistory(o), newRolloutUndo(o),
		newRolloutPause(o, true), newRolloutPause(o, false), newRolloutRestart(o))
	return cmd
}

func newRolloutStatus(o *options) *cobra.Command {
	var timeout time.Duration
	watch := true
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show the status of the rollout",
		Long: `Show the status of the rollout, waiting for it to finish unless --watch=false.

Exits 0 once the rollout is complete; non-zero, with the reason, when the
progress deadline is exceeded or --timeout passes.`,
		Example: `  kubectl nodeagentset rollout status node-exporter -n monitoring --timeout 5m`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, set, err := o.getSet(cmd, args[0])
			if err != nil {
				return err
			}
			bar := isTerminal(o.streams.Out)
			last := ""
			check := func() (bool, error) {
				got := &nasv1alpha1.NodeAgentSet{}
				if err := c.Get(cmd.Context(), client.ObjectKeyFromObject(set), got); err != nil {
					return false, err
				}
				done, line, err := rolloutState(got)
				if line != last || bar {
					o.show(line, bar, done || err != nil)
					last = line
				}
				return done, err
			}
			if !watch {
				_, err := check()
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(context.Context) (bool, error) { return check() })
			if errors.Is(err, context.DeadlineExceeded) {
				if bar {
					o.printf("\n")
				}
				return fmt.Errorf("timed out after %v waiting for the rollout of %s", timeout, kind(set))
			}
			return err
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait for ever)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", true, "wait until the rollout finishes")
	return cmd
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
		return true, fmt.Sprintf("%s successfully rolled out (%d nodes)", kind(set), st.DesiredNumberScheduled), nil
	}
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Paused {
		return false, fmt.Sprintf("Waiting for %s rollout: paused (%d of %d nodes updated)...", kind(set), st.UpdatedNumberScheduled, st.DesiredNumberScheduled), nil
	}
	return false, fmt.Sprintf("Waiting for %s rollout to finish: %d of %d nodes updated, %d available...",
		kind(set), st.UpdatedNumberScheduled, st.DesiredNumberScheduled, st.NumberAvailable), nil
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
	var output string
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "Show the revisions of a NodeAgentSet",
		Long: `Show the revisions of a NodeAgentSet with their change cause (the set's
kubernetes.io/change-cause annotation when the revision was made), one
revision's pod template with --revision, or the difference between two with
--revision N --diff-with M.`,
		Example: `  kubectl nodeagentset rollout history node-exporter
  kubectl nodeagentset rollout history node-exporter --revision 3
  kubectl nodeagentset rollout history node-exporter --revision 3 --diff-with 2`,
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
			if number == 0 {
				type entry struct {
					Revision    int64  `json:"revision"`
					Name        string `json:"name"`
					ChangeCause string `json:"changeCause,omitempty"`
				}
				var entries []entry
				for _, cr := range revs {
					entries = append(entries, entry{cr.Revision, cr.Name, cr.Annotations[revision.ChangeCauseAnnotation]})
				}
				return printAs(o.streams.Out, output, entries, func() error {
					o.printf("%s\nREVISION  CHANGE-CAUSE\n", kind(set))
					for _, e := range entries {
						o.printf("%-9d %s\n", e.Revision, cmp.Or(e.ChangeCause, "<none>"))
					}
					return nil
				})
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
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format of the list: json or yaml (default: a table)")
	return cmd
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
		Long: `Restart every agent by stamping the pod template with a restartedAt
annotation: a new revision, rolled out like any other.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.mutate(cmd, args[0], "restarted", func(s *nasv1alpha1.NodeAgentSet) error {
				if s.Spec.Template.Annotations == nil {
					s.Spec.Template.Annotations = map[string]string{}
				}
				s.Spec.Template.Annotations[RestartedAtAnnotation] = time.Now().UTC().Format(time.RFC3339)
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
