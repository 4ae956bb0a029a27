package execute

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/status"
)

// Why every event of a write names a related object: client-go's
// events.k8s.io recorder folds events into one series by (type, reason,
// action, reporter, regarding, related) and keeps the note of the first.
// With regarding the set and no related object, every later pass's
// "Created 1 pod(s) on node-b" was counted into the first pass's "on
// node-a", and the nodes after the first were never shown. So:
//
//   - SuccessfulCreate/SuccessfulDelete relate to the first pod the pass
//     wrote. A pod is written once, so each pass gets its own event, whose
//     note names its pods and nodes (one event write per pass that
//     creates or deletes; a pass writes up to DefaultBurst pods).
//   - FailedCreate relates to the node the first refused create was for,
//     FailedDelete to the pod. Failures that repeat on the same node or pod
//     still fold into one series, whose first note is then right for all.

// writeError is a refused write and what its event should relate to.
type writeError struct {
	related runtime.Object
	err     error
}

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// warnFailure raises the Warning event for err (nothing when nil), related
// to the object of the first refused write.
func (x *Executor) warnFailure(set *nasv1alpha1.NodeAgentSet, err error, reason, action string) {
	if err == nil {
		return
	}
	var related runtime.Object
	if we := (*writeError)(nil); errors.As(err, &we) {
		related = we.related
	}
	x.Recorder.Eventf(EventTarget(set), related, corev1.EventTypeWarning, reason, action, "%s",
		status.Clip(err.Error(), status.MaxEventNote))
}

func nodeRef(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// podRef is pod as an event's related object: name, namespace and UID,
// without the resourceVersion that would change the series key.
func podRef(pod *corev1.Pod) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID}}
}

// createdNote names the pods a pass created and their nodes.
func createdNote(pods []*corev1.Pod) string {
	items := make([]string, len(pods))
	for i, p := range pods {
		items[i] = p.Name + " on " + podtemplate.NodeOf(p)
	}
	if len(pods) == 1 {
		return "Created pod " + items[0]
	}
	return fmt.Sprintf("Created %d pods: %s", len(pods), summarize(items))
}

// deletedNote names the pods a pass deleted, their nodes and why.
func deletedNote(deletes []plan.Delete) string {
	items := make([]string, len(deletes))
	for i, d := range deletes {
		items[i] = fmt.Sprintf("%s on %s (%s)", d.Pod.Name, d.Node, d.Reason)
	}
	if len(deletes) == 1 {
		return "Deleted pod " + items[0]
	}
	return fmt.Sprintf("Deleted %d pods: %s", len(deletes), summarize(items))
}
