package plan

import (
	"time"

	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/stages"
)

// staged asks the stage machine (internal/stages) which in-scope nodes the
// rollout may update now, and wraps scope with its answer. The plan only
// asks; canary, soak, promotion, waves and the health checks are decided
// there.
//
// While a check has failed, the plan works toward the current revision
// instead of the update revision: the agent of the current revision is
// the node's New, and an agent of any other revision its Old (see
// towardCurrent); new agents are of the current revision. With failureAction Pause every node is held, so nothing is
// replaced and only empty nodes get an agent (of the current revision);
// with Abort nothing is held, and the rollout's budgets put updated nodes
// back on the current revision exactly as they would roll them forward.
func staged(p *Plan, s Snapshot, scope func(*NodeState) string) func(*NodeState) string {
	if !stages.Staged(s.Set) {
		return scope
	}
	minReady := time.Duration(s.Set.Spec.MinReadySeconds) * time.Second
	current := s.currentHash()
	in := stages.Input{Set: s.Set, Revision: s.Set.Name + "-" + s.UpdateHash, Now: s.Now,
		Rolling: current != "" && current != s.UpdateHash}
	for i := range p.Nodes {
		st := &p.Nodes[i]
		if !st.Exists || !st.Eligibility.ShouldRun {
			continue
		}
		in.Nodes = append(in.Nodes, stages.Node{Name: st.Name, Labels: st.labels, Health: st.Health,
			InScope: scope(st) == "", Update: st.New, Outdated: st.Old != nil, Skipped: st.Skipped != "",
			Available: st.New != nil && PodAvailable(st.New, minReady, s.Now)})
	}
	p.Stage = stages.Next(in)
	if !p.Stage.Due.IsZero() {
		p.requeue(p.Stage.Due.Sub(s.Now))
	}
	if p.Stage.Failed && current != "" {
		p.createRevision = current
		for i := range p.Creates {
			p.Creates[i].Revision = current
		}
		for i := range p.Nodes {
			towardCurrent(&p.Nodes[i], current)
		}
	}
	return func(st *NodeState) string {
		// An abort puts back every node of the update revision, in scope
		// or not: a node rollingUpdate.nodeSelector leaves out got one by
		// joining during the rollout, and must not keep the bad agent.
		if p.Stage.Abort && st.Eligibility.ShouldRun {
			return ""
		}
		if why := scope(st); why != "" {
			return why
		}
		return p.Stage.Holds[st.Name]
	}
}

// towardCurrent makes the current revision's agent the node's New and an
// agent of another revision its Old, the update revision's first: an
// agent of a revision between the two (a template the update revision
// replaced mid-rollout) is not the current revision, and an abort puts it
// back too, once the update revision's agent is gone.
func towardCurrent(st *NodeState, current string) {
	update, other := st.New, st.Old
	st.New, st.Old = nil, update
	if other != nil && podtemplate.Hash(other) == current {
		st.New = other
	} else if update == nil {
		st.Old = other
	}
}
