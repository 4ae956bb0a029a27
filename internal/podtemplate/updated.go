package podtemplate

import (
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// AnnotationRestartsAtUpdate is put on a pod updated in place: its
// containers' restart count just after the update (the count before it,
// plus one for each container the kubelet restarts for its new image).
// Health checks count restarts of the revision the pod now runs from it.
const AnnotationRestartsAtUpdate = "nodeagentset.io/restarts-at-update"

// gateCreated is the reason of the in-place gate opened at creation; any
// other reason (closed for an update, opened after one) dates an update.
const gateCreated = "Created"

// UpdatedAt is when the pod started running its revision: its creation,
// or the last in-place update (the in-place readiness gate's transition,
// closed just before the patch and opened once the new images run).
func UpdatedAt(pod *corev1.Pod) time.Time {
	at := pod.CreationTimestamp.Time
	for _, c := range pod.Status.Conditions {
		if c.Type == nasv1alpha1.ReadinessGateInPlace && c.Reason != gateCreated && c.LastTransitionTime.After(at) {
			at = c.LastTransitionTime.Time
		}
	}
	return at
}

// Restarts sums the restart counts of the pod's containers (init ones
// too) and names the container that restarted most.
func Restarts(pod *corev1.Pod) (int32, string) {
	var n, most int32
	name := ""
	for _, cs := range append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		n += cs.RestartCount
		if cs.RestartCount > most {
			most, name = cs.RestartCount, "container "+cs.Name
		}
	}
	return n, name
}

// RestartsSinceUpdate is Restarts less the count the last in-place update
// left (AnnotationRestartsAtUpdate).
func RestartsSinceUpdate(pod *corev1.Pod) (int32, string) {
	n, name := Restarts(pod)
	if base, err := strconv.ParseInt(pod.Annotations[AnnotationRestartsAtUpdate], 10, 32); err == nil && base > 0 {
		n = max(0, n-int32(base))
	}
	return n, name
}
