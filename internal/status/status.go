// Package status computes a NodeAgentSet's status and conditions from a
// plan, without a client: the counts DaemonSet reports, the revisions, and
// conditions that kubectl wait and kstatus read. Pure.
package status

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/stages"
)

// Input is what status is computed from.
type Input struct {
	Set        *nasv1alpha1.NodeAgentSet
	Plan       plan.Plan
	UpdateHash string
	// UpdateRevision is the ControllerRevision name of UpdateHash.
	UpdateRevision string
	CollisionCount *int32
	Now            time.Time
	// PodFailure is the API server's refusal from this pass, if any.
	PodFailure error
	// StartupTaint is what became of spec.startupTaint in this pass.
	StartupTaint TaintResult
}

// Counts are the per-node tallies of a plan.
type Counts struct {
	Desired, Current, Misscheduled, Ready, Available, Updated int32
	// Settled counts desired nodes that need nothing more: an available
	// agent of the update revision, or an available old one the rollout
	// leaves in place by design (partition, node selector, OnDelete).
	Settled int32
	// Outdated counts desired nodes whose old agent the rollout still
	// means to replace (in scope, or held only by pause).
	Outdated int32
	// Unhealthy counts desired nodes that are unhealthy; Skipped those of
	// them the rollout passes by (rollingUpdate.unhealthyNodes Skip).
	Unhealthy, Skipped int32
	// Pending counts pods the plan still creates or deletes.
	Pending int
	// Pods counts the set's pods on every node, terminating and finished
	// ones included.
	Pods int
	// NextAvailable is the earliest moment a Ready pod becomes available.
	NextAvailable time.Time
}

// Count tallies the nodes of a plan as DaemonSet does: desired nodes are
// those where a new agent may run; a node running an agent it should not is
// misscheduled.
func Count(p plan.Plan, updateHash string, minReady time.Duration, now time.Time) Counts {
	var c Counts
	for _, st := range p.Nodes {
		c.Pods += len(st.Active) + len(st.Finished) + st.Terminating
		scheduled := len(st.Active) > 0
		if !st.Eligibility.ShouldRun {
			if scheduled {
				c.Misscheduled++
			}
			continue
		}
		c.Desired++
		c.Unhealthy += b2i(st.Health.Unhealthy())
		c.Skipped += b2i(st.Skipped != "")
		if !scheduled {
			c.Settled += b2i(st.Skipped != "")
			continue
		}
		c.Current++
		ready, available := false, false
		for _, pod := range st.Active {
			since, ok := plan.ReadySince(pod)
			ready = ready || ok
			if ok && !now.Before(since.Add(minReady)) {
				available = true
			} else if ok && (c.NextAvailable.IsZero() || since.Add(minReady).Before(c.NextAvailable)) {
				c.NextAvailable = since.Add(minReady)
			}
		}
		// As DaemonSet counts: a node is updated when its oldest agent is
		// of the update revision, so a surge agent that has not replaced
		// the old one yet (or never can, say on a taken host port) is
		// not counted.
		update, other := byRevision(st, updateHash)
		updated := update != nil && other == nil
		c.Outdated += b2i(other != nil && !settledHold(st.Held))
		c.Ready += b2i(ready)
		c.Available += b2i(available)
		c.Updated += b2i(updated)
		newAvailable := updated && plan.PodAvailable(update, minReady, now)
		// A skipped unhealthy node needs nothing now: it is replaced once
		// the node is healthy again.
		c.Settled += b2i(newAvailable || available && !updated && settledHold(st.Held) || st.Skipped != "")
	}
	c.Pending = len(p.Creates) + len(p.Deletes)
	return c
}

// settledHold: the rollout leaves this node's old agent by design, not
// because it is paused or waiting for a stage of a staged rollout.
func settledHold(held string) bool {
	return held != "" && held != plan.HeldPaused && !strings.HasPrefix(held, stages.Hold)
}

// byRevision returns the node's agent of the update revision and its
// other one. The plan's New is the agent of the revision it works toward,
// which is the current revision while a staged rollout's check has failed.
func byRevision(st plan.NodeState, updateHash string) (update, other *corev1.Pod) {
	for _, pod := range []*corev1.Pod{st.New, st.Old} {
		if pod != nil && podtemplate.Hash(pod) == updateHash {
			update = pod
		} else if pod != nil {
			other = pod
		}
	}
	return update, other
}

// Compute returns the set's new status, and the next moment time alone
// would change it (a Ready pod becoming available, the progress deadline
// falling), zero when none.
func Compute(in Input) (nasv1alpha1.NodeAgentSetStatus, time.Time) {
	set := in.Set
	minReady := time.Duration(set.Spec.MinReadySeconds) * time.Second
	c := Count(in.Plan, in.UpdateHash, minReady, in.Now)
	st := nasv1alpha1.NodeAgentSetStatus{
		ObservedGeneration:     set.Generation,
		DesiredNumberScheduled: c.Desired,
		CurrentNumberScheduled: c.Current,
		NumberMisscheduled:     c.Misscheduled,
		NumberReady:            c.Ready,
		NumberAvailable:        c.Available,
		NumberUnavailable:      c.Desired - c.Available,
		UpdatedNumberScheduled: c.Updated,
		UnhealthyNodes:         c.Unhealthy,
		CollisionCount:         in.CollisionCount,
		UpdateRevision:         in.UpdateRevision,
		CurrentRevision:        set.Status.CurrentRevision,
		Conditions:             append([]metav1.Condition(nil), set.Status.Conditions...),
	}
	// Complete: nothing left to do. NoSchedule-tainted nodes that keep an
	// agent count as misscheduled (as in DaemonSet) but need no action.
	complete := c.Settled == c.Desired && c.Pending == 0 && !in.Plan.Stage.Failed
	if complete && c.Updated == c.Desired || st.CurrentRevision == "" {
		st.CurrentRevision = in.UpdateRevision
	}
	st.Rollout = in.Plan.Stage.Status
	setConditions(&st, c, complete, in)
	healthCheckFailed(&st, in)
	wake := c.NextAvailable
	if d := ProgressDeadline(set, st); !d.IsZero() && (wake.IsZero() || d.Before(wake)) {
		wake = d
	}
	return st, wake
}

func setConditions(st *nasv1alpha1.NodeAgentSetStatus, c Counts, complete bool, in Input) {
	gen := in.Set.Generation
	set := func(t string, ok bool, reason, message string) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: status, Reason: reason,
			Message: message, ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(in.Now)})
	}
	suspendedCondition(set, c, in.Set)
	startupTaintCondition(st, set, in.Set, in.StartupTaint)
	switch {
	case in.Set.Spec.Suspend:
		set(nasv1alpha1.ConditionAvailable, false, "Suspended", "the set is suspended (spec.suspend): no agent runs")
	case c.Available == c.Desired:
		set(nasv1alpha1.ConditionAvailable, true, "AllNodesAvailable",
			fmt.Sprintf("%d of %d desired nodes have an available agent", c.Available, c.Desired))
	default:
		set(nasv1alpha1.ConditionAvailable, false, "NodesUnavailable",
			fmt.Sprintf("%d of %d desired nodes have no available agent", c.Desired-c.Available, c.Desired))
	}
	switch {
	case in.Set.Spec.Suspend && (c.Pods > 0 || c.Pending > 0):
		set(nasv1alpha1.ConditionReconciling, true, "Suspending",
			fmt.Sprintf("suspended: %d agent pods left to remove", c.Pods))
	case in.Set.Spec.Suspend:
		// Settled: what the spec asks for is done, so generic tools
		// (kstatus) read Current.
		set(nasv1alpha1.ConditionReconciling, false, "Suspended", "suspended: no agent pod is left")
	case complete:
		set(nasv1alpha1.ConditionReconciling, false, "Complete",
			fmt.Sprintf("%d desired nodes settled on revision %s (%d updated)%s", c.Desired, in.UpdateRevision, c.Updated, skippedNote(c)))
	case paused(in.Set) && c.Pending == 0:
		// kstatus reads Reconciling True as InProgress: a paused rollout
		// with nothing else to do is where the spec asks it to be, so a
		// GitOps tool waiting for it must not wait for ever (Current).
		set(nasv1alpha1.ConditionReconciling, false, "Paused", "the rollout is paused: "+reconcilingMessage(c))
	default:
		set(nasv1alpha1.ConditionReconciling, true, reconcilingReason(c), reconcilingMessage(c))
	}
	progress(st, c, complete, in)
	// This pass got through; an earlier failure to get here is over.
	meta.RemoveStatusCondition(&st.Conditions, nasv1alpha1.ConditionReconcileFailure)
	if in.PodFailure != nil {
		set(nasv1alpha1.ConditionPodFailure, true, "APIError", Clip(in.PodFailure.Error(), MaxMessage))
	} else if meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionPodFailure) != nil {
		set(nasv1alpha1.ConditionPodFailure, false, "NoFailure", "the last pass created and deleted every pod it meant to")
	}
}

// suspendedCondition says whether the set is suspended: True while it is,
// False (Resumed) once it no longer is; absent on a set never suspended.
func suspendedCondition(set func(string, bool, string, string), c Counts, nas *nasv1alpha1.NodeAgentSet) {
	switch {
	case nas.Spec.Suspend && c.Pods == 0:
		set(nasv1alpha1.ConditionSuspended, true, "Suspended", "spec.suspend is true: every agent pod was removed")
	case nas.Spec.Suspend:
		set(nasv1alpha1.ConditionSuspended, true, "Suspended",
			fmt.Sprintf("spec.suspend is true: %d agent pods left to remove", c.Pods))
	case meta.FindStatusCondition(nas.Status.Conditions, nasv1alpha1.ConditionSuspended) != nil:
		set(nasv1alpha1.ConditionSuspended, false, "Resumed", "spec.suspend is false: agents are placed on every eligible node")
	}
}

// progress keeps the Progressing condition, whose lastTransitionTime is
// the last time the rollout made progress (more nodes updated or
// available, or a new revision), and reports a rollout with no progress for
// progressDeadlineSeconds as failed: Progressing False and Stalled True,
// reason ProgressDeadlineExceeded (kstatus then says Failed). Progress
// clears it. Paused rollouts have no deadline, as with Deployments.
func progress(st *nasv1alpha1.NodeAgentSetStatus, c Counts, complete bool, in Input) {
	prev := in.Set.Status
	now := metav1.NewTime(in.Now)
	moved := prev.UpdateRevision != st.UpdateRevision || st.UpdatedNumberScheduled > prev.UpdatedNumberScheduled ||
		st.NumberAvailable > prev.NumberAvailable || waitingByDesign(in.Plan.Stage.Status)
	cond := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionProgressing)
	mark := func(status metav1.ConditionStatus, reason, message string, at metav1.Time) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: nasv1alpha1.ConditionProgressing, Status: status,
			Reason: reason, Message: message, ObservedGeneration: in.Set.Generation})
		meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionProgressing).LastTransitionTime = at
	}
	stalled := false
	switch {
	case in.Set.Spec.Suspend:
		mark(metav1.ConditionUnknown, "Suspended", "the set is suspended; no rollout runs and no progress deadline applies",
			keepOr(cond, metav1.ConditionUnknown, now))
	case complete:
		mark(metav1.ConditionTrue, "RolloutComplete", "the rollout is complete", keepOr(cond, metav1.ConditionTrue, now))
	case rolledOut(prev, *st, c):
		// An agent going unready, or a node joining, after the rollout
		// completed is not a rollout: no deadline applies (nor does
		// kstatus say Failed) until a new revision or scope comes.
		mark(metav1.ConditionTrue, "RolloutComplete", "the rollout is complete", cond.LastTransitionTime)
	case paused(in.Set):
		mark(metav1.ConditionUnknown, "Paused", "the rollout is paused; no progress deadline applies", keepOr(cond, metav1.ConditionUnknown, now))
	case moved || cond == nil || cond.Reason == "RolloutComplete" || cond.Reason == "Paused" || cond.Reason == "Suspended" ||
		cond.Reason == ReasonHealthCheckFailed:
		mark(metav1.ConditionTrue, "RollingOut", reconcilingMessage(c), now)
	case deadline(in.Set) > 0 && in.Now.Sub(cond.LastTransitionTime.Time) >= deadline(in.Set):
		stalled = true
		mark(metav1.ConditionFalse, "ProgressDeadlineExceeded", fmt.Sprintf("no progress for %v: %s",
			deadline(in.Set), reconcilingMessage(c)), cond.LastTransitionTime)
	}
	if stalled {
		message := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionProgressing).Message
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: nasv1alpha1.ConditionStalled, Status: metav1.ConditionTrue,
			Reason: "ProgressDeadlineExceeded", Message: message, ObservedGeneration: in.Set.Generation, LastTransitionTime: now})
		// kstatus reads Reconciling before Stalled: a stalled rollout is
		// not reconciling, or generic tools would wait on it for ever.
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: nasv1alpha1.ConditionReconciling, Status: metav1.ConditionFalse,
			Reason: "ProgressDeadlineExceeded", Message: message, ObservedGeneration: in.Set.Generation, LastTransitionTime: now})
	} else {
		meta.RemoveStatusCondition(&st.Conditions, nasv1alpha1.ConditionStalled)
	}
}

// rolledOut: the previous status saw this revision's rollout complete and
// no node has an old agent the rollout means to replace.
func rolledOut(prev, st nasv1alpha1.NodeAgentSetStatus, c Counts) bool {
	cond := meta.FindStatusCondition(prev.Conditions, nasv1alpha1.ConditionProgressing)
	return cond != nil && cond.Status == metav1.ConditionTrue && cond.Reason == "RolloutComplete" &&
		prev.UpdateRevision == st.UpdateRevision && c.Outdated == 0
}

// keepOr keeps the condition's time while its status stays, else now.
func keepOr(cond *metav1.Condition, status metav1.ConditionStatus, now metav1.Time) metav1.Time {
	if cond != nil && cond.Status == status {
		return cond.LastTransitionTime
	}
	return now
}

// ProgressDeadline is when a rollout in progress will count as stalled, or
// zero when none applies; the reconciler requeues for that moment.
func ProgressDeadline(set *nasv1alpha1.NodeAgentSet, st nasv1alpha1.NodeAgentSetStatus) time.Time {
	cond := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionProgressing)
	if deadline(set) == 0 || cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != "RollingOut" {
		return time.Time{}
	}
	return cond.LastTransitionTime.Add(deadline(set))
}

func deadline(set *nasv1alpha1.NodeAgentSet) time.Duration {
	if set.Spec.ProgressDeadlineSeconds == nil {
		return 0
	}
	return time.Duration(*set.Spec.ProgressDeadlineSeconds) * time.Second
}

func paused(set *nasv1alpha1.NodeAgentSet) bool {
	ru := set.Spec.UpdateStrategy.RollingUpdate
	return set.Spec.UpdateStrategy.Type != nasv1alpha1.OnDeleteStrategy && ru != nil && ru.Paused
}

func reconcilingReason(c Counts) string {
	switch {
	case c.Updated < c.Desired:
		return "Updating"
	case c.Misscheduled > 0:
		return "Removing"
	default:
		return "Placing"
	}
}

func reconcilingMessage(c Counts) string {
	return fmt.Sprintf("%d of %d desired nodes updated, %d available, %d misscheduled, %d pod changes pending%s",
		c.Updated, c.Desired, c.Available, c.Misscheduled, c.Pending, skippedNote(c))
}

// skippedNote names the unhealthy nodes a rollout passes by, if any.
func skippedNote(c Counts) string {
	if c.Skipped == 0 {
		return ""
	}
	return fmt.Sprintf("; %d unhealthy nodes skipped until they recover", c.Skipped)
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

// Significant reports whether next differs from cur in something a reader
// acts on at once: the generation observed, a revision, the collision count,
// or a condition's status, reason or generation. Counts and messages alone
// are not: a rollout changes them on nearly every pass, and writing each
// change costs the API server a write and every watcher an event.
func Significant(cur, next nasv1alpha1.NodeAgentSetStatus) bool {
	if cur.ObservedGeneration != next.ObservedGeneration ||
		cur.CurrentRevision != next.CurrentRevision || cur.UpdateRevision != next.UpdateRevision ||
		!ptr.Equal(cur.CollisionCount, next.CollisionCount) || !equality.Semantic.DeepEqual(cur.Rollout, next.Rollout) ||
		len(cur.Conditions) != len(next.Conditions) {
		return true
	}
	for _, n := range next.Conditions {
		c := meta.FindStatusCondition(cur.Conditions, n.Type)
		if c == nil || c.Status != n.Status || c.Reason != n.Reason || c.ObservedGeneration != n.ObservedGeneration {
			return true
		}
	}
	return false
}
