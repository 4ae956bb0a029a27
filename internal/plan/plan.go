package plan

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/eligibility"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/stages"
)

// Create asks for a new agent pod on Node, of the update revision, or of
// the revision whose hash Revision names (the current revision, while a
// staged rollout's health check has failed).
type Create struct {
	Node     string
	Reason   string
	Revision string
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

// Update asks for a pod to move to the update revision without being
// replaced (see internal/inplace, which turns a delete and a create of the
// rollout into one): Patch is the strategic merge patch of the pod, and
// Restart says its containers restart on new images, so its in-place
// readiness gate is closed first.
type Update struct {
	Pod     *corev1.Pod
	Node    string
	Reason  string
	Patch   []byte
	Restart bool
}

// Plan is what to do in one pass, as data.
type Plan struct {
	Creates []Create
	Deletes []Delete
	// Updates move pods to the update revision in place.
	Updates []Update
	// OpenGates are pods whose in-place readiness gate is to be set True:
	// new ones, and ones whose in-place update finished.
	OpenGates []*corev1.Pod
	// Adopt: orphans that match the selector get a controller reference.
	Adopt []*corev1.Pod
	// Release: owned pods that stopped matching the selector lose theirs.
	Release []*corev1.Pod
	// Nodes is every node and what the plan made of it.
	Nodes []NodeState
	// Rollout is the budgets the rollout worked with.
	Rollout Budgets
	// StartupTaint: nodes whose startup taint comes off now.
	StartupTaint StartupTaint
	// RequeueAfter is when the plan would change with time alone (a backoff
	// ending, a pod becoming available); zero when nothing waits on time.
	RequeueAfter time.Duration
	// Stage is the staged rollout's decision (see stages.Next): the next
	// status.rollout and a failed health check, if any.
	Stage stages.Result
	// createRevision is the hash new agents get when not the update
	// revision's.
	createRevision string
}

// Compute is the plan for a snapshot: placement first (an agent on every
// eligible node, none elsewhere, finished agents replaced), then the
// rollout of the update revision.
func Compute(s Snapshot) Plan {
	managed, adopt, release := claim(s)
	p := Plan{Adopt: adopt, Release: release, Nodes: nodeStates(s, managed)}
	if s.Set.Spec.Suspend {
		suspend(p.Nodes)
	}
	for i := range p.Nodes {
		manageNode(&p, &p.Nodes[i], s)
	}
	rollout(&p, s)
	startupTaint(&p, s)
	return p
}

// ReasonSuspended is the eligibility reason of every node while the set is
// suspended.
const ReasonSuspended = "the set is suspended (spec.suspend)"

// suspend makes no node eligible: every agent goes at once, none is
// placed, and no rollout runs (it only looks at nodes that may keep an
// agent). Suspension is what the user asked for, so no budget applies,
// as when a node stops matching the nodeSelector.
func suspend(nodes []NodeState) {
	for i := range nodes {
		if nodes[i].Exists {
			nodes[i].Eligibility = eligibility.Result{Reason: ReasonSuspended}
		}
	}
}

// manageNode decides placement on one node: no agent where none may stay,
// finished agents replaced no faster than the node's backoff allows, at
// most one agent per revision (keeping the available, then the oldest),
// and an agent of the update revision where an eligible node has none.
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
	if len(st.Finished) > 0 {
		if until, ok := s.Backoff[st.Name]; ok && s.Now.Before(until) {
			st.Waiting = fmt.Sprintf("waiting: backoff after a %s agent, until %s",
				st.Finished[len(st.Finished)-1].Status.Phase, until.UTC().Format(time.RFC3339))
			p.requeue(until.Sub(s.Now))
		} else {
			for _, pod := range st.Finished {
				p.Deletes = append(p.Deletes, Delete{Pod: pod, Node: st.Name, Finished: true,
					Reason: fmt.Sprintf("agent %s %s; replacing it", pod.Name, pod.Status.Phase)})
			}
		}
	}
	dedupe(p, st, s)
	if st.New == nil && st.Old == nil && st.Eligibility.ShouldRun && st.Waiting == "" {
		createOn(p, st, "no agent on an eligible node")
	}
}

// dedupe keeps one pod of the update revision and one of any other; the
// rest are duplicates (a stale cache elsewhere, a pod made by hand).
func dedupe(p *Plan, st *NodeState, s Snapshot) {
	minReady := time.Duration(s.Set.Spec.MinReadySeconds) * time.Second
	for _, pod := range st.Active {
		slot := &st.Old
		if podtemplate.Hash(pod) == s.UpdateHash {
			slot = &st.New
		}
		keep := pod
		if *slot != nil {
			keep, pod = better(*slot, pod, minReady, s.Now)
			p.Deletes = append(p.Deletes, Delete{Pod: pod, Node: st.Name,
				Reason: fmt.Sprintf("duplicate agent of the same revision as %s", keep.Name)})
		}
		*slot = keep
	}
}

// better orders two pods of one revision: available first, then older.
func better(a, b *corev1.Pod, minReady time.Duration, now time.Time) (keep, drop *corev1.Pod) {
	if PodAvailable(b, minReady, now) && !PodAvailable(a, minReady, now) {
		return b, a
	}
	return a, b
}

// createOn plans a new agent of the update revision, unless that would
// put a third pod on the node: pods this pass deletes, and terminating
// ones, still occupy it until they are gone.
func createOn(p *Plan, st *NodeState, reason string) bool {
	if st.occupied() >= 2 {
		st.Waiting = "waiting: the node still holds two pods (terminating ones count)"
		return false
	}
	p.Creates = append(p.Creates, Create{Node: st.Name, Reason: reason, Revision: p.createRevision})
	return true
}

func (p *Plan) requeue(after time.Duration) {
	if after <= 0 {
		after = time.Millisecond
	}
	if p.RequeueAfter == 0 || after < p.RequeueAfter {
		p.RequeueAfter = after
	}
}

// PodAvailable: Ready for at least minReady.
func PodAvailable(pod *corev1.Pod, minReady time.Duration, now time.Time) bool {
	since, ready := ReadySince(pod)
	return ready && !now.Before(since.Add(minReady))
}

// ReadySince is when the pod last became Ready, and whether it is Ready.
// A pod whose in-place readiness gate is not True is not Ready, and one
// is Ready no earlier than the gate opened: the kubelet says the same, but
// only once it has seen the gate move, and until then the controller must
// not count a pod it is updating in place as available.
func ReadySince(pod *corev1.Pod) (since time.Time, ready bool) {
	gate := false
	for _, c := range pod.Status.Conditions {
		switch c.Type {
		case corev1.PodReady:
			ready = c.Status == corev1.ConditionTrue
			if c.LastTransitionTime.After(since) {
				since = c.LastTransitionTime.Time
			}
		case nasv1alpha1.ReadinessGateInPlace:
			gate = c.Status != corev1.ConditionTrue
			if c.LastTransitionTime.After(since) {
				since = c.LastTransitionTime.Time
			}
		}
	}
	return since, ready && !gate
}
