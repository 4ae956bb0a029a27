package controller

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/execute"
	"github.com/nodeagentset/nodeagentset/internal/status"
)

// reportFailure shows a pass that failed before it could plan where a user
// looks, not only in the log: condition ReconcileFailure and a Warning
// event (repeats fold into one series). It returns err, so the pass is
// retried with backoff.
func (r *Reconciler) reportFailure(ctx context.Context, set *nasv1alpha1.NodeAgentSet, reason string, err error) error {
	message := status.Clip(err.Error(), status.MaxMessage)
	r.warn(execute.EventTarget(set), nil, reason, "Reconcile", message)
	st := set.Status.DeepCopy()
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: nasv1alpha1.ConditionReconcileFailure,
		Status: metav1.ConditionTrue, Reason: reason, Message: message, ObservedGeneration: set.Generation,
		LastTransitionTime: metav1.NewTime(r.now())})
	// Not reconciled: without this a new set whose passes all fail showed
	// no Reconciling and no observedGeneration, which kstatus (Flux,
	// kubectl wait) reads as Current. A Stalled set stays not reconciling.
	if !meta.IsStatusConditionTrue(st.Conditions, nasv1alpha1.ConditionStalled) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: nasv1alpha1.ConditionReconciling,
			Status: metav1.ConditionTrue, Reason: reason, Message: message, ObservedGeneration: set.Generation,
			LastTransitionTime: metav1.NewTime(r.now())})
	}
	_, statusErr := r.writeStatus(ctx, set, *st, r.now())
	return errors.Join(err, statusErr)
}

// warn raises a Warning event on regarding (the set), its note clipped to
// what the API server accepts; nothing without a recorder (some tests).
func (r *Reconciler) warn(regarding, related runtime.Object, reason, action, note string) {
	if r.Executor != nil && r.Executor.Recorder != nil {
		r.Executor.Recorder.Eventf(regarding, related, corev1.EventTypeWarning, reason, action, "%s",
			status.Clip(note, status.MaxEventNote))
	}
}
