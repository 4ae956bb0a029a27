package plan

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A suspended set deletes every agent, finished ones included, places
// none (not even on an empty eligible node), and surges nothing.
func TestSuspendDeletesEveryAgentAndPlacesNone(t *testing.T) {
	nodes := []*corev1.Node{mkNode("a", true), mkNode("b", true), mkNode("c", true), mkNode("d", false)}
	pods := []*corev1.Pod{
		mkPod("pa", "a", 0),
		mkPod("pb", "b", 0, phase(corev1.PodFailed)),
		mkPod("pd", "d", 0),
		mkPod("gone", "vanished", 0),
	}
	s := snapshot(nodes, pods, nil)
	s.Set.Spec.Suspend = true
	p := Compute(s)
	if len(p.Creates) != 0 {
		t.Errorf("creates while suspended: %+v", p.Creates)
	}
	deleted := map[string]bool{}
	for _, d := range p.Deletes {
		deleted[d.Pod.Name] = true
	}
	for _, name := range []string{"pa", "pb", "pd", "gone"} {
		if !deleted[name] {
			t.Errorf("pod %s not deleted while suspended; deletes %+v", name, p.Deletes)
		}
	}
	for _, st := range p.Nodes {
		if st.Exists && (st.Eligibility.ShouldRun || st.Eligibility.Reason != ReasonSuspended) {
			t.Errorf("node %s: eligibility %+v while suspended", st.Name, st.Eligibility)
		}
	}

	// Resumed: the same world gets an agent on every eligible node again.
	s.Set.Spec.Suspend = false
	s.Pods = nil
	if p := Compute(s); len(p.Creates) != 3 {
		t.Errorf("resumed: creates %+v, want one on each of a, b, c", p.Creates)
	}
}
