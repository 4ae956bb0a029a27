package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/revision"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// TestOrphanCascadeThenRecreation: `kubectl delete nas --cascade=orphan`
// finishes (the real garbage collector orphans the pods and the
// revisions), the agents keep running, and the set re-created under the
// same name adopts them and re-uses its revision: no pod deleted, created
// or restarted.
func TestOrphanCascadeThenRecreation(t *testing.T) {
	e := deployConverged(t, "orphan", "agent", 4)
	ch := watchPods(t, e.c.Client, e.set, e.nodes)
	e.orphanThenRecreate(t)
	ch.mu.Lock()
	seen := slices.Collect(maps.Keys(ch.pods))
	ch.mu.Unlock()
	for _, uid := range seen {
		if ch.wasDeleted(uid) || !slices.Contains(slices.Collect(maps.Values(e.before)), uid) {
			t.Errorf("pod %s was created or deleted while orphaned and adopted", uid)
		}
	}
	for _, p := range mustPods(t, e.k, e.set) {
		for _, s := range p.Status.ContainerStatuses {
			if s.RestartCount != 0 {
				t.Errorf("pod %s container %s restarted %d times", p.Name, s.Name, s.RestartCount)
			}
		}
	}
}

// orphanEnv is a cluster running the manager and one converged set.
type orphanEnv struct {
	c     *cluster.Cluster
	k     client.Client
	nodes []string
	// set is the spec to re-create; old the set as first created.
	set, old *nasv1alpha1.NodeAgentSet
	// before is the agents' pod UIDs by node.
	before map[string]types.UID
}

// deployConverged starts a cluster of n nodes (the default controllers
// include the garbage collector) and the manager, and deploys a set.
func deployConverged(t *testing.T, ns, name string, n int) *orphanEnv {
	t.Helper()
	ctx := t.Context()
	e := &orphanEnv{set: agentSet(ns, name)}
	e.c, e.nodes = chaosCluster(t, n, cluster.Options{})
	e.k = startManager(t, e.c)
	if err := e.k.Create(ctx, namespace(ns)); err != nil {
		t.Fatal(err)
	}
	if err := e.k.Create(ctx, e.set.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	eligible := map[string]bool{}
	for _, n := range e.nodes {
		eligible[n] = true
	}
	if err := waitConverged(ctx, e.k, e.set, eligible); err != nil {
		t.Fatal(err)
	}
	e.snapshot(t)
	return e
}

// snapshot records the converged set and its agents.
func (e *orphanEnv) snapshot(t *testing.T) {
	t.Helper()
	e.old = &nasv1alpha1.NodeAgentSet{}
	if err := e.k.Get(t.Context(), client.ObjectKeyFromObject(e.set), e.old); err != nil {
		t.Fatal(err)
	}
	e.before = agentUIDs(t, e.k, e.set)
}

// orphanThenRecreate deletes the set with propagationPolicy Orphan, waits
// for the deletion to finish with every agent kept and released, then
// re-creates the set (see recreateAndCheckAdoption).
func (e *orphanEnv) orphanThenRecreate(t *testing.T) {
	t.Helper()
	if err := e.k.Delete(t.Context(), e.old, client.PropagationPolicy(metav1.DeletePropagationOrphan)); err != nil {
		t.Fatal(err)
	}
	waitGone(t, e.k, e.set)
	for _, p := range mustPods(t, e.k, e.set) {
		if len(p.OwnerReferences) != 0 {
			t.Errorf("pod %s still has owners %v after the orphaning deletion", p.Name, p.OwnerReferences)
		}
	}
	e.recreateAndCheckAdoption(t)
}

// recreateAndCheckAdoption re-creates the deleted set and checks that it
// adopts the same agents and re-uses its revision.
func (e *orphanEnv) recreateAndCheckAdoption(t *testing.T) {
	t.Helper()
	if err := e.k.Create(t.Context(), e.set.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	again := waitAdopted(t, e.k, e.set, len(e.nodes))
	if again.Status.UpdateRevision != e.old.Status.UpdateRevision {
		t.Errorf("update revision %s, want the orphaned %s re-used", again.Status.UpdateRevision, e.old.Status.UpdateRevision)
	}
	assertRevisionsAdopted(t, e.k, again)
	if after := agentUIDs(t, e.k, e.set); !maps.Equal(after, e.before) {
		t.Errorf("agents replaced: before %v, after %v", e.before, after)
	}
}

func mustPods(t *testing.T, k client.Client, set *nasv1alpha1.NodeAgentSet) []corev1.Pod {
	t.Helper()
	pods, err := setPods(t.Context(), k, set)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

// agentUIDs is the set's pods by node.
func agentUIDs(t *testing.T, k client.Client, set *nasv1alpha1.NodeAgentSet) map[string]types.UID {
	t.Helper()
	out := map[string]types.UID{}
	for _, p := range mustPods(t, k, set) {
		out[p.Spec.NodeName] = p.UID
	}
	return out
}

// waitGone waits for the orphaning deletion to finish: the garbage
// collector must first patch every dependent. Before revisions were stored
// canonically it never did, and the set stayed with its orphan finalizer.
func waitGone(t *testing.T, k client.Client, set *nasv1alpha1.NodeAgentSet) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &nasv1alpha1.NodeAgentSet{}
		err := k.Get(ctx, client.ObjectKeyFromObject(set), got)
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err == nil {
			last = fmt.Sprintf("finalizers %v; revisions: %s", got.Finalizers, describeRevisions(ctx, k, set))
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the set deleted with propagationPolicy Orphan is still there: %v; last seen: %s", err, last)
	}
}

func describeRevisions(ctx context.Context, k client.Client, set *nasv1alpha1.NodeAgentSet) string {
	var list appsv1.ControllerRevisionList
	if err := k.List(ctx, &list, client.InNamespace(set.Namespace), client.MatchingLabels{nasv1alpha1.LabelSetName: set.Name}); err != nil {
		return err.Error()
	}
	var out []string
	for _, cr := range list.Items {
		out = append(out, fmt.Sprintf("%s (#%d, %d owners)", cr.Name, cr.Revision, len(cr.OwnerReferences)))
	}
	return fmt.Sprint(out)
}

// waitAdopted waits until the re-created set controls n pods and reports
// them all available for its template.
func waitAdopted(t *testing.T, k client.Client, set *nasv1alpha1.NodeAgentSet, n int) *nasv1alpha1.NodeAgentSet {
	t.Helper()
	var got *nasv1alpha1.NodeAgentSet
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		got = &nasv1alpha1.NodeAgentSet{}
		if err := k.Get(ctx, client.ObjectKeyFromObject(set), got); err != nil {
			return false, nil
		}
		owned := 0
		pods, _ := setPods(ctx, k, set)
		for _, p := range pods {
			if metav1.IsControlledBy(&p, got) {
				owned++
			}
		}
		st := got.Status
		last = fmt.Sprintf("%d of %d pods adopted; status updated %d available %d, observed generation %d",
			owned, len(pods), st.UpdatedNumberScheduled, st.NumberAvailable, st.ObservedGeneration)
		return owned == n && len(pods) == n && st.ObservedGeneration == got.Generation &&
			st.UpdatedNumberScheduled == int32(n) && st.NumberAvailable == int32(n), nil
	})
	if err != nil {
		t.Fatalf("the re-created set did not adopt its agents: %v; last seen: %s", err, last)
	}
	return got
}

func assertRevisionsAdopted(t *testing.T, k client.Client, set *nasv1alpha1.NodeAgentSet) {
	t.Helper()
	var list appsv1.ControllerRevisionList
	if err := k.List(t.Context(), &list, client.InNamespace(set.Namespace), client.MatchingLabels{nasv1alpha1.LabelSetName: set.Name}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != set.Status.UpdateRevision || !metav1.IsControlledBy(&list.Items[0], set) {
		t.Errorf("revisions %s, want only %s, controlled by the re-created set", describeRevisions(t.Context(), k, set), set.Status.UpdateRevision)
	}
}

// TestOrphanDeletionLeftStuckFinishesAfterUpgrade: a set deleted with
// --cascade=orphan while its revision was stored the way older controllers
// stored it hangs (the garbage collector orphans the pods, not the
// revision); once this controller runs, it replaces the revision, the
// deletion finishes, and the re-created set adopts everything.
func TestOrphanDeletionLeftStuckFinishesAfterUpgrade(t *testing.T) {
	e := deployConverged(t, "stuck", "exporter", 3)
	// The older controller: stopped, its revision in the legacy form.
	if err := e.c.KillProcess("manager"); err != nil {
		t.Fatal(err)
	}
	makeLegacy(t, e.k, e.set.Namespace, e.old.Status.UpdateRevision)
	if err := e.k.Delete(t.Context(), e.old, client.PropagationPolicy(metav1.DeletePropagationOrphan)); err != nil {
		t.Fatal(err)
	}
	waitStuck(t, e.k, e.set)

	if err := e.c.StartProcess("manager", managerBinary, managerArgs(t, e.c, "nodeagentset:manager")...); err != nil {
		t.Fatal(err)
	}
	waitGone(t, e.k, e.set)
	e.recreateAndCheckAdoption(t)
}

// makeLegacy swaps a revision for a copy whose data is in the legacy form,
// as controllers before the canonical form wrote it.
func makeLegacy(t *testing.T, k client.Client, ns, name string) {
	t.Helper()
	cr := &appsv1.ControllerRevision{}
	if err := k.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, cr); err != nil {
		t.Fatal(err)
	}
	tmpl, err := revision.Decode(cr)
	if err != nil {
		t.Fatal(err)
	}
	encoded, err := revision.Encode(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Delete(t.Context(), cr); err != nil {
		t.Fatal(err)
	}
	if err := k.Create(t.Context(), revision.Replacement(cr, encoded.Legacy, cr.OwnerReferences)); err != nil {
		t.Fatal(err)
	}
}

// waitStuck waits until the garbage collector has orphaned every pod of
// the deleted set, while the set stays, held by its orphan finalizer, and
// its revision keeps its owner: the hang of issue 13.
func waitStuck(t *testing.T, k client.Client, set *nasv1alpha1.NodeAgentSet) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &nasv1alpha1.NodeAgentSet{}
		if err := k.Get(ctx, client.ObjectKeyFromObject(set), got); err != nil {
			return false, err
		}
		owned := 0
		pods, _ := setPods(ctx, k, set)
		for _, p := range pods {
			owned += len(p.OwnerReferences)
		}
		revs := describeRevisions(ctx, k, set)
		last = fmt.Sprintf("finalizers %v, %d pod owner references; revisions %s", got.Finalizers, owned, revs)
		return owned == 0 && len(pods) > 0 && slices.Contains(got.Finalizers, metav1.FinalizerOrphanDependents) &&
			strings.Contains(revs, "1 owners"), nil
	})
	if err != nil {
		t.Fatalf("the orphaning deletion did not reach the known hang: %v; last seen: %s", err, last)
	}
}
