package revision

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

func template(image string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "a", "tier": "node"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
	}
}

func TestHashIsStableAndSaltedByCollisions(t *testing.T) {
	a1, _ := Encode(template("v1"))
	a2, _ := Encode(template("v1"))
	b, _ := Encode(template("v2"))
	if Hash(a1, nil) != Hash(a2, nil) {
		t.Error("equal templates hash differently")
	}
	if Hash(a1, nil) == Hash(b, nil) {
		t.Error("different templates hash alike")
	}
	if Hash(a1, nil) == Hash(a1, ptr.To[int32](1)) {
		t.Error("the collision count does not change the hash")
	}
	cr := &appsv1.ControllerRevision{}
	cr.Data.Raw = a1.Canonical
	back, err := Decode(cr)
	if err != nil || back.Spec.Containers[0].Image != "v1" {
		t.Errorf("Decode = %v, %v", back, err)
	}
}

func TestFindEqualPrefersTheNewest(t *testing.T) {
	v1, _ := Encode(template("v1"))
	v2, _ := Encode(template("v2"))
	history := []*appsv1.ControllerRevision{rev("r1", v1.Canonical, 1), rev("r2", v2.Canonical, 2), rev("r3", v1.Canonical, 3)}
	if got := FindEqual(history, v1); got == nil || got.Name != "r3" {
		t.Errorf("FindEqual = %v, want r3", got)
	}
	v3, _ := Encode(template("v3"))
	if got := FindEqual(history, v3); got != nil {
		t.Errorf("FindEqual of a new template = %v, want nil", got.Name)
	}
}

func TestPrunableNeverTakesALiveRevision(t *testing.T) {
	var history []*appsv1.ControllerRevision
	for i := int64(1); i <= 6; i++ {
		history = append(history, rev("r"+string(rune('0'+i)), nil, i))
	}
	// r1 is used by a pod, r6 is the update revision; keep 2 more.
	got := Prunable(history, map[string]bool{"h-r1": true, "r6": true}, 2)
	var names []string
	for _, cr := range got {
		names = append(names, cr.Name)
	}
	if len(names) != 2 || names[0] != "r2" || names[1] != "r3" {
		t.Errorf("Prunable = %v, want [r2 r3]", names)
	}
}

func rev(name string, data []byte, n int64) *appsv1.ControllerRevision {
	cr := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"controller-revision-hash": "h-" + name}}, Revision: n}
	cr.Data.Raw = data
	return cr
}

func TestBuildRecordsTheChangeCause(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "ns",
		Annotations: map[string]string{ChangeCauseAnnotation: "image 1.1", "other": "x"}}}
	cr := Build(set, Encoded{Legacy: []byte("{}"), Canonical: []byte("{}")}, "h1", 3)
	if cr.Name != "agent-h1" || cr.Revision != 3 || cr.Annotations[ChangeCauseAnnotation] != "image 1.1" || len(cr.Annotations) != 1 {
		t.Errorf("revision = %+v", cr.ObjectMeta)
	}
}

func TestOwnedKeepsTheSetsRevisionsOldestFirst(t *testing.T) {
	mine := []metav1.OwnerReference{{UID: "set", Controller: ptr.To(true)}}
	other := []metav1.OwnerReference{{UID: "other", Controller: ptr.To(true)}}
	items := []appsv1.ControllerRevision{
		{ObjectMeta: metav1.ObjectMeta{Name: "r3", OwnerReferences: mine}, Revision: 3},
		{ObjectMeta: metav1.ObjectMeta{Name: "x", OwnerReferences: other}, Revision: 1},
		{ObjectMeta: metav1.ObjectMeta{Name: "r1", OwnerReferences: mine}, Revision: 1},
		{ObjectMeta: metav1.ObjectMeta{Name: "orphan"}, Revision: 2},
	}
	var names []string
	for _, cr := range Owned(items, "set") {
		names = append(names, cr.Name)
	}
	if len(names) != 2 || names[0] != "r1" || names[1] != "r3" {
		t.Errorf("Owned = %v, want [r1 r3]", names)
	}
}
