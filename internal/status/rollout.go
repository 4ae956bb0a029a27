package status

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// ReasonHealthCheckFailed is the reason of the conditions a failed health
// check of a staged rollout sets.
const ReasonHealthCheckFailed = "HealthCheckFailed"

// waitingByDesign: a staged rollout soaks or awaits promotion, which is
// not a lack of progress; the progress deadline does not run meanwhile.
func waitingByDesign(r *nasv1alpha1.RolloutStatus) bool {
	return r != nil && r.Failure == nil &&
		(r.Phase == nasv1alpha1.PhaseSoaking || r.Phase == nasv1alpha1.PhaseAwaitingPromotion)
}

// healthCheckFailed reports a failed check (or an abort) as kstatus
// Failed: Stalled True, Reconciling and Progressing False, each with
// reason HealthCheckFailed and a message naming node, pod and cause. An
// abort that has put every node back is still reported: the revision did
// not roll out, and only retry or a new template clears it.
func healthCheckFailed(st *nasv1alpha1.NodeAgentSetStatus, in Input) {
	r := in.Plan.Stage.Status
	if r == nil || r.Failure == nil {
		return
	}
	f := r.Failure
	msg := Clip(fmt.Sprintf("rollout of %s %s: %s on node %s, pod %s: %s", r.Revision, r.Phase, f.Reason, f.Node, f.Pod, f.Message), MaxMessage)
	for _, t := range []string{nasv1alpha1.ConditionStalled, nasv1alpha1.ConditionReconciling, nasv1alpha1.ConditionProgressing} {
		status := metav1.ConditionFalse
		if t == nasv1alpha1.ConditionStalled {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: status, Reason: ReasonHealthCheckFailed,
			Message: msg, ObservedGeneration: in.Set.Generation, LastTransitionTime: metav1.NewTime(in.Now)})
	}
}
