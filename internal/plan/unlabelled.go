package plan

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// Unlabelled is what to do with the pods of a set's namespace that lack
// the set-name label, so the full pod cache (which holds only labelled
// pods) does not see them: pods the set controls whose label was removed
// by hand, and orphans its selector matches (a DaemonSet's pods after
// --cascade=orphan, a bare pod made by hand). Left unseen, each would end
// up with a second agent beside it.
type Unlabelled struct {
	// Relabel: controlled by the set and matching: the label goes back on.
	Relabel []*metav1.PartialObjectMetadata
	// Adopt: orphans matching the selector: the set's controller reference
	// and label go on, as DaemonSet adopts every matching orphan.
	Adopt []*metav1.PartialObjectMetadata
	// Release: controlled by the set but no longer matching.
	Release []*metav1.PartialObjectMetadata
}

// Claims reports whether a pass must wait for pods to enter the full
// cache before it may place agents: their nodes are not known until then.
func (u Unlabelled) Claims() bool { return len(u.Relabel)+len(u.Adopt) > 0 }

// ClaimUnlabelled sorts the unlabelled pods of the set's namespace (as
// metadata) into what to do with each.
func ClaimUnlabelled(set *nasv1alpha1.NodeAgentSet, selector labels.Selector, pods []*metav1.PartialObjectMetadata) Unlabelled {
	var out Unlabelled
	for _, pod := range pods {
		if _, labelled := pod.Labels[nasv1alpha1.LabelSetName]; labelled || pod.Namespace != set.Namespace {
			continue
		}
		ref := metav1.GetControllerOfNoCopy(pod)
		matches := selector.Matches(labels.Set(pod.Labels))
		switch {
		case ref != nil && ref.UID == set.UID && matches:
			out.Relabel = append(out.Relabel, pod)
		case ref != nil && ref.UID == set.UID:
			out.Release = append(out.Release, pod)
		case ref == nil && matches && pod.DeletionTimestamp == nil && set.DeletionTimestamp == nil:
			out.Adopt = append(out.Adopt, pod)
		}
	}
	return out
}

// ControlledBySetKind reports whether a controller reference names a
// NodeAgentSet, by group and kind, not version: pods created under
// v1alpha1 must still map to their set once a later version is served.
func ControlledBySetKind(ref *metav1.OwnerReference) bool {
	if ref == nil {
		return false
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == nasv1alpha1.GroupVersion.Group && ref.Kind == "NodeAgentSet"
}
