package status

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/eligibility"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	testkstatus "github.com/nodeagentset/nodeagentset/test/kstatus"
)

// kstatusOf is what generic tools (Flux, Argo CD) make of the set.
func kstatusOf(t *testing.T, set *nasv1alpha1.NodeAgentSet) kstatus.Status {
	t.Helper()
	set.APIVersion, set.Kind = nasv1alpha1.GroupVersion.String(), "NodeAgentSet"
	return testkstatus.Of(t, set)
}

// suspendedNode is a node as the planner leaves it while the set is
// suspended, with the pods still on it.
func suspendedNode(name string, pods ...*corev1.Pod) plan.NodeState {
	return plan.NodeState{Name: name, Exists: true, Eligibility: eligibility.Result{Reason: plan.ReasonSuspended}, Active: pods}
}

func condition(st nasv1alpha1.NodeAgentSetStatus, t string) string {
	c := meta.FindStatusCondition(st.Conditions, t)
	if c == nil {
		return "absent"
	}
	return string(c.Status) + "/" + c.Reason
}

// Suspend, as kstatus and a reader of conditions see it at each step:
// removing agents is work in progress; suspended with every pod gone is
// settled (Current); resuming is a fan-out in progress, then Current.
func TestSuspendAndResumeConditions(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Generation: 1}}
	running := plan.Plan{Nodes: []plan.NodeState{node("a", true, true, readyPod("h", time.Minute)), node("b", true, true, readyPod("h", time.Minute))}}
	steps := []struct {
		name    string
		suspend bool
		plan    plan.Plan
		want    map[string]string
		kstatus kstatus.Status
		counts  [3]int32 // desired, current, available
	}{
		{"running", false, running, map[string]string{
			nasv1alpha1.ConditionSuspended: "absent", nasv1alpha1.ConditionReconciling: "False/Complete", nasv1alpha1.ConditionAvailable: "True/AllNodesAvailable",
		}, kstatus.CurrentStatus, [3]int32{2, 2, 2}},
		{"suspended, deleting", true, plan.Plan{
			Nodes:   []plan.NodeState{suspendedNode("a", readyPod("h", time.Minute)), suspendedNode("b", readyPod("h", time.Minute))},
			Deletes: []plan.Delete{{Node: "a"}, {Node: "b"}},
		}, map[string]string{
			nasv1alpha1.ConditionSuspended: "True/Suspended", nasv1alpha1.ConditionReconciling: "True/Suspending",
			nasv1alpha1.ConditionAvailable: "False/Suspended", nasv1alpha1.ConditionProgressing: "Unknown/Suspended", nasv1alpha1.ConditionStalled: "absent",
		}, kstatus.InProgressStatus, [3]int32{0, 0, 0}},
		{"suspended, pods terminating", true, plan.Plan{Nodes: []plan.NodeState{{Name: "a", Exists: true, Terminating: 1}, suspendedNode("b")}},
			map[string]string{nasv1alpha1.ConditionReconciling: "True/Suspending"}, kstatus.InProgressStatus, [3]int32{0, 0, 0}},
		{"suspended, every pod gone", true, plan.Plan{Nodes: []plan.NodeState{suspendedNode("a"), suspendedNode("b")}}, map[string]string{
			nasv1alpha1.ConditionSuspended: "True/Suspended", nasv1alpha1.ConditionReconciling: "False/Suspended", nasv1alpha1.ConditionStalled: "absent",
		}, kstatus.CurrentStatus, [3]int32{0, 0, 0}},
		{"resumed, placing", false, plan.Plan{Nodes: []plan.NodeState{node("a", true, true), node("b", true, true)},
			Creates: []plan.Create{{Node: "a"}, {Node: "b"}}}, map[string]string{
			nasv1alpha1.ConditionSuspended: "False/Resumed", nasv1alpha1.ConditionReconciling: "True/Updating", nasv1alpha1.ConditionProgressing: "True/RollingOut",
		}, kstatus.InProgressStatus, [3]int32{2, 0, 0}},
		{"resumed, every agent available", false, running, map[string]string{
			nasv1alpha1.ConditionSuspended: "False/Resumed", nasv1alpha1.ConditionReconciling: "False/Complete", nasv1alpha1.ConditionAvailable: "True/AllNodesAvailable",
		}, kstatus.CurrentStatus, [3]int32{2, 2, 2}},
	}
	for _, step := range steps {
		if set.Spec.Suspend != step.suspend {
			set.Generation++
		}
		set.Spec.Suspend = step.suspend
		set.Status, _ = Compute(Input{Set: set, Plan: step.plan, UpdateHash: "h", UpdateRevision: "agent-h", Now: now})
		for typ, want := range step.want {
			if got := condition(set.Status, typ); got != want {
				t.Errorf("%s: %s = %s, want %s", step.name, typ, got, want)
			}
		}
		if got := kstatusOf(t, set); got != step.kstatus {
			t.Errorf("%s: kstatus %s, want %s (conditions %+v)", step.name, got, step.kstatus, set.Status.Conditions)
		}
		got := [3]int32{set.Status.DesiredNumberScheduled, set.Status.CurrentNumberScheduled, set.Status.NumberAvailable}
		if got != step.counts || set.Status.NumberUnavailable < 0 {
			t.Errorf("%s: desired, current, available = %v, want %v (unavailable %d)", step.name, got, step.counts, set.Status.NumberUnavailable)
		}
	}
}
