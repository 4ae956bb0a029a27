package execute

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/internal/status"
)

// updates patches pods in place, all at once as deletes are (each was
// charged to the budget by the plan). In slow-start batches a 5-pod wave
// took three round trips of two writes each, which on 50 kwok nodes made
// the in-place rollout slower than recreation. A pod whose containers
// restart first gets its readiness gate closed, so that nothing routes to
// it until the new images run.
func (x *Executor) updates(ctx context.Context, set *nasv1alpha1.NodeAgentSet, updates []plan.Update) (int, error) {
	log := logr.FromContextOrDiscard(ctx)
	var done []string
	err := inBatches(len(updates), len(updates), func(i int) error {
		u := updates[i]
		if u.Restart {
			if _, err := x.setGate(ctx, u.Pod, corev1.ConditionFalse, "InPlaceUpdate"); err != nil {
				return err
			}
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: u.Pod.Namespace, Name: u.Pod.Name}}
		if err := x.Client.Patch(ctx, pod, client.RawPatch(types.StrategicMergePatchType, u.Patch)); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("updating Pod %q on Node %q in place: %w", u.Pod.Name, u.Node, err)
		}
		x.Expectations.Patched(set.UID, pod, x.now())
		log.V(4).Info("Updated pod in place", "pod", klog.KObj(pod), "node", u.Node, "reason", u.Reason, "restart", u.Restart)
		return nil
	}, func(i int) { done = append(done, updates[i].Pod.Name) })
	if len(done) > 0 {
		x.Recorder.Eventf(EventTarget(set), nil, corev1.EventTypeNormal, "SuccessfulUpdate", "Update",
			"Updated %d pod(s) in place: %s", len(done), summarize(done))
	}
	if err != nil {
		x.Recorder.Eventf(EventTarget(set), nil, corev1.EventTypeWarning, "FailedUpdate", "Update", "%s", status.Clip(err.Error(), status.MaxEventNote))
	}
	return len(done), err
}

// openGates sets the in-place readiness gate True on new pods and on pods
// whose in-place update finished.
func (x *Executor) openGates(ctx context.Context, set *nasv1alpha1.NodeAgentSet, pods []*corev1.Pod) error {
	return inBatches(len(pods), len(pods), func(i int) error {
		updated, err := x.setGate(ctx, pods[i], corev1.ConditionTrue, "Updated")
		if err == nil && updated != nil {
			x.Expectations.Patched(set.UID, updated, x.now())
		}
		return err
	}, func(int) {})
}

// setGate writes the in-place gate condition through pods/status, merged
// by type so that the kubelet's conditions stay. It returns the pod as the
// server answered, nil when the pod is gone.
func (x *Executor) setGate(ctx context.Context, pod *corev1.Pod, s corev1.ConditionStatus, reason string) (*corev1.Pod, error) {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": pod.UID},
		"status": map[string]any{"conditions": []corev1.PodCondition{{
			Type: nasv1alpha1.ReadinessGateInPlace, Status: s, Reason: reason,
			LastTransitionTime: metav1.NewTime(x.now()),
		}}},
	})
	if err != nil {
		return nil, err
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}}
	if err := x.Client.Status().Patch(ctx, out, client.RawPatch(types.StrategicMergePatchType, patch)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("setting the in-place readiness gate of Pod %q to %s: %w", pod.Name, s, err)
	}
	return out, nil
}
