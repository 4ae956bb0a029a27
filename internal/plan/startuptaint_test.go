package plan

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

var startup = corev1.Taint{Key: "example.com/agent-not-ready", Effect: corev1.TaintEffectNoSchedule}

func lifted(p Plan) []string {
	var names []string
	for _, n := range p.StartupTaint.Lift {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return names
}

// The startup taint comes off a node only once this set's agent there is
// available, never earlier (cilium #29405), also when the taint was added
// after the agent became available (cilium #17103), and never off a node
// that does not carry it.
func TestStartupTaintLiftedOnlyOnceTheAgentIsAvailable(t *testing.T) {
	other := corev1.Taint{Key: startup.Key, Effect: corev1.TaintEffectNoExecute} // same key, other effect: not ours
	nodes := []*corev1.Node{
		mkNode("available", true, startup),
		mkNode("ready-not-available", true, startup),
		mkNode("pending", true, startup),
		mkNode("empty", true, startup),
		mkNode("untainted", true),
		mkNode("other-effect", true, other),
		mkNode("tainted-later", true, startup, corev1.Taint{Key: "unrelated", Effect: corev1.TaintEffectNoSchedule}),
	}
	pods := []*corev1.Pod{
		mkPod("a", "available", time.Hour, readyFor(time.Minute)),
		mkPod("b", "ready-not-available", time.Hour, readyFor(5*time.Second)),
		mkPod("c", "pending", time.Hour, phase(corev1.PodPending)),
		mkPod("d", "untainted", time.Hour, readyFor(time.Minute)),
		mkPod("e", "other-effect", time.Hour, readyFor(time.Minute)),
		mkPod("f", "tainted-later", time.Hour, readyFor(time.Hour)),
	}
	s := snapshot(nodes, pods, nil)
	s.Set.Spec.MinReadySeconds = 10
	s.Set.Spec.StartupTaint = &nasv1alpha1.StartupTaint{Key: startup.Key, Effect: startup.Effect}
	p := Compute(s)
	if got, want := lifted(p), []string{"available", "tainted-later"}; !slices.Equal(got, want) {
		t.Errorf("lifted %v, want %v", got, want)
	}
	if p.StartupTaint.Waiting != 3 {
		t.Errorf("waiting %d, want 3 (ready-not-available, pending, empty)", p.StartupTaint.Waiting)
	}
	if p.RequeueAfter <= 0 || p.RequeueAfter > 5*time.Second {
		t.Errorf("RequeueAfter %v, want the moment ready-not-available's agent becomes available (5s)", p.RequeueAfter)
	}
	// Every agent tolerates the taint: nodes carrying only it are eligible.
	onlyStartup := []string{"available", "ready-not-available", "pending", "empty"}
	for _, st := range p.Nodes {
		if slices.Contains(onlyStartup, st.Name) && !st.Eligibility.ShouldRun {
			t.Errorf("node %s not eligible: %s", st.Name, st.Eligibility.Reason)
		}
	}

	// Suspended: agents are going away, so no taint comes off.
	s.Set.Spec.Suspend = true
	if got := lifted(Compute(s)); len(got) != 0 {
		t.Errorf("lifted %v while suspended", got)
	}
	// Without spec.startupTaint nothing is lifted, and the taint is not
	// tolerated.
	s.Set.Spec.Suspend, s.Set.Spec.StartupTaint = false, nil
	p = Compute(s)
	if got := lifted(p); len(got) != 0 {
		t.Errorf("lifted %v without spec.startupTaint", got)
	}
	if p.Nodes[0].Name != "available" || p.Nodes[0].Eligibility.ShouldRun {
		t.Error("a node with the taint is eligible without spec.startupTaint")
	}
}
