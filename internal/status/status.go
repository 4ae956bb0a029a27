// Package status computes a NodeAgentSet's status and conditions from a
// plan, without a client: the counts DaemonSet reports, the revisions, and
// conditions that kubectl wait and kstatus read. Pure.
package status

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
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
}

// Counts are the per-node tallies of a plan.
type Counts struct {
	Desired, Current, Misscheduled, Ready, Available, Updated int32
	// Pending counts pods the plan still creates or deletes.
	Pending int
	// NextAvailable is the earliest moment a Ready pod becomes available.
	NextAvailable time.Time
}

// Count tallies the nodes of a plan as DaemonSet does: desired nodes are
// those where a new agent may run; a node running an agent it should not is
// misscheduled.
func Count(p plan.Plan, updateHash string, minReady time.Duration, now time.Time) Counts {
	var c Counts
	for _, st := range p.Nodes {
		scheduled := len(st.Active) > 0
		if !st.Eligibility.ShouldRun {
			if scheduled {
				c.Misscheduled++
			}
			continue
		}
		c.Desired++
		if !scheduled {
			continue
		}
		c.Current++
		ready, available, updated := false, false, false
		for _, pod := range st.Active {
			since, ok := readySince(pod)
			ready = ready || ok
			if ok && !now.Before(since.Add(minReady)) {
				available = true
			} else if ok && (c.NextAvailable.IsZero() || since.Add(minReady).Before(c.NextAvailable)) {
				c.NextAvailable = since.Add(minReady)
			}
			updated = updated || podtemplate.Hash(pod) == updateHash
		}
		c.Ready += b2i(ready)
		c.Available += b2i(available)
		c.Updated += b2i(updated)
	}
	c.Pending = len(p.Creates) + len(p.Deletes)
	return c
}

// Compute returns the set's new status.
func Compute(in Input) nasv1alpha1.NodeAgentSetStatus {
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
		CollisionCount:         in.CollisionCount,
		UpdateRevision:         in.UpdateRevision,
		CurrentRevision:        set.Status.CurrentRevision,
		Conditions:             append([]metav1.Condition(nil), set.Status.Conditions...),
	}
	complete := c.Updated == c.Desired && c.Available == c.Desired && c.Misscheduled == 0 && c.Pending == 0
	if complete || st.CurrentRevision == "" {
		st.CurrentRevision = in.UpdateRevision
	}
	setConditions(&st, c, complete, in)
	return st
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
	if c.Available == c.Desired {
		set(nasv1alpha1.ConditionAvailable, true, "AllNodesAvailable",
			fmt.Sprintf("%d of %d desired nodes have an available agent", c.Available, c.Desired))
	} else {
		set(nasv1alpha1.ConditionAvailable, false, "NodesUnavailable",
			fmt.Sprintf("%d of %d desired nodes have no available agent", c.Desired-c.Available, c.Desired))
	}
	if complete {
		set(nasv1alpha1.ConditionReconciling, false, "Complete",
			fmt.Sprintf("all %d desired nodes run an available agent of revision %s", c.Desired, in.UpdateRevision))
	} else {
		set(nasv1alpha1.ConditionReconciling, true, reconcilingReason(c), reconcilingMessage(c))
	}
	if in.PodFailure != nil {
		set(nasv1alpha1.ConditionPodFailure, true, "APIError", in.PodFailure.Error())
	} else if meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionPodFailure) != nil {
		set(nasv1alpha1.ConditionPodFailure, false, "NoFailure", "the last pass created and deleted every pod it meant to")
	}
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
	return fmt.Sprintf("%d of %d desired nodes updated, %d available, %d misscheduled, %d pod changes pending",
		c.Updated, c.Desired, c.Available, c.Misscheduled, c.Pending)
}

// readySince is when the pod last became Ready, and whether it is Ready.
func readySince(pod *corev1.Pod) (time.Time, bool) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime.Time, c.Status == corev1.ConditionTrue
		}
	}
	return time.Time{}, false
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}
