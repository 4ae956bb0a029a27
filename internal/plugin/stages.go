package plugin

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/stages"
)

// newRolloutVerbs are promote, abort and retry of a staged rollout: each
// writes an annotation naming the set's current update revision, so it
// never acts on a later revision; the spec is not touched, so a GitOps
// tool that owns it does not fight the verb.
func newRolloutVerbs(o *options) []*cobra.Command {
	verb := func(use, short, done string, change func(*nasv1alpha1.NodeAgentSet) error) *cobra.Command {
		return &cobra.Command{Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error { return o.mutate(cmd, args[0], done, change) }}
	}
	annotate := func(s *nasv1alpha1.NodeAgentSet, key, value string) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[key] = value
	}
	return []*cobra.Command{
		verb("promote", "Let a staged rollout waiting for promotion go on to its waves", "promoted", func(s *nasv1alpha1.NodeAgentSet) error {
			annotate(s, nasv1alpha1.AnnotationPromote, s.Status.UpdateRevision)
			return nil
		}),
		verb("abort", "Abort the rollout: updated nodes go back to the current revision, within the budgets", "aborted", func(s *nasv1alpha1.NodeAgentSet) error {
			annotate(s, nasv1alpha1.AnnotationAbort, s.Status.UpdateRevision)
			return nil
		}),
		verb("retry", "Clear a failed health check (or an abort) and resume the same revision", "retried", func(s *nasv1alpha1.NodeAgentSet) error {
			r := s.Status.Rollout
			if r == nil || r.Failure == nil || r.PhaseSince == nil || r.Revision != s.Status.UpdateRevision {
				return fmt.Errorf("%s has no failed rollout to retry", kind(s))
			}
			delete(s.Annotations, nasv1alpha1.AnnotationAbort)
			annotate(s, nasv1alpha1.AnnotationRetry, stages.RetryValue(r.Revision, r.PhaseSince.Time))
			return nil
		}),
	}
}

// stageLine says where a staged rollout is, or "" for an unstaged one.
func stageLine(set *nasv1alpha1.NodeAgentSet, now time.Time) string {
	r := set.Status.Rollout
	if r == nil || r.Revision != set.Status.UpdateRevision {
		return ""
	}
	ru := set.Spec.UpdateStrategy.RollingUpdate
	left := func(d nasv1alpha1.Duration) string {
		soak, err := time.ParseDuration(string(d))
		if err != nil || r.PhaseSince == nil {
			return ""
		}
		return fmt.Sprintf(", %s left", max(0, r.PhaseSince.Add(soak).Sub(now)).Round(time.Second))
	}
	switch {
	case r.Phase == nasv1alpha1.PhaseCanary:
		return fmt.Sprintf("canary on %v", r.CanaryNodes)
	case r.Phase == nasv1alpha1.PhaseSoaking && r.Wave == "" && ru != nil && ru.Canary != nil:
		return fmt.Sprintf("canary soak%s (canary %v)", left(ru.Canary.Soak), r.CanaryNodes)
	case r.Phase == nasv1alpha1.PhaseSoaking && ru != nil && ru.Waves != nil:
		return fmt.Sprintf("wave %s=%s soak%s", ru.Waves.By, r.Wave, left(ru.Waves.Soak))
	case r.Phase == nasv1alpha1.PhaseAwaitingPromotion:
		return fmt.Sprintf("awaiting promotion: kubectl nodeagentset rollout promote %s", set.Name)
	case r.Phase == nasv1alpha1.PhaseWaves && ru != nil && ru.Waves != nil:
		return fmt.Sprintf("wave %s=%s", ru.Waves.By, r.Wave)
	}
	return string(r.Phase)
}
