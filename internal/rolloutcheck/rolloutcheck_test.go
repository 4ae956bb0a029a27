package rolloutcheck

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/nodehealth"
)

var t0 = time.Date(2027, 1, 1, 10, 0, 0, 0, time.UTC)

func agentPod(mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-x", CreationTimestamp: metav1.NewTime(t0)},
		Spec:       corev1.PodSpec{NodeName: "n1"},
		Status:     corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "agent"}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func restarted(n int32, waiting, lastTerminated string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		cs := &p.Status.ContainerStatuses[0]
		cs.RestartCount = n
		if waiting != "" {
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: waiting, Message: "back-off pulling"}
		}
		if lastTerminated != "" {
			cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{Reason: lastTerminated}
		}
	}
}

func TestCheckTypesFailuresFromContainerAndNodeStatus(t *testing.T) {
	full := SpecOf(&nasv1alpha1.Health{MaxRestarts: ptr.To[int32](3), MaxUnavailableTime: ptr.To(nasv1alpha1.Duration("5m"))})
	notReady := nodehealth.Health{Reason: "NotReady", Since: t0.Add(time.Minute)}
	tests := []struct {
		name      string
		spec      *Spec
		agent     Agent
		now       time.Time
		wantCause string // "" for no failure
		wantDue   time.Time
	}{
		{"healthy agent passes", full, Agent{Pod: agentPod(), Available: true}, t0.Add(time.Hour), "", time.Time{}},
		{"restarts at the limit pass", full, Agent{Pod: agentPod(restarted(3, "", "")), Available: true}, t0, "", time.Time{}},
		{"restarts over the limit, no reason shown", full, Agent{Pod: agentPod(restarted(4, "", "Error")), Available: true}, t0, CauseRestartCount, time.Time{}},
		{"crash loop over the limit", full, Agent{Pod: agentPod(restarted(4, "CrashLoopBackOff", "Error"))}, t0, "CrashLoopBackOff", time.Time{}},
		{"killed for memory", full, Agent{Pod: agentPod(restarted(5, "CrashLoopBackOff", "OOMKilled"))}, t0, "OOMKilled", time.Time{}},
		{"killed for memory, running again", full, Agent{Pod: agentPod(restarted(5, "", "OOMKilled"))}, t0, "OOMKilled", time.Time{}},
		{"unavailable inside maxUnavailableTime: due later", full, Agent{Pod: agentPod()}, t0.Add(time.Minute), "", t0.Add(5 * time.Minute)},
		{"image pull failing past maxUnavailableTime", full, Agent{Pod: agentPod(restarted(0, "ImagePullBackOff", ""))}, t0.Add(5 * time.Minute), "ImagePullBackOff", time.Time{}},
		{"err image pull", full, Agent{Pod: agentPod(restarted(0, "ErrImagePull", ""))}, t0.Add(6 * time.Minute), "ErrImagePull", time.Time{}},
		{"run container error", full, Agent{Pod: agentPod(restarted(0, "RunContainerError", ""))}, t0.Add(6 * time.Minute), "RunContainerError", time.Time{}},
		{"never Ready, no reason", full, Agent{Pod: agentPod()}, t0.Add(6 * time.Minute), CauseUnavailable, time.Time{}},
		{"node NotReady after the agent", full, Agent{Pod: agentPod(), Node: notReady, Available: true}, t0.Add(2 * time.Minute), CauseNodeNotReady, time.Time{}},
		{"node NotReady before the agent is not the agent's fault", full,
			Agent{Pod: agentPod(), Node: nodehealth.Health{Reason: "NotReady", Since: t0.Add(-time.Minute)}, Available: true}, t0, "", time.Time{}},
		{"cordon carries no time: not charged", full, Agent{Pod: agentPod(), Node: nodehealth.Health{Reason: "cordoned"}, Available: true}, t0, "", time.Time{}},
		{"nodeNotReady off", SpecOf(&nasv1alpha1.Health{NodeNotReady: ptr.To(false)}), Agent{Pod: agentPod(), Node: notReady}, t0.Add(time.Hour), "", time.Time{}},
		{"restart check off", SpecOf(&nasv1alpha1.Health{}), Agent{Pod: agentPod(restarted(100, "CrashLoopBackOff", ""))}, t0.Add(time.Hour), "", time.Time{}},
		{"no health spec", nil, Agent{Pod: agentPod(restarted(100, "CrashLoopBackOff", ""))}, t0, "", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, due, failed := tt.spec.Check(tt.agent, tt.now)
			if failed != (tt.wantCause != "") || f.Cause != tt.wantCause {
				t.Fatalf("failure %+v (failed %v), want cause %q", f, failed, tt.wantCause)
			}
			if !due.Equal(tt.wantDue) {
				t.Errorf("due %v, want %v", due, tt.wantDue)
			}
			if failed && (f.Node != "n1" || f.Pod != "agent-x" || f.Message == "") {
				t.Errorf("failure does not name node, pod and what was seen: %+v", f)
			}
			if failed && strings.Contains(f.Cause, " ") {
				t.Errorf("cause %q is not a typed word", f.Cause)
			}
		})
	}
}

// An agent updated in place is judged from the update: its age, and the
// restarts of its earlier revisions and of the image change itself, are
// not the new revision's.
func TestAgentUpdatedInPlaceIsJudgedFromItsUpdate(t *testing.T) {
	now := t0.Add(30 * 24 * time.Hour)
	patched := agentPod(restarted(5, "", ""), func(p *corev1.Pod) {
		p.Annotations = map[string]string{"nodeagentset.io/restarts-at-update": "5"}
		p.Status.Conditions = []corev1.PodCondition{{Type: nasv1alpha1.ReadinessGateInPlace, Status: corev1.ConditionFalse,
			Reason: "InPlaceUpdate", LastTransitionTime: metav1.NewTime(now.Add(-time.Second))}}
	})
	spec := SpecOf(&nasv1alpha1.Health{MaxRestarts: ptr.To[int32](0), MaxUnavailableTime: ptr.To(nasv1alpha1.Duration("5m"))})
	f, due, bad := spec.Check(Agent{Pod: patched}, now)
	if bad {
		t.Fatalf("an agent updated in place a second ago failed: %+v", f)
	}
	if want := now.Add(-time.Second).Add(5 * time.Minute); !due.Equal(want) {
		t.Errorf("due %v, want %v (maxUnavailableTime from the update)", due, want)
	}
	patched.Status.ContainerStatuses[0].RestartCount = 6
	if f, _, bad := spec.Check(Agent{Pod: patched}, now); !bad || !strings.Contains(f.Message, "restarted 1 times") {
		t.Errorf("a restart after the update: failure %+v, bad %t; want one restart counted", f, bad)
	}
	// A node that turned NotReady before the update is not the update's fault.
	spec = SpecOf(&nasv1alpha1.Health{})
	patched.Status.ContainerStatuses[0].RestartCount = 5
	sick := nodehealth.Health{Reason: "NotReady", Since: now.Add(-time.Hour)}
	if f, _, bad := spec.Check(Agent{Pod: patched, Node: sick}, now); bad {
		t.Errorf("node NotReady before the in-place update failed the check: %+v", f)
	}
}
