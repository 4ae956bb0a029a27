package plan

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Create asks for a new agent pod on Node, of the update revision.
type Create struct {
	Node   string
	Reason string
}

// Delete asks for a pod to go.
type Delete struct {
	Pod    *corev1.Pod
	Node   string
	Reason string
	// Now deletes with grace period 0: the pod's node is gone and no kubelet
	// is left to finish it.
	Now bool
	// Finished marks the deletion of a Failed or Succeeded pod, which starts
	// or extends the node's replacement backoff.
	Finished bool
}

// Plan is what to do in one pass, as data.
type Plan struct {
	Creates []Create
	Deletes []Delete
	// Adopt: orphans that match the selector get a controller reference.
	Adopt []*corev1.Pod
	// Release: owned pods that stopped matching the selector lose theirs.
	Release []*corev1.Pod
	// Nodes is every node and what the plan made of it.
	Nodes []NodeState
	// RequeueAfter is when the plan would change with time alone (a backoff
	// ending, a pod becoming available); zero when nothing waits on time.
	RequeueAfter time.Duration
}

// Compute is the plan for a snapshot.
func Compute(s Snapshot) Plan {
	managed, adopt, release := claim(s)
	p := Plan{Adopt: adopt, Release: release, Nodes: nodeStates(s, managed)}
	for i := range p.Nodes {
		manageNode(&p, &p.Nodes[i], s)
	}
	return p
}

// manageNode decides placement on one node: an agent where one should run,
// none where none may stay, one at most, and finished agents replaced no
// faster than the node's backoff allows.
func manageNode(p *Plan, st *NodeState, s Snapshot) {
	if !st.Exists {
		for _, pod := range append(st.Active, st.Finished...) {
			p.Deletes = append(p.Deletes, Delete{Pod: pod, Node: st.Name, Now: true,
				Reason: fmt.Sprintf("node %s no longer exists", st.Name)})
		}
		return
	}
	if !st.Eligibility.ShouldContinueRunning {
		for _, pod := range append(st.Active, st.Finished...) {
			p.Deletes = append(p.Deletes, Delete{Pod: pod, Node: st.Name,
				Reason: "node no longer eligible: " + st.Eligibility.Reason})
		}
		return
	}
	replacing := false
	if len(st.Finished) > 0 {
		if until, ok := s.Backoff[st.Name]; ok && s.Now.Before(until) {
			st.Waiting = fmt.Sprintf("waiting: backoff after a %s agent, until %s",
				phaseOf(st.Finished), until.UTC().Format(time.RFC3339))
			p.requeue(until.Sub(s.Now))
			return
		}
		for _, pod := range st.Finished {
			p.Deletes = append(p.Deletes, Delete{Pod: pod, Node: st.Name, Finished: true,
				Reason: fmt.Sprintf("agent %s (%s); replacing it", pod.Name, pod.Status.Phase)})
		}
		replacing = true
	}
	switch {
	case len(st.Active) == 0 && st.Eligibility.ShouldRun:
		reason := "no agent on an eligible node"
		if replacing {
			reason = "replacing a finished agent"
		}
		p.Creates = append(p.Creates, Create{Node: st.Name, Reason: reason})
	case len(st.Active) > 1:
		for _, pod := range st.Active[1:] {
			p.Deletes = append(p.Deletes, Delete{Pod: pod, Node: st.Name,
				Reason: fmt.Sprintf("more than one agent on the node; keeping the oldest, %s", st.Active[0].Name)})
		}
	}
}

func (p *Plan) requeue(after time.Duration) {
	if after <= 0 {
		after = time.Millisecond
	}
	if p.RequeueAfter == 0 || after < p.RequeueAfter {
		p.RequeueAfter = after
	}
}

func phaseOf(pods []*corev1.Pod) string {
	return string(pods[len(pods)-1].Status.Phase)
}
