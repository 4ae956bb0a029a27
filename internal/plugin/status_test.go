package plugin

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/eligibility"
	"github.com/nodeagentset/nodeagentset/internal/plan"
)

// An agent of the update revision that is Pending, crash-looping or not
// Ready is not shown as "up to date".
func TestRowsSayWhetherTheNewAgentRuns(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pod := func(status corev1.PodStatus) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{nasv1alpha1.LabelRevisionHash: "h"}}, Status: status}
	}
	ready := corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady,
		Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}}}
	crash := corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "agent",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}}
	for want, status := range map[string]corev1.PodStatus{
		"up to date":              ready,
		"starting: pod pending":   {Phase: corev1.PodPending},
		"starting: not Ready yet": {Phase: corev1.PodRunning},
		"not running: container agent: CrashLoopBackOff": crash,
	} {
		p := plan.Plan{Nodes: []plan.NodeState{{Name: "n", Exists: true, New: pod(status),
			Eligibility: eligibility.Result{ShouldRun: true, ShouldContinueRunning: true}}}}
		p.Nodes[0].Active = []*corev1.Pod{p.Nodes[0].New}
		rows := Rows(&nasv1alpha1.NodeAgentSet{}, p, "h", now)
		if rows[0].Reason != want {
			t.Errorf("reason %q, want %q", rows[0].Reason, want)
		}
	}
}

// A node on the current revision that a failed rollout holds says why it
// waits, not "to be updated".
func TestRowsOfAFailedRolloutSayTheNodesWait(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	current := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{nasv1alpha1.LabelRevisionHash: "old"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady,
			Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}}}}
	// As the plan leaves it after a failed check: the current revision's
	// agent is the node's New, nothing to replace.
	p := plan.Plan{Nodes: []plan.NodeState{{Name: "n", Exists: true, New: current,
		Eligibility: eligibility.Result{ShouldRun: true, ShouldContinueRunning: true}}}}
	p.Stage.Holds = map[string]string{"n": "waiting: rollout failed (CrashLoopBackOff on node c)"}
	if got := Rows(&nasv1alpha1.NodeAgentSet{}, p, "new", now)[0].Reason; got != p.Stage.Holds["n"] {
		t.Errorf("reason %q, want %q", got, p.Stage.Holds["n"])
	}
}
