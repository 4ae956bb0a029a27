package health

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestCausesReadFromPodStatus(t *testing.T) {
	waiting := func(reason, message string, last *corev1.ContainerStateTerminated) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "agent", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
			LastTerminationState: corev1.ContainerState{Terminated: last},
		}}}
	}
	for name, tc := range map[string]struct {
		status corev1.PodStatus
		want   string // reason, "" for none
	}{
		"running":       {corev1.PodStatus{Phase: corev1.PodRunning}, ""},
		"creating":      {waiting("ContainerCreating", "", nil), ""},
		"crash loop":    {waiting("CrashLoopBackOff", "back-off 40s restarting failed container", nil), "CrashLoopBackOff"},
		"out of memory": {waiting("CrashLoopBackOff", "back-off", &corev1.ContainerStateTerminated{Reason: "OOMKilled"}), "OOMKilled"},
		"image pull":    {waiting("ImagePullBackOff", "Back-off pulling image", nil), "ImagePullBackOff"},
		"cannot run":    {waiting("RunContainerError", "exec: not found", nil), "RunContainerError"},
		"failed":        {corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "low on memory"}, "Failed"},
		"port taken": {corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
			Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "node(s) didn't have free ports"}}}, "Unschedulable"},
	} {
		got, ok := Of(&corev1.Pod{Status: tc.status})
		if ok != (tc.want != "") || got.Reason != tc.want {
			t.Errorf("%s: Of = %+v, %v; want reason %q", name, got, ok, tc.want)
		}
	}
	// The back-off message changes with each restart and stays out, so
	// repeated warnings fold into one event series.
	a, _ := Of(&corev1.Pod{Status: waiting("CrashLoopBackOff", "back-off 10s", nil)})
	b, _ := Of(&corev1.Pod{Status: waiting("CrashLoopBackOff", "back-off 5m0s", nil)})
	if a != b {
		t.Errorf("crash loop causes differ between restarts: %+v vs %+v", a, b)
	}
}
