package controller_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

// labelPatch adds a label to a revision with a strategic merge patch, the
// kind the garbage collector sends to orphan a built-in object. (The API
// server re-encodes the whole object for it, keys sorted; JSON merge and
// JSON patches leave untouched fields as they were, and pass.)
func labelPatch(cr *appsv1.ControllerRevision) error {
	patch := client.RawPatch(types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"patched":"yes"}}}`))
	return k8s.Patch(context.Background(), cr.DeepCopy(), patch)
}

// The fact the fix rests on: the API server refuses any metadata patch of
// a revision whose data is not stored in the form its own re-encoding
// produces, and accepts it for the canonical form.
func TestAPIServerPatchesOnlyCanonicalRevisionData(t *testing.T) {
	f := newFixture(t, "revpatch")
	// What a re-encoding could change: characters encoding/json escapes,
	// non-ASCII text, an integer float64 would round.
	tmpl := f.newSet().Spec.Template
	tmpl.Annotations = map[string]string{"note": "a < b && c > d, déjà vu \u2028 \"quoted\""}
	tmpl.Spec.Containers[0].Command = []string{"sh", "-c", "exec agent 2>&1 | tee /log"}
	tmpl.Spec.TerminationGracePeriodSeconds = ptr.To[int64](9007199254740993)
	encoded, err := revision.Encode(&tmpl)
	if err != nil {
		t.Fatal(err)
	}
	for _, form := range []struct {
		name string
		data []byte
	}{{"legacy", encoded.Legacy}, {"canonical", encoded.Canonical}} {
		cr := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: form.name, Namespace: f.ns}, Revision: 1}
		cr.Data.Raw = form.data
		f.create(cr)
		err := labelPatch(cr)
		switch {
		case form.name == "legacy" && (!apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "immutable")):
			t.Errorf("patching a legacy revision: %v; want the API server's data: field is immutable", err)
		case form.name == "canonical" && err != nil:
			t.Errorf("patching a canonical revision: %v", err)
		}
	}
}

// revision reads one of the set's revisions by name.
func (f *fixture) revision(name string) *appsv1.ControllerRevision {
	f.t.Helper()
	cr := &appsv1.ControllerRevision{}
	if err := k8s.Get(f.ctx, client.ObjectKey{Namespace: f.ns, Name: name}, cr); err != nil {
		f.t.Fatal(err)
	}
	return cr
}

// makeLegacy swaps a revision for a copy whose data is in the legacy form:
// the revision an older controller would have written.
func (f *fixture) makeLegacy(name string) *appsv1.ControllerRevision {
	f.t.Helper()
	cr := f.revision(name)
	tmpl, err := revision.Decode(cr)
	if err != nil {
		f.t.Fatal(err)
	}
	encoded, err := revision.Encode(tmpl)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := k8s.Delete(f.ctx, cr); err != nil {
		f.t.Fatal(err)
	}
	legacy := revision.Replacement(cr, encoded.Legacy, cr.OwnerReferences)
	f.create(legacy)
	return legacy
}

// canonical waits until the named revision is stored canonically by a new
// object, then returns it.
func (f *fixture) canonical(name string, old types.UID) *appsv1.ControllerRevision {
	f.t.Helper()
	var cr *appsv1.ControllerRevision
	eventually(f.t, "revision "+name+" stored canonically", func() (bool, string) {
		got := &appsv1.ControllerRevision{}
		if err := k8s.Get(f.ctx, client.ObjectKey{Namespace: f.ns, Name: name}, got); err != nil {
			return false, err.Error()
		}
		ok, err := revision.IsCanonical(got)
		cr = got
		return ok && err == nil && got.UID != old, fmt.Sprintf("uid %s, data %s", got.UID, got.Data.Raw)
	})
	return cr
}

func podUIDs(pods []corev1.Pod) map[string]types.UID {
	out := map[string]types.UID{}
	for _, p := range pods {
		out[p.Name] = p.UID
	}
	return out
}

// A revision an older controller stored in the legacy form is replaced by
// a canonical one: same name, number, labels and owner, so history and
// hashes are kept, no agent restarts, and its metadata can be patched
// again (so the garbage collector can orphan it).
func TestLegacyRevisionIsReplacedCanonically(t *testing.T) {
	f := newFixture(t, "legacyrev")
	nodes := f.nodes(2)
	set := f.newSet()
	// OnDelete keeps the pods on the first revision, which becomes old.
	set.Spec.UpdateStrategy.Type = nasv1alpha1.OnDeleteStrategy
	f.create(set)
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	first := f.get(set).Status.UpdateRevision
	before := podUIDs(f.pods(set))
	f.update(set, image("registry.example/agent:2"))
	eventually(t, "the second revision", func() (bool, string) {
		got := f.get(set)
		return got.Status.UpdateRevision != first && got.Status.ObservedGeneration == got.Generation, got.Status.UpdateRevision
	})

	legacy := f.makeLegacy(first)
	got := f.canonical(first, legacy.UID)
	if got.Revision != legacy.Revision || revision.HashOf(got) != revision.HashOf(legacy) ||
		!metav1.IsControlledBy(got, f.get(set)) || len(got.Labels) != len(legacy.Labels) {
		t.Errorf("replacement %+v differs from %+v", got.ObjectMeta, legacy.ObjectMeta)
	}
	if err := labelPatch(got); err != nil {
		t.Errorf("patching the replaced revision: %v", err)
	}
	// Rolling back to the first template re-uses the replaced revision.
	f.update(set, image("registry.example/agent:1"))
	eventually(t, "the first revision re-used", func() (bool, string) {
		got := f.get(set)
		return got.Status.UpdateRevision == first && got.Status.ObservedGeneration == got.Generation, got.Status.UpdateRevision
	})
	if after := podUIDs(f.pods(set)); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("pods replaced: before %v, after %v", before, after)
	}
}

// A set being deleted with --cascade=orphan waits for the garbage collector
// to orphan its revisions, which it cannot do to a legacy one: the
// controller replaces it then too, so a deletion an older controller left
// stuck finishes. (envtest runs no garbage collector; test/e2e does.)
func TestOrphaningSetGetsCanonicalRevisions(t *testing.T) {
	f := newFixture(t, "orphaning")
	nodes := f.nodes(1)
	set := f.set()
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	name := f.get(set).Status.UpdateRevision
	if err := k8s.Delete(f.ctx, set, client.PropagationPolicy(metav1.DeletePropagationOrphan)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		got := &nasv1alpha1.NodeAgentSet{}
		if k8s.Get(context.Background(), client.ObjectKeyFromObject(set), got) == nil {
			got.Finalizers = nil
			_ = k8s.Update(context.Background(), got)
		}
	})
	if f.get(set).DeletionTimestamp == nil {
		t.Fatal("the set is not being deleted")
	}
	legacy := f.makeLegacy(name)
	got := f.canonical(name, legacy.UID)
	if err := labelPatch(got); err != nil {
		t.Errorf("patching the replaced revision: %v", err)
	}
}

// A set deleted with --cascade=orphan leaves its revisions and pods
// without a controller; re-created under the same name, the set adopts
// both: the same revision (same hash), every pod kept.
func TestRecreatedSetAdoptsOrphanedRevisions(t *testing.T) {
	f := newFixture(t, "adoptrev")
	nodes := f.nodes(2)
	set := f.set()
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	old := f.get(set)
	name := old.Status.UpdateRevision
	before := podUIDs(f.pods(set))
	// What the garbage collector does for --cascade=orphan: the set waits,
	// deleted, behind the orphan finalizer while its dependents lose their
	// owner reference, then the finalizer goes.
	if err := k8s.Delete(f.ctx, old, client.PropagationPolicy(metav1.DeletePropagationOrphan)); err != nil {
		t.Fatal(err)
	}
	orphan := []byte(`{"metadata":{"ownerReferences":null}}`)
	for _, obj := range []client.Object{f.revision(name), podPtr(f.pods(set)[0]), podPtr(f.pods(set)[1])} {
		if err := k8s.Patch(f.ctx, obj, client.RawPatch(types.StrategicMergePatchType, orphan)); err != nil {
			t.Fatal(err)
		}
	}
	deleting := f.get(set)
	deleting.Finalizers = nil
	if err := k8s.Update(f.ctx, deleting); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the set gone", func() (bool, string) {
		err := k8s.Get(f.ctx, client.ObjectKeyFromObject(set), &nasv1alpha1.NodeAgentSet{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})

	again := f.set()
	eventually(t, "the old revision adopted and re-used", func() (bool, string) {
		got := f.get(again)
		cr := f.revision(name)
		return got.Status.UpdateRevision == name && metav1.IsControlledBy(cr, got),
			fmt.Sprintf("set %s, update revision %s (want %s), owners %v", got.UID, got.Status.UpdateRevision, name, cr.OwnerReferences)
	})
	eventually(t, "the pods adopted", func() (bool, string) {
		got := f.get(again)
		pods := f.pods(again)
		for _, p := range pods {
			if !metav1.IsControlledBy(&p, got) {
				return false, p.Name + " not adopted"
			}
		}
		return len(pods) == 2, fmt.Sprint(len(pods), " pods")
	})
	if after := podUIDs(f.pods(again)); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("pods replaced: before %v, after %v", before, after)
	}
	if revs := f.revisions(again); len(revs) != 1 {
		t.Errorf("revisions %v, want only %s", revs, name)
	}
}

func podPtr(p corev1.Pod) *corev1.Pod { return &p }
