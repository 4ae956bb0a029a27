// Package rolloutcheck runs the health checks of a staged rollout
// (rollingUpdate.health) over one agent of the update revision: too many
// container restarts, unavailable too long since it was created, its node
// turned unhealthy after the agent was placed. A failure carries a typed
// cause read from the container statuses (CrashLoopBackOff, OOMKilled,
// ErrImagePull, ...). Pure: pod, node health, the spec and now in; events,
// status and metrics are the caller's.
package rolloutcheck

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/health"
	"github.com/nodeagentset/nodeagentset/internal/nodehealth"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// Causes a check reports beside the container waiting reasons of
// internal/health (CrashLoopBackOff, OOMKilled, ErrImagePull, ...).
const (
	// CauseRestartCount: restarts over maxRestarts, with no more telling
	// reason in the container statuses.
	CauseRestartCount = "RestartCount"
	// CauseUnavailable: not available within maxUnavailableTime, with no
	// more telling reason.
	CauseUnavailable = "Unavailable"
	// CauseNodeNotReady: the node turned unhealthy after the agent was
	// placed.
	CauseNodeNotReady = "NodeNotReady"
)

// Agent is one agent of the update revision and what is known of it.
type Agent struct {
	Pod  *corev1.Pod
	Node nodehealth.Health
	// Available: Ready for minReadySeconds.
	Available bool
}

// Failure is a failed check.
type Failure struct {
	Node, Pod string
	// Cause is the typed reason (see the Cause constants and health.Cause).
	Cause   string
	Message string
}

// Spec is rollingUpdate.health resolved: durations parsed, defaults
// applied.
type Spec struct {
	MaxRestarts        *int32
	MaxUnavailableTime *time.Duration
	NodeNotReady       bool
}

// SpecOf resolves h; nil when no check is set. A duration the API server
// let through but Go cannot parse (it cannot happen with the CRD's rules)
// turns that check off rather than failing every agent.
func SpecOf(h *nasv1alpha1.Health) *Spec {
	if h == nil {
		return nil
	}
	s := &Spec{MaxRestarts: h.MaxRestarts, NodeNotReady: ptr.Deref(h.NodeNotReady, true)}
	if h.MaxUnavailableTime != nil {
		if d, err := time.ParseDuration(string(*h.MaxUnavailableTime)); err == nil {
			s.MaxUnavailableTime = &d
		}
	}
	return s
}

// Check returns the agent's failure, if it fails a check, and otherwise
// when time alone could make it fail (the end of maxUnavailableTime), zero
// when never.
func (s *Spec) Check(a Agent, now time.Time) (Failure, time.Time, bool) {
	if s == nil || a.Pod == nil {
		return Failure{}, time.Time{}, false
	}
	fail := func(cause, msg string) (Failure, time.Time, bool) {
		return Failure{Node: podtemplate.NodeOf(a.Pod), Pod: a.Pod.Name, Cause: cause, Message: msg}, time.Time{}, true
	}
	// An agent updated in place runs its revision since the update, not
	// since its creation (podtemplate.UpdatedAt).
	since := podtemplate.UpdatedAt(a.Pod)
	if s.NodeNotReady && a.Node.Unhealthy() && !a.Node.Since.IsZero() && !a.Node.Since.Before(since) {
		return fail(CauseNodeNotReady, fmt.Sprintf("%s after agent %s was placed", a.Node, a.Pod.Name))
	}
	if s.MaxRestarts != nil {
		if n, c := podtemplate.RestartsSinceUpdate(a.Pod); n > *s.MaxRestarts {
			return fail(restartCause(a.Pod), fmt.Sprintf("containers restarted %d times (maxRestarts %d), last %s", n, *s.MaxRestarts, c))
		}
	}
	if s.MaxUnavailableTime == nil || a.Available {
		return Failure{}, time.Time{}, false
	}
	due := since.Add(*s.MaxUnavailableTime)
	if now.Before(due) {
		return Failure{}, due, false
	}
	cause, msg := CauseUnavailable, "no container status tells why"
	if c, ok := health.Of(a.Pod); ok {
		cause, msg = c.Reason, c.Message
	}
	return fail(cause, fmt.Sprintf("not available %v after it was created or updated in place (maxUnavailableTime %v): %s",
		now.Sub(since).Round(time.Second), *s.MaxUnavailableTime, msg))
}

// restartCause is the most telling reason of a restarting pod: a waiting
// reason (CrashLoopBackOff, or OOMKilled when the last run was killed for
// memory), else the last termination's OOMKilled, else the bare count.
func restartCause(pod *corev1.Pod) string {
	if c, ok := health.Of(pod); ok {
		return c.Reason
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if t := cs.LastTerminationState.Terminated; t != nil && t.Reason == "OOMKilled" {
			return "OOMKilled"
		}
	}
	return CauseRestartCount
}
