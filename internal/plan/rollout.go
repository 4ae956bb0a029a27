package plan

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/nodehealth"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
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
//  1. Budget: an old agent that is Ready is deleted only while the desired
//     nodes without an available agent number fewer than maxUnavailable,
//     and each such delete is charged to the budget, whether or not the
//     agent is available yet (inside minReadySeconds, or its Ready time
//     reset by a kubelet restart): two template changes inside
//     minReadySeconds never take down more than maxUnavailable Ready
//     agents (DaemonSet and Kruise do: k/k #123232, kruise #1323). Only an
//     old agent that is not Ready is replaced at once for free: its node
//     already has no working agent.
//  2. Surge: with maxSurge above zero the rollout only surges, as
//     DaemonSet does: a new agent is added next to a Ready old one only
//     while fewer than maxSurge nodes run both, and the old one goes once
//     the new one is available; a Ready old agent is never deleted before
//     its replacement is available. With maxSurge zero, a new agent that
//     is not Ready next to an old one (a surge left over from an earlier
//     maxSurge) is the extra pod and is deleted, as DaemonSet deletes all
//     but the oldest pod of a node when it does not surge.
//  3. A node never holds more than two pods, terminating ones included,
//     and never two live pods of one revision.
//  4. Scope: of the desired nodes whose agent is of the current revision
//     (status.currentRevision, where the rollout started), the last
//     `partition` by name keep it: nodes joining or leaving never release
//     a held node (a joining node gets the update revision and is not
//     counted), and a rollback to the current revision rolls back every
//     agent of the abandoned one. Nodes rollingUpdate.nodeSelector does
//     not match, and nodes where a new agent could not be placed, keep
//     their old agent too.
//  5. Paused, or the OnDelete strategy: no agent is deleted or surged for
//     an update. Empty nodes still get an agent of the update revision.
//  6. Progress: with the world standing still, passes end with every
//     in-scope desired node running an available agent of the update
//     revision.
//  7. Unhealthy nodes (see nodehealth), with unhealthyNodes Skip: a node
//     that was unhealthy when the rollout reached it is skipped: its old
//     agent is neither replaced nor counted against maxUnavailable or
//     maxSurge, and status counts it settled; it is replaced once the node
//     is healthy again. A node whose agent of the update revision was
//     created before the node turned unhealthy, and is not available, is
//     charged like any unavailable node (judgeUnhealthy). Pods Terminating
//     past their grace period there do not occupy the node. With Wait,
//     unhealthy nodes are like any other (DaemonSet's behaviour).
func rollout(p *Plan, s Snapshot) {
	strategy := s.Set.Spec.UpdateStrategy
	ru := strategy.RollingUpdate
	if ru == nil {
		ru = &nasv1alpha1.RollingUpdate{}
	}
	minReady := time.Duration(s.Set.Spec.MinReadySeconds) * time.Second
	b := resolveBudgets(ru, p.Nodes)
	skip := unhealthyPolicy(s.Set) == nasv1alpha1.UnhealthyNodesSkip
	for i := range p.Nodes {
		st := &p.Nodes[i]
		if skip && st.Exists && st.Health.Unhealthy() {
			judgeUnhealthy(st, minReady, s.Now)
		}
		if st.Skipped != "" {
			continue
		}
		if st.Eligibility.ShouldRun && (st.New == nil || !PodAvailable(st.New, minReady, s.Now)) &&
			(st.Old == nil || !PodAvailable(st.Old, minReady, s.Now)) {
			b.Unavailable++
		}
		if st.Old != nil && st.New != nil {
			b.Surging++
		}
	}
	scope := staged(p, s, scoper(s, ru, p.Nodes, b.Partition))
	onDelete := strategy.Type == nasv1alpha1.OnDeleteStrategy
	for i := range p.Nodes {
		st := &p.Nodes[i]
		if st.Old == nil || !st.Exists || !st.Eligibility.ShouldContinueRunning {
			continue
		}
		if st.Held = scope(st); st.Held == "" && st.Skipped != "" {
			st.Held = st.Skipped
		} else if st.Held == "" && onDelete {
			st.Held = "OnDelete strategy: replaced once deleted"
		} else if st.Held == "" && ru.Paused {
			st.Held = HeldPaused
		}
		step(p, st, &b, st.Held == "", minReady, s.Now)
	}
	p.Rollout = b
}

// judgeUnhealthy decides, with unhealthyNodes Skip, whether an unhealthy
// node is passed by or charged. Its agent of the update revision that is
// not available, created before the node turned unhealthy, is charged:
// the new agent may be what broke the node, and a rollout must not run
// past agents that break their nodes. Anything else on it (an old agent,
// no agent, a new agent placed on a node already unhealthy) is skipped. A
// node whose only cause carries no time (a cordon) cannot be shown to have
// turned unhealthy after its update, so it is skipped; charging it would
// also make placing an agent on a cordoned empty node (which adds no
// unavailability) use the budget.
func judgeUnhealthy(st *NodeState, minReady time.Duration, now time.Time) {
	h := st.Health
	switch {
	case st.New != nil && PodAvailable(st.New, minReady, now):
	case st.New != nil && TurnedUnhealthyAfter(h, st.New):
		st.Charged = fmt.Sprintf("charged: node became %s after its agent was updated", h.Reason)
	case st.Eligibility.ShouldRun || st.Old != nil || st.New != nil:
		st.Skipped = "skipped: " + h.String()
	}
}

// TurnedUnhealthyAfter: the node turned unhealthy after pod was created
// or updated in place (podtemplate.UpdatedAt),
// as far as the node shows (a cordon carries no time and never does).
func TurnedUnhealthyAfter(h nodehealth.Health, pod *corev1.Pod) bool {
	return h.Unhealthy() && !h.Since.IsZero() && !h.Since.Before(podtemplate.UpdatedAt(pod))
}

// step moves one node with an old agent one step toward the update
// revision, within the budgets.
func step(p *Plan, st *NodeState, b *Budgets, inScope bool, minReady time.Duration, now time.Time) {
	_, oldReady := ReadySince(st.Old)
	switch {
	case st.New != nil:
		settleSurge(p, st, b, inScope, minReady, now)
	case !inScope:
	case !oldReady:
		p.Deletes = append(p.Deletes, Delete{Pod: st.Old, Node: st.Name,
			Reason: "old agent is not Ready; replacing it at once"})
		createOn(p, st, "replacing an old agent that is not Ready")
	case b.MaxSurge > 0:
		if b.Surging < b.MaxSurge && createOn(p, st, "surge: new agent next to the old one") {
			b.Surging++
		} else if st.Waiting == "" {
			st.Waiting = fmt.Sprintf("waiting: maxSurge budget used (%d)", b.MaxSurge)
		}
	case b.Unavailable < b.MaxUnavailable:
		p.Deletes = append(p.Deletes, Delete{Pod: st.Old, Node: st.Name,
			Reason: fmt.Sprintf("rolling update (%d of maxUnavailable %d in use)", b.Unavailable+1, b.MaxUnavailable)})
		createOn(p, st, "rolling update")
		b.Unavailable++
	default:
		st.Waiting = fmt.Sprintf("waiting: maxUnavailable budget used (%d)", b.MaxUnavailable)
	}
}

// settleSurge handles a node running an old and a new agent: the old one
// goes once the new one is available; without a surge budget (maxSurge
// lowered to zero while a surge agent could not start, say on a taken
// host port) a new agent that is not Ready is the extra pod and goes.
func settleSurge(p *Plan, st *NodeState, b *Budgets, inScope bool, minReady time.Duration, now time.Time) {
	since, newReady := ReadySince(st.New)
	switch {
	case PodAvailable(st.New, minReady, now):
		if inScope || st.Held != HeldPaused {
			p.Deletes = append(p.Deletes, Delete{Pod: st.Old, Node: st.Name,
				Reason: fmt.Sprintf("new agent %s is available; removing the old one", st.New.Name)})
			b.Surging--
		}
	case !newReady && b.MaxSurge == 0:
		p.Deletes = append(p.Deletes, Delete{Pod: st.New, Node: st.Name,
			Reason: fmt.Sprintf("new agent %s is not Ready and maxSurge is 0; removing the extra pod", st.New.Name)})
		b.Surging--
	default:
		st.Waiting = "waiting: surge agent not yet available"
		if newReady {
			p.requeue(since.Add(minReady).Sub(now))
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
	// Partition holds nodes still on the current revision (the one the
	// rollout started from), not the last desired nodes: a node that joins
	// gets the update revision and must not shift which nodes are held;
	// and after a rollback to the current revision, agents of the
	// abandoned one are not held but rolled back.
	current := s.currentHash()
	outdated := make([]string, 0, len(nodes))
	for _, st := range nodes {
		if st.Eligibility.ShouldRun && st.Old != nil && st.New == nil &&
			(current == "" || podtemplate.Hash(st.Old) == current) {
			outdated = append(outdated, st.Name)
		}
	}
	slices.Sort(outdated)
	held := map[string]bool{}
	for _, n := range outdated[max(0, len(outdated)-partition):] {
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
