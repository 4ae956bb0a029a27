package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Labels and annotations the controller puts on what it creates.
const (
	// LabelSetName on every pod names the NodeAgentSet that owns it; the
	// controller's pod cache holds only pods carrying it.
	LabelSetName = "nodeagentset.io/name"
	// LabelRevisionHash on every pod and ControllerRevision is the hash of
	// the template revision (the same key DaemonSet uses).
	LabelRevisionHash = "controller-revision-hash"
)

// UpdateStrategyType says how pods are replaced when the template changes.
// +kubebuilder:validation:Enum=RollingUpdate;OnDelete
type UpdateStrategyType string

const (
	// RollingUpdateStrategy replaces pods node by node within the budgets.
	RollingUpdateStrategy UpdateStrategyType = "RollingUpdate"
	// OnDeleteStrategy replaces a pod only after someone deletes it.
	OnDeleteStrategy UpdateStrategyType = "OnDelete"
)

// NodeAgentSetSpec is the desired state of a NodeAgentSet.
// +kubebuilder:validation:XValidation:rule="!has(self.template.spec.restartPolicy) || self.template.spec.restartPolicy == 'Always'",message="spec.template.spec.restartPolicy: only \"Always\" is supported",fieldPath=".template.spec.restartPolicy"
// +kubebuilder:validation:XValidation:rule="!has(self.template.spec.ephemeralContainers) || size(self.template.spec.ephemeralContainers) == 0",message="spec.template.spec.ephemeralContainers: must not be set: a pod template has no ephemeral containers",fieldPath=".template.spec.ephemeralContainers"
// +kubebuilder:validation:XValidation:rule="!has(self.template.spec.activeDeadlineSeconds)",message="spec.template.spec.activeDeadlineSeconds: must not be set: an agent runs until it is replaced",fieldPath=".template.spec.activeDeadlineSeconds"
// +kubebuilder:validation:XValidation:rule="!has(self.selector.matchLabels) || self.selector.matchLabels.all(k, has(self.template.metadata.labels) && k in self.template.metadata.labels && self.template.metadata.labels[k] == self.selector.matchLabels[k])",message="spec.selector: matchLabels do not match spec.template.metadata.labels",fieldPath=".selector"
// +kubebuilder:validation:XValidation:rule="!has(self.selector.matchExpressions) || self.selector.matchExpressions.all(e, e.operator == 'In' ? (has(e.values) && has(self.template.metadata.labels) && e.key in self.template.metadata.labels && self.template.metadata.labels[e.key] in e.values) : e.operator == 'NotIn' ? !(has(e.values) && has(self.template.metadata.labels) && e.key in self.template.metadata.labels && self.template.metadata.labels[e.key] in e.values) : e.operator == 'Exists' ? (has(self.template.metadata.labels) && e.key in self.template.metadata.labels) : !(has(self.template.metadata.labels) && e.key in self.template.metadata.labels))",message="spec.selector: matchExpressions do not match spec.template.metadata.labels",fieldPath=".selector"
// +kubebuilder:validation:XValidation:rule="!has(self.updateStrategy.rollingUpdate) || !has(self.updateStrategy.rollingUpdate.maxSurge) || (has(self.updateStrategy.type) && self.updateStrategy.type == 'OnDelete') || (type(self.updateStrategy.rollingUpdate.maxSurge) == string ? self.updateStrategy.rollingUpdate.maxSurge == '0%' : self.updateStrategy.rollingUpdate.maxSurge == 0) || !(self.template.spec.containers.exists(c, has(c.ports) && c.ports.exists(p, (has(self.template.spec.hostNetwork) && self.template.spec.hostNetwork) || (has(p.hostPort) && p.hostPort > 0))) || (has(self.template.spec.initContainers) && self.template.spec.initContainers.exists(c, has(c.restartPolicy) && c.restartPolicy == 'Always' && has(c.ports) && c.ports.exists(p, (has(self.template.spec.hostNetwork) && self.template.spec.hostNetwork) || (has(p.hostPort) && p.hostPort > 0)))))",message="spec.updateStrategy.rollingUpdate.maxSurge: must be 0 when the template uses host ports (a hostPort, or hostNetwork with container ports): a surge pod could not bind the port on the same node and would stay Pending; use maxUnavailable instead",fieldPath=".updateStrategy.rollingUpdate.maxSurge"
type NodeAgentSetSpec struct {
	// Selector selects the pods this set owns. It must match the template's
	// labels, must not be empty, and cannot change after creation.
	// +required
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="spec.selector: must not be empty"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.selector: field is immutable"
	Selector *LabelSelector `json:"selector"`

	// Template is the agent pod, one per eligible node.
	// +required
	Template corev1.PodTemplateSpec `json:"template"`

	// UpdateStrategy says how pods are replaced when the template changes.
	// +optional
	// +kubebuilder:default={type: RollingUpdate}
	UpdateStrategy UpdateStrategy `json:"updateStrategy,omitempty"`

	// MinReadySeconds is how long a pod must be Ready to count as available.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinReadySeconds int32 `json:"minReadySeconds,omitempty"`

	// RevisionHistoryLimit is the number of old ControllerRevisions kept for
	// rollback. Revisions a live pod uses are never pruned.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`

	// ProgressDeadlineSeconds: when set and a rollout makes no progress for
	// this long, the set reports the rollout as failed.
	// +optional
	// +kubebuilder:validation:Minimum=1
	ProgressDeadlineSeconds *int32 `json:"progressDeadlineSeconds,omitempty"`

	// NodeOverrides size the agent per node: at pod creation the entries
	// whose nodeSelector matches the node apply in list order, a later
	// entry winning over an earlier one. They are part of the revision.
	// A container name the template lacks is refused by the admission
	// policy shipped beside the CRD (config/admission; the CRD's own CEL
	// cannot afford the check), and reported as InvalidSpec without it.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	NodeOverrides []NodeOverride `json:"nodeOverrides,omitempty"`

	// Suspend: true deletes every agent pod of the set and creates none;
	// the set and its history stay. False again places agents as on
	// creation.
	// +optional
	// +kubebuilder:default=false
	Suspend bool `json:"suspend,omitempty"`

	// StartupTaint is the taint nodes register with so that workloads wait
	// for the agent. The agent tolerates it, and the controller removes it
	// from a node once this set's agent there is available; it never adds
	// it back.
	// +optional
	StartupTaint *StartupTaint `json:"startupTaint,omitempty"`
}

// NodeOverride changes the agent's containers on the nodes it selects.
type NodeOverride struct {
	// NodeSelector picks the nodes this entry applies to; empty or unset
	// selects every node.
	// +optional
	NodeSelector *LabelSelector `json:"nodeSelector,omitempty"`

	// Containers are the overrides of the template's containers, by name.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	Containers []ContainerOverride `json:"containers"`
}

// ContainerOverride changes one container of the template.
type ContainerOverride struct {
	// Name is the name of a container of the template.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// Resources replaces the container's resources whole.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// ResourcesFromAllocatable sets, per resource name, the request (and
	// the limit, when the container has one) to a percent of the node's
	// allocatable, clamped to [min, max]. Applied after resources.
	// +optional
	// +kubebuilder:validation:MaxProperties=8
	ResourcesFromAllocatable map[corev1.ResourceName]AllocatableShare `json:"resourcesFromAllocatable,omitempty"`
}

// AllocatableShare is a share of a node's allocatable resource. A min
// above max is refused by the admission policy shipped beside the CRD
// (config/admission), and reported as InvalidSpec without it.
type AllocatableShare struct {
	// Percent of the node's allocatable, from 1 to 100.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent"`
	// Min is the least amount, whatever the node's allocatable.
	// +optional
	Min *resource.Quantity `json:"min,omitempty"`
	// Max is the most amount, whatever the node's allocatable.
	// +optional
	Max *resource.Quantity `json:"max,omitempty"`
}

// StartupTaint names a node taint (any value) by key and effect.
type StartupTaint struct {
	// Key is the taint's key, a qualified name such as
	// example.com/agent-not-ready.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && (!self.contains('/') || self.indexOf('/') <= 253)",message="spec.startupTaint.key: must be a valid taint key: an optional DNS subdomain prefix (at most 253 characters) and '/', then a name of at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
	Key string `json:"key"`
	// Effect is the taint's effect.
	// +required
	// +kubebuilder:validation:Enum=NoSchedule;PreferNoSchedule;NoExecute
	Effect corev1.TaintEffect `json:"effect"`
}

// UpdateStrategy says how pods are replaced when the template changes.
type UpdateStrategy struct {
	// Type is RollingUpdate (default) or OnDelete.
	// +optional
	// +kubebuilder:default=RollingUpdate
	Type UpdateStrategyType `json:"type,omitempty"`

	// RollingUpdate tunes the RollingUpdate strategy.
	// +optional
	// +kubebuilder:default={maxUnavailable: 1, maxSurge: 0, partition: 0}
	RollingUpdate *RollingUpdate `json:"rollingUpdate,omitempty"`
}

// RollingUpdate tunes a rolling update.
// +kubebuilder:validation:XValidation:rule="!has(self.maxUnavailable) || !has(self.maxSurge) || !((type(self.maxUnavailable) == string ? self.maxUnavailable == '0%' : self.maxUnavailable == 0) && (type(self.maxSurge) == string ? self.maxSurge == '0%' : self.maxSurge == 0))",message="spec.updateStrategy.rollingUpdate: maxUnavailable and maxSurge must not both be zero"
type RollingUpdate struct {
	// MaxUnavailable is the most eligible nodes whose agent may be
	// unavailable during an update: an integer, or a percent of desired
	// nodes rounded up.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="spec.updateStrategy.rollingUpdate.maxUnavailable: must be an integer ≥ 0 or a percent from 0% to 100%"
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// MaxSurge is the most nodes that may run an old and a new pod at once
	// (new pod first, old pod removed once the new one is available): an
	// integer, or a percent of desired nodes rounded up.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="spec.updateStrategy.rollingUpdate.maxSurge: must be an integer ≥ 0 or a percent from 0% to 100%"
	MaxSurge *intstr.IntOrString `json:"maxSurge,omitempty"`

	// Partition is the number (or percent of eligible nodes, rounded down)
	// of nodes that keep the old revision. Nodes are updated in node-name
	// order, so the same nodes stay behind.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="spec.updateStrategy.rollingUpdate.partition: must be an integer ≥ 0 or a percent from 0% to 100%"
	Partition *intstr.IntOrString `json:"partition,omitempty"`

	// NodeSelector, when set, limits updates to the nodes it matches; the
	// others keep their revision (a canary by label).
	// +optional
	NodeSelector *LabelSelector `json:"nodeSelector,omitempty"`

	// Paused stops replacing pods. Nodes without a pod still get one, of the
	// update revision.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// UnhealthyNodes says what the rollout does with a node that is
	// unhealthy (Ready not True, cordoned, tainted unreachable, not-ready,
	// ToBeDeletedByClusterAutoscaler or karpenter.sh/disrupted, or being
	// deleted). Skip: an old agent on such a node neither uses the
	// maxUnavailable budget nor blocks completion, and is replaced once the
	// node is healthy again; a node that turns unhealthy after its agent was
	// updated is still charged. Wait: DaemonSet's behaviour, such a node
	// holds the budget until it recovers.
	// +optional
	// +kubebuilder:default=Skip
	UnhealthyNodes UnhealthyNodesPolicy `json:"unhealthyNodes,omitempty"`

	// PodUpdatePolicy: Recreate (default) replaces a pod; InPlaceIfPossible
	// patches its container images and labels/annotations when that is all
	// the new revision changes, and recreates it otherwise.
	// +optional
	// +kubebuilder:default=Recreate
	PodUpdatePolicy PodUpdatePolicy `json:"podUpdatePolicy,omitempty"`
	// Canary is the first nodes of every rollout (see Canary).
	// +optional
	Canary *Canary `json:"canary,omitempty"`
	// Waves update the nodes after the canary one label value at a time.
	// +optional
	Waves *Waves `json:"waves,omitempty"`
	// Health are checks that stop a bad revision.
	// +optional
	Health *Health `json:"health,omitempty"`
}

// UnhealthyNodesPolicy is what a rollout does with unhealthy nodes.
// +kubebuilder:validation:Enum=Skip;Wait
type UnhealthyNodesPolicy string

const (
	// UnhealthyNodesSkip leaves agents on unhealthy nodes for later.
	UnhealthyNodesSkip UnhealthyNodesPolicy = "Skip"
	// UnhealthyNodesWait treats unhealthy nodes as DaemonSet does.
	UnhealthyNodesWait UnhealthyNodesPolicy = "Wait"
)

// PodUpdatePolicy says how a rolling update changes one pod.
// +kubebuilder:validation:Enum=Recreate;InPlaceIfPossible
type PodUpdatePolicy string

const (
	// RecreatePodUpdate deletes the old pod and creates a new one.
	RecreatePodUpdate PodUpdatePolicy = "Recreate"
	// InPlaceIfPossiblePodUpdate patches the running pod when only images
	// and template labels/annotations change.
	InPlaceIfPossiblePodUpdate PodUpdatePolicy = "InPlaceIfPossible"
)

// ReadinessGateInPlace is the readiness gate on pods of sets that update
// in place: False from just before an in-place patch until the containers
// run the new images, so that nothing routes to a restarting agent.
const ReadinessGateInPlace corev1.PodConditionType = "nodeagentset.io/in-place-update-ready"

// Condition types of a NodeAgentSet. Available is for `kubectl wait`;
// Reconciling and Stalled follow the kstatus convention so generic tools
// tell a rollout in progress (InProgress) from a failed one (Failed).
const (
	// ConditionAvailable is True when every desired node has an available pod.
	ConditionAvailable = "Available"
	// ConditionReconciling is True while pods are being placed, replaced or
	// removed.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the rollout made no progress for
	// progressDeadlineSeconds.
	ConditionStalled = "Stalled"
	// ConditionProgressing says how the rollout goes: True (RollingOut or
	// RolloutComplete), Unknown while paused, False once
	// progressDeadlineSeconds passed without progress. Its
	// lastTransitionTime is the last time the rollout made progress.
	ConditionProgressing = "Progressing"
	// ConditionPodFailure is True while the API server refuses to create or
	// delete pods; its message is the server's.
	ConditionPodFailure = "PodFailure"
)

// NodeAgentSetStatus is the observed state of a NodeAgentSet.
type NodeAgentSetStatus struct {
	// ObservedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// DesiredNumberScheduled is the number of nodes that should run the agent.
	// +optional
	DesiredNumberScheduled int32 `json:"desiredNumberScheduled"`
	// CurrentNumberScheduled is the number of desired nodes running at least one agent pod.
	// +optional
	CurrentNumberScheduled int32 `json:"currentNumberScheduled"`
	// NumberMisscheduled is the number of nodes running an agent pod that should not.
	// +optional
	NumberMisscheduled int32 `json:"numberMisscheduled"`
	// NumberReady is the number of desired nodes with a Ready agent pod.
	// +optional
	NumberReady int32 `json:"numberReady"`
	// NumberAvailable is the number of desired nodes with an available agent pod.
	// +optional
	NumberAvailable int32 `json:"numberAvailable"`
	// NumberUnavailable is the number of desired nodes without an available agent pod.
	// +optional
	NumberUnavailable int32 `json:"numberUnavailable"`
	// UpdatedNumberScheduled is the number of nodes running a pod of the update revision.
	// +optional
	UpdatedNumberScheduled int32 `json:"updatedNumberScheduled"`
	// UnhealthyNodes is the number of desired nodes that are unhealthy now
	// (see rollingUpdate.unhealthyNodes).
	// +optional
	UnhealthyNodes int32 `json:"unhealthyNodes"`
	// CollisionCount counts hash collisions of revision names; it salts the
	// hash of the next revision.
	// +optional
	CollisionCount *int32 `json:"collisionCount,omitempty"`
	// CurrentRevision is the revision the rollout started from, or the
	// update revision once the rollout is complete.
	// +optional
	CurrentRevision string `json:"currentRevision,omitempty"`
	// UpdateRevision is the revision of the current template.
	// +optional
	UpdateRevision string `json:"updateRevision,omitempty"`
	// Rollout is the stage of a rollout with canary, waves or health.
	// +optional
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// Conditions: Available, Progressing, Reconciling, Stalled, PodFailure.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodeAgentSet runs one agent pod on every eligible node.
// +kubebuilder:object:root=true
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name: must be no more than 63 characters: it is the value of the label nodeagentset.io/name on every pod of the set"
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=nas,categories=all
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=".status.desiredNumberScheduled"
// +kubebuilder:printcolumn:name="Current",type=integer,JSONPath=".status.currentNumberScheduled"
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=".status.numberReady"
// +kubebuilder:printcolumn:name="Up-to-date",type=integer,JSONPath=".status.updatedNumberScheduled"
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=".status.numberAvailable"
// +kubebuilder:printcolumn:name="Node Selector",type=string,JSONPath=".spec.template.spec.nodeSelector",priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type NodeAgentSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec NodeAgentSetSpec `json:"spec"`
	// +optional
	Status NodeAgentSetStatus `json:"status,omitempty"`
}

// NodeAgentSetList is a list of NodeAgentSets.
// +kubebuilder:object:root=true
type NodeAgentSetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeAgentSet `json:"items"`
}
