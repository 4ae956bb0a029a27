package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Annotations on a NodeAgentSet that carry the imperative rollout verbs
// (kubectl nodeagentset rollout promote|abort|retry). Each names the update
// revision it applies to, so a verb given for one revision never acts on a
// later one, and each survives manager restarts because it lives in the
// API, not in the manager's memory. The controller only reads them.
const (
	// AnnotationPromote: "<revision>" lets a rollout of that revision go
	// past canary.promotion Manual.
	AnnotationPromote = "nodeagentset.io/promote"
	// AnnotationAbort: "<revision>" aborts the rollout of that revision
	// (as a failed health check with failureAction Abort does).
	AnnotationAbort = "nodeagentset.io/abort"
	// AnnotationRetry: "<revision>@<phaseSince>" clears the failure of that
	// revision recorded at phaseSince (status.rollout.phaseSince, RFC 3339);
	// a later failure of the same revision is not cleared by it.
	AnnotationRetry = "nodeagentset.io/retry"
)

// Duration is a Go duration string ("30s", "10m", "1h30m"), not negative.
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self == '0' || self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) >= duration('0s')",message="must be a non-negative Go duration such as 30s, 10m or 1h30m"
type Duration string

// LabelKey is a node label key: an optional DNS subdomain prefix and '/',
// then a name of at most 63 characters.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=317
// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && (!self.contains('/') || self.indexOf('/') <= 253)",message="must be a valid label key: an optional DNS subdomain prefix (at most 253 characters) and '/', then a name of at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
type LabelKey string

// Promotion says whether a rollout goes past its canary by itself.
// +kubebuilder:validation:Enum=Auto;Manual
type Promotion string

const (
	// PromotionAuto goes on once the canary soaked.
	PromotionAuto Promotion = "Auto"
	// PromotionManual waits for `kubectl nodeagentset rollout promote`.
	PromotionManual Promotion = "Manual"
)

// FailureAction is what a failed health check does to the rollout.
// +kubebuilder:validation:Enum=Pause;Abort
type FailureAction string

const (
	// FailurePause updates no further node; nodes without an agent get the
	// current revision.
	FailurePause FailureAction = "Pause"
	// FailureAbort also puts updated nodes back on the current revision,
	// under the budgets.
	FailureAbort FailureAction = "Abort"
)

// Canary is the first nodes of every rollout.
type Canary struct {
	// Nodes is how many desired in-scope nodes get the new revision first:
	// an integer, or a percent rounded up; at least 1.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="spec.updateStrategy.rollingUpdate.canary.nodes: must be an integer ≥ 0 or a percent from 0% to 100%"
	Nodes *intstr.IntOrString `json:"nodes,omitempty"`
	// SpreadBy is a node label key: canary nodes are taken round-robin
	// across its sorted values (one per zone, say).
	// +optional
	SpreadBy LabelKey `json:"spreadBy,omitempty"`
	// NodeSelector limits the nodes canaries are chosen from (default:
	// every in-scope node).
	// +optional
	NodeSelector *LabelSelector `json:"nodeSelector,omitempty"`
	// Soak is how long every canary agent must be available and pass the
	// health checks before the rollout goes on.
	// +optional
	// +kubebuilder:default="0s"
	Soak Duration `json:"soak,omitempty"`
	// Promotion Manual waits, after the soak, for `kubectl nodeagentset
	// rollout promote`.
	// +optional
	// +kubebuilder:default=Auto
	Promotion Promotion `json:"promotion,omitempty"`
}

// Waves update the nodes after the canary one label value at a time.
type Waves struct {
	// By is the node label key whose values make the waves, in sorted
	// order; nodes without the label are the last wave.
	// +required
	By LabelKey `json:"by"`
	// Soak is how long every agent of a wave must be available and pass
	// the health checks before the next wave starts.
	// +optional
	// +kubebuilder:default="0s"
	Soak Duration `json:"soak,omitempty"`
}

// Health are checks over the update revision's agents that stop a bad
// revision.
type Health struct {
	// MaxRestarts: an agent whose containers restarted more than this many
	// times in total fails the check. Unset: off.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxRestarts *int32 `json:"maxRestarts,omitempty"`
	// MaxUnavailableTime: an agent not available this long after it was
	// created fails the check. Unset: off.
	// +optional
	MaxUnavailableTime *Duration `json:"maxUnavailableTime,omitempty"`
	// NodeNotReady: a node that turns unhealthy after its agent was updated,
	// before the rollout completes, fails the check.
	// +optional
	// +kubebuilder:default=true
	NodeNotReady *bool `json:"nodeNotReady,omitempty"`
	// FailureAction is Pause (default) or Abort.
	// +optional
	// +kubebuilder:default=Pause
	FailureAction FailureAction `json:"failureAction,omitempty"`
}

// RolloutPhase is the stage of a rollout.
type RolloutPhase string

// The phases of status.rollout.phase.
const (
	PhaseCanary            RolloutPhase = "Canary"
	PhaseSoaking           RolloutPhase = "Soaking"
	PhaseAwaitingPromotion RolloutPhase = "AwaitingPromotion"
	PhaseWaves             RolloutPhase = "Waves"
	PhasePaused            RolloutPhase = "Paused"
	PhaseFailed            RolloutPhase = "Failed"
	PhaseAborted           RolloutPhase = "Aborted"
	PhaseComplete          RolloutPhase = "Complete"
)

// RolloutFailure is a failed health check.
type RolloutFailure struct {
	// Node the failing agent runs on.
	// +optional
	Node string `json:"node,omitempty"`
	// Pod is the failing agent.
	// +optional
	Pod string `json:"pod,omitempty"`
	// Reason is the typed cause: RestartCount, CrashLoopBackOff, OOMKilled,
	// ErrImagePull, ImagePullBackOff, RunContainerError, Unavailable,
	// NodeNotReady, or Aborted for the abort verb.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message says what was seen.
	// +optional
	Message string `json:"message,omitempty"`
}

// RolloutStatus is where a staged rollout (canary, waves, health) is; it
// lives in the status so the stage survives manager restarts.
type RolloutStatus struct {
	// Revision is the update revision this describes.
	// +optional
	Revision string `json:"revision,omitempty"`
	// Phase is Canary, Soaking, AwaitingPromotion, Waves, Paused, Failed,
	// Aborted or Complete.
	// +optional
	Phase RolloutPhase `json:"phase,omitempty"`
	// Wave is the label value being updated (or soaked).
	// +optional
	Wave string `json:"wave,omitempty"`
	// CanaryNodes are the canary's nodes for this revision.
	// +optional
	// +listType=atomic
	CanaryNodes []string `json:"canaryNodes,omitempty"`
	// Failure is the failed health check, if any.
	// +optional
	Failure *RolloutFailure `json:"failure,omitempty"`
	// PhaseSince is when the phase (or the wave) began; a soak is measured
	// from it.
	// +optional
	PhaseSince *metav1.Time `json:"phaseSince,omitempty"`
}
