package revision

import (
	"bytes"
	"encoding/json"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// goldenLegacy is goldenTemplate as the controller encoded every revision
// before Canonical (encoding/json of the data struct: fields in declaration
// order), and goldenHash its hash, as computed by that controller (commit
// cb18449). Pods running today carry that hash: it must never change.
const (
	goldenLegacy = `{"spec":{"template":{"metadata":{"labels":{"app":"agent","tier":"node"},"annotations":{"note":"a \u003c b \u0026\u0026 c \u003e d"}},"spec":{"containers":[{"name":"agent","image":"registry.example/agent:1.2.3","command":["sh","-c","exec agent --port=9100 \u0026\u0026 true"],"ports":[{"name":"metrics","hostPort":9100,"containerPort":9100,"protocol":"TCP"}],"resources":{"requests":{"cpu":"100m","memory":"64Mi"}}}],"terminationGracePeriodSeconds":30,"hostNetwork":true,"tolerations":[{"operator":"Exists"}]}}}}`
	goldenHash   = "69f49d68c4"
	// goldenHash1 is its hash after one collision.
	goldenHash1 = "866774bd4c"
)

// goldenTemplate exercises what makes the two encodings differ: struct
// fields out of alphabetical order at every level, maps, numbers, and
// characters encoding/json escapes.
func goldenTemplate() *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      map[string]string{"app": "agent", "tier": "node"},
			Annotations: map[string]string{"note": "a < b && c > d"},
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:    "agent",
				Image:   "registry.example/agent:1.2.3",
				Command: []string{"sh", "-c", "exec agent --port=9100 && true"},
				Ports:   []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9100, HostPort: 9100, Protocol: corev1.ProtocolTCP}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				},
			}},
			HostNetwork:                   true,
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}
}

func TestHashOfAnUnchangedTemplateIsUnchanged(t *testing.T) {
	e, err := Encode(goldenTemplate())
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Legacy) != goldenLegacy {
		t.Errorf("legacy encoding changed:\n got %s\nwant %s", e.Legacy, goldenLegacy)
	}
	if got := Hash(e, nil); got != goldenHash {
		t.Errorf("Hash = %s, want %s (the hash every running agent carries)", got, goldenHash)
	}
	if got := Hash(e, ptr.To[int32](1)); got != goldenHash1 {
		t.Errorf("Hash after a collision = %s, want %s", got, goldenHash1)
	}
}

// The stored form is what the API server's patch round trip produces:
// keys sorted at every level, compact, the same values.
func TestStoredDataIsCanonical(t *testing.T) {
	e, err := Encode(goldenTemplate())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(e.Canonical, e.Legacy) {
		t.Fatal("the golden template's two forms are equal: it proves nothing")
	}
	var v any
	if err := json.Unmarshal(e.Legacy, &v); err != nil {
		t.Fatal(err)
	}
	// json.Marshal of a map sorts its keys: the upstream DaemonSet's form.
	want, _ := json.Marshal(v)
	if !bytes.Equal(e.Canonical, want) {
		t.Errorf("canonical form:\n got %s\nwant %s", e.Canonical, want)
	}
	cr := Build(&nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Name: "agent"}}, e, Hash(e, nil), 1)
	if ok, err := IsCanonical(cr); !ok || err != nil {
		t.Errorf("a built revision is not canonical: %v", err)
	}
	if ok, _ := IsCanonical(&appsv1.ControllerRevision{Data: cr.Data}); !ok {
		t.Error("IsCanonical refuses canonical data")
	}
	legacy := cr.DeepCopy()
	legacy.Data.Raw = e.Legacy
	if ok, _ := IsCanonical(legacy); ok {
		t.Error("IsCanonical accepts the legacy form")
	}
}

func TestCanonicalKeepsNumbersExact(t *testing.T) {
	got, err := Canonical([]byte(`{"b": 9007199254740993, "a": [1.50, -0, 1e3]}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":[1.50,-0,1e3],"b":9007199254740993}`; string(got) != want {
		t.Errorf("Canonical = %s, want %s", got, want)
	}
	if _, err := Canonical([]byte(`{} {}`)); err == nil {
		t.Error("Canonical accepted two documents")
	}
}

// A rollback must find its old revision whether an older controller stored
// it (legacy form) or this one did (canonical form).
func TestFindEqualFindsBothForms(t *testing.T) {
	v1, _ := Encode(template("v1"))
	v2, _ := Encode(template("v2"))
	old := []*appsv1.ControllerRevision{rev("r1", v1.Legacy, 1), rev("r2", v2.Canonical, 2)}
	if got := FindEqual(old, v1); got == nil || got.Name != "r1" {
		t.Errorf("FindEqual of a legacy revision = %v, want r1", got)
	}
	if got := FindEqual(old, v2); got == nil || got.Name != "r2" {
		t.Errorf("FindEqual of a canonical revision = %v, want r2", got)
	}
	back, err := Decode(old[0])
	if err != nil || back.Spec.Containers[0].Image != "v1" {
		t.Errorf("Decode of the legacy form = %v, %v", back, err)
	}
}

func TestOrphansAreTheSetsUnownedMatchingRevisions(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", UID: "new"}}
	sel := labels.SelectorFromSet(labels.Set{"app": "agent"})
	lbl := func(app, setName string) map[string]string {
		return map[string]string{"app": app, nasv1alpha1.LabelSetName: setName}
	}
	now := metav1.Now()
	items := []appsv1.ControllerRevision{
		{ObjectMeta: metav1.ObjectMeta{Name: "orphan", Labels: lbl("agent", "agent")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "owned", Labels: lbl("agent", "agent"),
			OwnerReferences: []metav1.OwnerReference{{UID: "other", Controller: ptr.To(true)}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "unmatched", Labels: lbl("other", "agent")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other-set", Labels: lbl("agent", "else")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "deleting", Labels: lbl("agent", "agent"), DeletionTimestamp: &now}},
	}
	got := Orphans(items, set, sel)
	if len(got) != 1 || got[0].Name != "orphan" {
		t.Errorf("Orphans = %v, want [orphan]", got)
	}
	refs := WithController([]metav1.OwnerReference{{UID: "keep"}, {UID: "new"}}, set)
	if len(refs) != 2 || refs[0].UID != "keep" || refs[1].UID != "new" || !ptr.Deref(refs[1].Controller, false) {
		t.Errorf("WithController = %+v", refs)
	}
}

func TestReplacementKeepsEverythingButTheDataForm(t *testing.T) {
	e, _ := Encode(goldenTemplate())
	cr := rev("agent-h", e.Legacy, 4)
	cr.Namespace, cr.UID, cr.ResourceVersion = "ns", "u1", "7"
	cr.Annotations = map[string]string{ChangeCauseAnnotation: "why"}
	owners := []metav1.OwnerReference{{UID: "set", Controller: ptr.To(true)}}
	got := Replacement(cr, e.Canonical, owners)
	if got.Name != cr.Name || got.Namespace != "ns" || got.Revision != 4 || got.UID != "" || got.ResourceVersion != "" ||
		got.Labels["controller-revision-hash"] != "h-agent-h" || got.Annotations[ChangeCauseAnnotation] != "why" ||
		got.OwnerReferences[0].UID != "set" || !bytes.Equal(got.Data.Raw, e.Canonical) {
		t.Errorf("Replacement = %+v", got)
	}
}

// Checking every revision's form every pass must stay cheap next to a
// pass (3.5–6.7 ms for 1000 nodes).
func BenchmarkIsCanonical(b *testing.B) {
	e, _ := Encode(goldenTemplate())
	cr := &appsv1.ControllerRevision{}
	cr.Data.Raw = e.Canonical
	for b.Loop() {
		_, _ = IsCanonical(cr)
	}
}

// Canonical is a fixed point, and keeps every value: what it returns is
// canonical itself and decodes to what its input decodes to.
func FuzzCanonical(f *testing.F) {
	f.Add([]byte(goldenLegacy))
	f.Add([]byte(`{"b":{"d":1,"c":[{"z":true,"y":null}]},"a":"\u003c\u2028"}`))
	f.Add([]byte(`[1e400, 0.1, -0, "x"]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		once, err := Canonical(raw)
		if err != nil {
			return
		}
		twice, err := Canonical(once)
		if err != nil || !bytes.Equal(once, twice) {
			t.Fatalf("Canonical(%s) = %s, then %s, %v", raw, once, twice, err)
		}
		var in, out any
		if json.Unmarshal(raw, &in) == nil && json.Unmarshal(once, &out) == nil && !equalJSON(in, out) {
			t.Fatalf("Canonical(%s) = %s changed a value", raw, once)
		}
	})
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
