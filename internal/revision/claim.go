package revision

import (
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// Orphans picks from a list the revisions set may adopt, as the DaemonSet
// controller's ClaimControllerRevisions does: no controller, the set's name
// label, labels its selector matches, not being deleted. They are what a
// set deleted with --cascade=orphan leaves behind; a set re-created under
// that name adopts them, so its template finds its old revision (same hash)
// and the agents it adopts are not restarted.
func Orphans(items []appsv1.ControllerRevision, set *nasv1alpha1.NodeAgentSet, selector labels.Selector) []*appsv1.ControllerRevision {
	var out []*appsv1.ControllerRevision
	for i := range items {
		cr := &items[i]
		if metav1.GetControllerOfNoCopy(cr) == nil && cr.DeletionTimestamp == nil &&
			cr.Labels[nasv1alpha1.LabelSetName] == set.Name && selector.Matches(labels.Set(cr.Labels)) {
			out = append(out, cr)
		}
	}
	return out
}

// WithController is refs with set as controller, replacing any reference to
// set already there.
func WithController(refs []metav1.OwnerReference, set *nasv1alpha1.NodeAgentSet) []metav1.OwnerReference {
	out := make([]metav1.OwnerReference, 0, len(refs)+1)
	for _, ref := range refs {
		if ref.UID != set.UID {
			out = append(out, ref)
		}
	}
	return append(out, *metav1.NewControllerRef(set, nasv1alpha1.GroupVersion.WithKind("NodeAgentSet")))
}

// OwnersPatch is the JSON merge patch that sets cr's owner references. The
// uid makes the API server refuse it should cr have been replaced by a
// revision of the same name.
func OwnersPatch(cr *appsv1.ControllerRevision, owners []metav1.OwnerReference) ([]byte, error) {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": owners, "uid": cr.UID}})
	if err != nil {
		return nil, fmt.Errorf("encoding the owner patch of ControllerRevision %q: %w", cr.Name, err)
	}
	return patch, nil
}

// Replacement is cr as it would be stored today: the same name, number,
// labels and annotations, the given owners, and data in canonical form.
func Replacement(cr *appsv1.ControllerRevision, canonical []byte, owners []metav1.OwnerReference) *appsv1.ControllerRevision {
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name:            cr.Name,
			Namespace:       cr.Namespace,
			Labels:          cr.Labels,
			Annotations:     cr.Annotations,
			OwnerReferences: owners,
		},
		Data:     runtime.RawExtension{Raw: canonical},
		Revision: cr.Revision,
	}
}
