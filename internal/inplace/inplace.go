// Package inplace decides which pods of a rollout move to the update
// revision without being replaced, and how: it compares the pod a node
// gets from the old revision with the one it gets from the new, and turns
// the rollout's delete-and-create of a node into one patch of the running
// pod where that is enough. The planner still decides which nodes are
// updated and when (budgets, partition, node selector); only the way a
// chosen pod changes is decided here. Pure.
package inplace

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// AnnotationRestartedAt is the template annotation `kubectl rollout
// restart` stamps.
const AnnotationRestartedAt = "kubectl.kubernetes.io/restartedAt"

// Change is what moving a pod from one computed template to another takes.
type Change int

const (
	// Recreate: the pod spec changes beyond container images.
	Recreate Change = iota
	// Relabel: the pod spec is the same; only its labels and annotations
	// (the revision label at least) change. Nothing restarts.
	Relabel
	// Images: only container images change (and labels, annotations); the
	// kubelet restarts the changed containers in place.
	Images
)

func (c Change) String() string {
	switch c {
	case Relabel:
		return "Relabel"
	case Images:
		return "Images"
	}
	return "Recreate"
}

// Compare says what moving a pod built from template from to one built
// from template to takes. Both are computed for the pod's node (node
// overrides applied).
func Compare(from, to *corev1.PodTemplateSpec) Change {
	// kubectl rollout restart (and ours) asks for new pods by stamping
	// this annotation: relabelling the running ones would restart nothing.
	if from.Annotations[AnnotationRestartedAt] != to.Annotations[AnnotationRestartedAt] {
		return Recreate
	}
	if equality.Semantic.DeepEqual(from.Spec, to.Spec) {
		return Relabel
	}
	a, b := from.Spec.DeepCopy(), to.Spec.DeepCopy()
	if len(a.Containers) != len(b.Containers) {
		return Recreate
	}
	for i := range a.Containers {
		a.Containers[i].Image, b.Containers[i].Image = "", ""
	}
	if equality.Semantic.DeepEqual(a, b) {
		return Images
	}
	return Recreate
}

// Allowed tells whether a change is made in place under a set's policy:
// a relabel always (an agent that would not change is never restarted,
// whatever the policy: a change of node overrides that leaves a node's
// pod as it was moves the node on without a restart), but a relabel that
// changes the template's labels or annotations only when the set updates
// in place (a Recreate set recreates on any template change, as DaemonSet
// does); images only when the set updates in place and the pod carries
// the readiness gate (a pod created before the set turned to
// InPlaceIfPossible has none, and gates cannot be added to a running pod).
func Allowed(c Change, from, to *corev1.PodTemplateSpec, inPlace bool, pod *corev1.Pod) bool {
	switch c {
	case Relabel:
		return inPlace || sameMetadata(from, to)
	case Images:
		return inPlace && HasGate(pod)
	}
	return false
}

func sameMetadata(from, to *corev1.PodTemplateSpec) bool {
	return equality.Semantic.DeepEqual(from.Labels, to.Labels) &&
		equality.Semantic.DeepEqual(from.Annotations, to.Annotations)
}
