// Package nodehealth says whether a node can be expected to run its agent
// now, as the contract defines an unhealthy node: Ready not True, cordoned,
// tainted by the control plane or an autoscaler that is about to remove it,
// or being deleted. Pure: it reads only the node.
package nodehealth

import (
	"cmp"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Taints that mark a node the control plane or an autoscaler has given up
// on, or is about to remove.
var Taints = []string{
	corev1.TaintNodeUnreachable,
	corev1.TaintNodeNotReady,
	"ToBeDeletedByClusterAutoscaler",
	"karpenter.sh/disrupted",
}

// Health is a node's health as the rollout sees it.
type Health struct {
	// Reason is empty for a healthy node; otherwise the first cause found,
	// for people: "NotReady", "Ready Unknown", "cordoned", "tainted
	// node.kubernetes.io/unreachable", "being deleted".
	Reason string
	// Since is the earliest known moment the node was unhealthy (a
	// condition's transition, a taint's timeAdded, the deletion); zero when
	// no cause carries a time (a cordon).
	Since time.Time
}

// Unhealthy says whether the node is unhealthy.
func (h Health) Unhealthy() bool { return h.Reason != "" }

// Equal: same reason and time (what the planner reads).
func (h Health) Equal(o Health) bool { return h.Reason == o.Reason && h.Since.Equal(o.Since) }

// String is the reason with its time, e.g. "node NotReady since 10:04:31".
func (h Health) String() string {
	if !h.Unhealthy() {
		return "node healthy"
	}
	if h.Since.IsZero() {
		return "node " + h.Reason
	}
	return fmt.Sprintf("node %s since %s", h.Reason, h.Since.UTC().Format(time.TimeOnly))
}

// Of reads a node's health. A node whose kubelet never posted a Ready
// condition counts as healthy: nothing is known against it, and the
// control plane's node lifecycle controller sets Ready Unknown on such a
// node once its grace period is over.
func Of(node *corev1.Node) Health {
	var h Health
	note := func(reason string, since time.Time) {
		if h.Reason == "" {
			h.Reason = reason
		}
		if !since.IsZero() && (h.Since.IsZero() || since.Before(h.Since)) {
			h.Since = since
		}
	}
	if node.DeletionTimestamp != nil {
		note("being deleted", node.DeletionTimestamp.Time)
	}
	for _, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady || c.Status == corev1.ConditionTrue {
			continue
		}
		if c.Status == corev1.ConditionFalse {
			note("NotReady", c.LastTransitionTime.Time)
		} else {
			note("Ready "+cmp.Or(string(c.Status), "Unknown"), c.LastTransitionTime.Time)
		}
	}
	for _, t := range node.Spec.Taints {
		for _, key := range Taints {
			if t.Key == key {
				var added time.Time
				if t.TimeAdded != nil {
					added = t.TimeAdded.Time
				}
				note("tainted "+key, added)
			}
		}
	}
	if node.Spec.Unschedulable {
		note("cordoned", time.Time{})
	}
	return h
}
