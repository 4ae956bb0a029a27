package plugin

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

// Undo puts back the revision's node overrides with its template, so the
// set hashes to that revision again and agents already running it stay.
func TestUndoRestoresTheNodeOverridesOfTheRevision(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "ns", UID: "u"},
		Spec: nasv1alpha1.NodeAgentSetSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "a:1"}}}},
			NodeOverrides: []nasv1alpha1.NodeOverride{{Containers: []nasv1alpha1.ContainerOverride{{Name: "agent",
				Resources: &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}}},
		}}
	encoded, err := revision.EncodeSpec(revision.SpecOf(set))
	if err != nil {
		t.Fatal(err)
	}
	first := revision.Build(set, encoded, revision.Hash(encoded, nil), 1)

	// The next release changes the image and drops the overrides.
	set.Spec.Template.Spec.Containers[0].Image = "a:2"
	set.Spec.NodeOverrides = nil

	if alreadyAt(set, first) {
		t.Fatal("a set with another image and overrides counts as already at revision 1")
	}
	// Only the overrides differ: still not at revision 1 (undo must not
	// skip it as done).
	set.Spec.Template.Spec.Containers[0].Image = "a:1"
	if alreadyAt(set, first) {
		t.Fatal("a set without revision 1's overrides counts as already at revision 1")
	}

	spec, err := revision.DecodeSpec(first)
	if err != nil {
		t.Fatal(err)
	}
	restore(set, spec)
	now, err := revision.EncodeSpec(revision.SpecOf(set))
	if err != nil {
		t.Fatal(err)
	}
	if revision.FindEqual([]*appsv1.ControllerRevision{first}, now) == nil || !alreadyAt(set, first) {
		t.Errorf("after undo the set is not revision 1 again: overrides %+v, image %s",
			set.Spec.NodeOverrides, set.Spec.Template.Spec.Containers[0].Image)
	}
}
