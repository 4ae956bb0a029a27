package plan

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// StartupTaint is what the plan makes of spec.startupTaint.
type StartupTaint struct {
	// Lift: nodes carrying the taint whose agent of this set is available;
	// the taint comes off them. The nodes are the snapshot's (the cache's)
	// and must not be modified.
	Lift []*corev1.Node
	// Waiting counts nodes carrying the taint whose agent is not available
	// yet.
	Waiting int
}

// startupTaint decides which nodes lose the startup taint. The rules,
// against the known bugs of peers:
//   - only once this set's agent on the node is available (Ready for
//     minReadySeconds), never when it is merely created or Ready (cilium
//     #29405 removed it too early);
//   - judged on every pass from the node's taints as they are now, so a
//     taint added after the agent became available is removed too (cilium
//     #17103 never removed it);
//   - never while the set is suspended or the node no longer eligible:
//     its agent is going away;
//   - only nodes that carry the taint are named.
func startupTaint(p *Plan, s Snapshot) {
	want := s.Set.Spec.StartupTaint
	if want == nil {
		return
	}
	tainted := map[string]*corev1.Node{}
	for _, n := range s.Nodes {
		if HasStartupTaint(n, want.Key, want.Effect) {
			tainted[n.Name] = n
		}
	}
	if len(tainted) == 0 {
		return
	}
	minReady := time.Duration(s.Set.Spec.MinReadySeconds) * time.Second
	for i := range p.Nodes {
		st := &p.Nodes[i]
		node := tainted[st.Name]
		if node == nil {
			continue
		}
		if st.Eligibility.ShouldContinueRunning && (available(st.New, minReady, s.Now) || available(st.Old, minReady, s.Now)) {
			p.StartupTaint.Lift = append(p.StartupTaint.Lift, node)
			continue
		}
		p.StartupTaint.Waiting++
		for _, pod := range []*corev1.Pod{st.New, st.Old} {
			if since, ready := readyPod(pod); ready {
				p.requeue(since.Add(minReady).Sub(s.Now))
			}
		}
	}
}

func available(pod *corev1.Pod, minReady time.Duration, now time.Time) bool {
	return pod != nil && PodAvailable(pod, minReady, now)
}

func readyPod(pod *corev1.Pod) (time.Time, bool) {
	if pod == nil {
		return time.Time{}, false
	}
	return ReadySince(pod)
}

// HasStartupTaint: node carries a taint of key and effect (any value).
func HasStartupTaint(node *corev1.Node, key string, effect corev1.TaintEffect) bool {
	for _, t := range node.Spec.Taints {
		if t.Key == key && t.Effect == effect {
			return true
		}
	}
	return false
}
