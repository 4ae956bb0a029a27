package plan

import (
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// Budgets are the rollout's limits, resolved against the desired nodes.
type Budgets struct {
	Desired        int
	MaxUnavailable int
	MaxSurge       int
	Partition      int
	// Unavailable and Surging are the counts after this plan.
	Unavailable int
	Surging     int
}

// The rollout replaces old agents with agents of the update revision,
// node by node in node-name order. Its invariants, which the rollout
// simulation test and FuzzRollout check after every pass:
//
//  1. Budget: an available old agent is deleted only while the desired
//     nodes without an available agent number fewer than maxUnavailable.
//     An old agent that is not available is replaced at once: its node is
//     already without an agent, so this costs nothing.
//  2. Surge: a new agent is added next to an available old one only while
//     fewer than maxSurge nodes run both; the old one goes once the new
//     one is available.
//  3. A node never holds more than two pods, terminating ones included,
//     and never two live pods of one revision.
//  4. Scope: nodes among the last `partition` desired nodes by name, nodes
//     rollingUpdate.nodeSelector does not match, and nodes where a new
//     agent could not be placed keep their old agent.
//  5. Paused, or the OnDelete strategy: no agent is deleted or surged for
//     an update. Empty nodes still get an agent of the update revision.
//  6. Progress: with the world standing still, passes end with every
//     in-scope desired node running an available agent of the update
//     revision.
func rollout(p *Plan, s Snapshot) {
	strategy := s.Set.Spec.UpdateStrategy
	ru := strategy.RollingUpdate
	if ru == nil {
		ru = &nasv1alpha1.RollingUpdate{}
	}
	minReady := time.Duration(s.Set.Spec.MinReadySeconds) * time.Second
	b := resolveBudgets(ru, p.Nodes)
	for i := range p.Nodes {
		st := &p.Nodes[i]
		if st.Eligibility.ShouldRun && (st.New == nil || !PodAvailable(st.New, minReady, s.Now)) &&
			(st.Old == nil || !PodAvailable(st.Old, minReady, s.Now)) {
			b.Unavailable++
		}
		if st.Old != nil && st.New != nil {
			b.Surging++
		}
	}
	scope := scoper(s, ru, p.Nodes, b.Partition)
	onDelete := strategy.Type == nasv1alpha1.OnDeleteStrategy
	for i := range p.Nodes {
		st := &p.Nodes[i]
		if st.Old == nil || !st.Exists || !st.Eligibility.ShouldContinueRunning {
			continue
		}
		if st.Held = scope(st); st.Held == "" && onDelete {
			st.Held = "OnDelete strategy: replaced once deleted"
		} else if st.Held == "" && ru.Paused {
			st.Held = HeldPaused
		}
		step(p, st, &b, st.Held == "", minReady, s.Now)
	}
	p.Rollout = b
}

// step moves one node with an old agent one step toward the update
// revision, within the budgets.
func step(p *Plan, st *NodeState, b *Budgets, inScope bool, minReady time.Duration, now time.Time) {
	oldAvailable := PodAvailable(st.Old, minReady, now)
	switch {
	case st.New != nil:
		// Surging: the old agent goes once the new one is available.
		if PodAvailable(st.New, minReady, now) && (inScope || st.Held != HeldPaused) {
			p.Deletes = append(p.Deletes, Delete{Pod: st.Old, Node: st.Name,
				Reason: fmt.Sprintf("new agent %s is available; removing the old one", st.New.Name)})
			b.Surging--
		} else if !PodAvailable(st.New, minReady, now) {
			st.Waiting = "waiting: surge agent not yet available"
			if since, ready := ReadySince(st.New); ready {
				p.requeue(since.Add(minReady).Sub(now))
			}
		}
	case !inScope:
	case !oldAvailable:
		p.Deletes = append(p.Deletes, Delete{Pod: st.Old, Node: st.Name,
			Reason: "old agent is not available; replacing it at once"})
		createOn(p, st, "replacing an unavailable old agent")
	case b.Surging < b.MaxSurge:
		if createOn(p, st, "surge: new agent next to the old one") {
			b.Surging++
		}
	case b.Unavailable < b.MaxUnavailable:
		p.Deletes = append(p.Deletes, Delete{Pod: st.Old, Node: st.Name,
			Reason: fmt.Sprintf("rolling update (%d of maxUnavailable %d in use)", b.Unavailable+1, b.MaxUnavailable)})
		createOn(p, st, "rolling update")
		b.Unavailable++
	default:
		if b.MaxSurge > 0 {
			st.Waiting = fmt.Sprintf("waiting: maxSurge budget used (%d)", b.MaxSurge)
		} else {
			st.Waiting = fmt.Sprintf("waiting: maxUnavailable budget used (%d)", b.MaxUnavailable)
		}
	}
}

// resolveBudgets turns the int-or-percent settings into node counts: the
// budgets round up (as DaemonSet's), the partition rounds down.
func resolveBudgets(ru *nasv1alpha1.RollingUpdate, nodes []NodeState) Budgets {
	b := Budgets{}
	for _, st := range nodes {
		if st.Eligibility.ShouldRun {
			b.Desired++
		}
	}
	scaled := func(v *intstr.IntOrString, def intstr.IntOrString, up bool) int {
		n, err := intstr.GetScaledValueFromIntOrPercent(ptr.To(ptr.Deref(v, def)), b.Desired, up)
		if err != nil || n < 0 {
			return 0
		}
		return n
	}
	b.MaxUnavailable = scaled(ru.MaxUnavailable, intstr.FromInt32(1), true)
	b.MaxSurge = scaled(ru.MaxSurge, intstr.FromInt32(0), true)
	b.Partition = scaled(ru.Partition, intstr.FromInt32(0), false)
	if b.MaxUnavailable == 0 && b.MaxSurge == 0 {
		// Both round to zero only with no desired nodes (validation forbids
		// both zero); a budget of one keeps the rollout from stalling.
		b.MaxUnavailable = 1
	}
	return b
}

// scoper returns the function that says why a node is out of the
// rollout's scope, or "" when it is in.
func scoper(s Snapshot, ru *nasv1alpha1.RollingUpdate, nodes []NodeState, partition int) func(*NodeState) string {
	desired := make([]string, 0, len(nodes))
	for _, st := range nodes {
		if st.Eligibility.ShouldRun {
			desired = append(desired, st.Name)
		}
	}
	slices.Sort(desired)
	held := map[string]bool{}
	for _, n := range desired[max(0, len(desired)-partition):] {
		held[n] = true
	}
	var selector labels.Selector
	var nodeLabels map[string]labels.Set
	if ru.NodeSelector != nil {
		var err error
		if selector, err = metav1.LabelSelectorAsSelector(ru.NodeSelector.AsMeta()); err != nil {
			selector = labels.Nothing()
		}
		nodeLabels = make(map[string]labels.Set, len(s.Nodes))
		for _, n := range s.Nodes {
			nodeLabels[n.Name] = n.Labels
		}
	}
	return func(st *NodeState) string {
		switch {
		case !st.Eligibility.ShouldRun:
			return "held: a new agent could not be placed (" + st.Eligibility.Reason + ")"
		case held[st.Name]:
			return fmt.Sprintf("held by partition (%d)", partition)
		case selector != nil && !selector.Matches(nodeLabels[st.Name]):
			return "held: not selected by rollingUpdate.nodeSelector"
		}
		return ""
	}
}

// HeldPaused is the Held note of a node the rollout would update but for
// spec.updateStrategy.rollingUpdate.paused.
const HeldPaused = "held: rollout paused"
