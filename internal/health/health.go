// Package health reads why an agent pod is not working from its status:
// it cannot be scheduled, a container is crash-looping, cannot pull its
// image or cannot start, or the pod has failed. Pure: pod in, typed cause
// out; events, status and the kubectl plugin say it to the user.
package health

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// Cause is one reason an agent does not run, typed for events and alerts.
type Cause struct {
	// Reason is a CamelCase word: Unschedulable, CrashLoopBackOff,
	// ImagePullBackOff, ErrImagePull, CreateContainerConfigError,
	// CreateContainerError, RunContainerError, OOMKilled, Failed.
	Reason string
	// Message says which container and what the kubelet or scheduler
	// said, without counts that change from one look to the next.
	Message string
}

// waitingTrouble are the waiting reasons of a container that will not get
// better by itself; ContainerCreating and PodInitializing will.
var waitingTrouble = map[string]bool{
	"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true, "InvalidImageName": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
}

// Of returns why pod does not run, if a reason shows in its status.
func Of(pod *corev1.Pod) (Cause, bool) {
	if pod.Status.Phase == corev1.PodFailed {
		return Cause{Reason: "Failed", Message: nonEmpty(pod.Status.Reason+": "+pod.Status.Message, "the pod failed")}, true
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return Cause{Reason: "Unschedulable", Message: c.Message}, true
		}
	}
	statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		w := cs.State.Waiting
		if w == nil || !waitingTrouble[w.Reason] {
			continue
		}
		reason := w.Reason
		if last := cs.LastTerminationState.Terminated; reason == "CrashLoopBackOff" && last != nil && last.Reason == "OOMKilled" {
			reason = "OOMKilled"
		}
		msg := fmt.Sprintf("container %s: %s", cs.Name, reason)
		if reason != "CrashLoopBackOff" && w.Message != "" {
			// The back-off message changes with every restart; the
			// others say what is wrong and stay put.
			msg += ": " + w.Message
		}
		return Cause{Reason: reason, Message: msg}, true
	}
	return Cause{}, false
}

func nonEmpty(s, otherwise string) string {
	if s == ": " {
		return otherwise
	}
	return s
}
