package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// migrateNodes is the size of the migration test (NAS_MIGRATE_NODES).
var migrateNodes = envInt("NAS_MIGRATE_NODES", 100)

// TestMigrateDaemonSet runs the upstream DaemonSet controller and the
// manager on one cluster and migrates two running DaemonSets (agents on a
// host port) with `kubectl nodeagentset migrate`, while a checker watches
// every event of their pods: the first to its equivalent NodeAgentSet
// (no agent replaced, no node ever without a Ready agent or with two), the
// second to a set of another image (taken over likewise, then rolled
// within maxUnavailable). A third, migrated the old way, is the control.
func TestMigrateDaemonSet(t *testing.T) {
	opts := cluster.Options{Controllers: append(slices.Clone(cluster.DefaultControllers), "daemonset-controller")}
	c, nodes := chaosCluster(t, migrateNodes, opts)
	k := startManager(t, c)
	t.Run("equivalent", func(t *testing.T) { migrateEquivalent(t, c, k, nodes) })
	t.Run("template differs", func(t *testing.T) { migrateAndRoll(t, c, k, nodes) })
	t.Run("control: convert, apply, then delete", func(t *testing.T) { naiveMigration(t, c, k, nodes) })
}

// naiveMigration is the control: what convert's help said before migrate
// (apply the converted set, then delete the DaemonSet) puts a second agent
// on a node, left Pending on the host port, and the checker sees it.
func naiveMigration(t *testing.T, c *cluster.Cluster, k client.Client, nodes []string) {
	ds := runDaemonSet(t, k, "naive", 9300, nodes)
	ch := watchSelected(t, c.Client, ds.Namespace, "app=agent", nodes)
	set := agentSet(ds.Namespace, ds.Name)
	set.Spec.Template = *ds.Spec.Template.DeepCopy()
	if err := k.Create(t.Context(), set); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		_, two, _ := ch.worst()
		return two > 0, nil
	})
	if err != nil {
		t.Fatal("the checker never saw a node with two agents after the naive migration: it would not catch one")
	}
}

func migrateEquivalent(t *testing.T, c *cluster.Cluster, k client.Client, nodes []string) {
	ds := runDaemonSet(t, k, "plugin", 9100, nodes)
	dir := t.TempDir()
	out := mustPlugin(t, c, "Dry run: nothing was changed", "migrate", "daemonset/agent", "--dry-run", "--backup-dir", dir)
	if got := &(appsv1.DaemonSet{}); k.Get(t.Context(), client.ObjectKeyFromObject(ds), got) != nil || got.UID != ds.UID {
		t.Fatalf("the DaemonSet did not survive --dry-run:\n%s", out)
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Errorf("--dry-run wrote %d files", len(files))
	}
	before := daemonPods(t, k, ds)
	ch := watchSelected(t, c.Client, ds.Namespace, "app=agent", nodes)
	start := time.Now()
	out = mustPlugin(t, c, "migrated to nodeagentset/agent", "migrate", "daemonset/agent", "--backup-dir", dir)
	took := time.Since(start)
	set := waitAdopted(t, k, &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Namespace: ds.Namespace, Name: ds.Name}}, len(nodes))
	t.Logf("%d nodes: migrate took %s\n%s", len(nodes), took.Round(time.Millisecond), out)

	unav, two, most := ch.worst()
	if unav != 0 || two != 0 || most != 1 {
		t.Errorf("worst seen: %d nodes without a Ready agent, %d with two live agents, %d pods on a node; want 0, 0, 1", unav, two, most)
	}
	after := agentUIDs(t, k, set)
	if !maps.Equal(after, before) {
		t.Errorf("agents replaced: %d before, %d after, equal: %v", len(before), len(after), maps.Equal(after, before))
	}
	if n := ch.deletions(); n != 0 {
		t.Errorf("%d pods were deleted during the migration", n)
	}
	assertRevisionsAdopted(t, k, set)
	assertDaemonSetGone(t, k, ds)
	if set.Spec.UpdateStrategy.RollingUpdate != nil && set.Spec.UpdateStrategy.RollingUpdate.Paused {
		t.Error("the set was left paused")
	}
	for _, name := range []string{"daemonset-plugin-agent.yaml", "nodeagentset-plugin-agent.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
}

func migrateAndRoll(t *testing.T, c *cluster.Cluster, k client.Client, nodes []string) {
	ds := runDaemonSet(t, k, "other", 9200, nodes)
	target := agentSet("other", "agent")
	target.Spec.Template = *ds.Spec.Template.DeepCopy()
	target.Spec.Template.Spec.Containers[0].Image = "registry.example/agent:2"
	target.Spec.UpdateStrategy = nasv1alpha1.UpdateStrategy{Type: nasv1alpha1.RollingUpdateStrategy,
		RollingUpdate: &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromString("10%"))}}
	target.TypeMeta = metav1.TypeMeta{APIVersion: nasv1alpha1.GroupVersion.String(), Kind: "NodeAgentSet"}
	file := filepath.Join(t.TempDir(), "agent.yaml")
	b, err := yaml.Marshal(target)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	before := daemonPods(t, k, ds)
	ch := watchSelected(t, c.Client, ds.Namespace, "app=agent", nodes)
	start := time.Now()
	out := mustPlugin(t, c, "rolling update", "migrate", "daemonset/agent", "-n", "other", "-f", file, "--backup-dir", t.TempDir())
	took := time.Since(start)
	set := waitRolledOut(t, k, keyOf("other", "agent"), len(nodes))
	t.Logf("%d nodes: migrate took %s, then the rolling update %s\n%s", len(nodes), took.Round(time.Millisecond),
		time.Since(start.Add(took)).Round(time.Millisecond), out)

	budget := (len(nodes) + 9) / 10
	assertInvariants(t, ch, budget)
	if _, two, _ := ch.worst(); two != 0 {
		t.Errorf("%d nodes ran two live agents (maxSurge 0)", two)
	}
	for node, uid := range before {
		if !ch.wasDeleted(uid) {
			t.Errorf("the agent on %s was not replaced", node)
		}
	}
	if got := ch.deletions(); got != len(before) {
		t.Errorf("%d pods deleted, want each of the %d old agents once", got, len(before))
	}
	var revs appsv1.ControllerRevisionList
	if err := k.List(t.Context(), &revs, client.InNamespace("other"), client.MatchingLabels{nasv1alpha1.LabelSetName: "agent"}); err != nil {
		t.Fatal(err)
	}
	if len(revs.Items) != 2 {
		t.Errorf("%d revisions, want 2: the DaemonSet's template, then the new one", len(revs.Items))
	}
	if set.Status.UpdateRevision == set.Status.CurrentRevision && len(revs.Items) < 2 {
		t.Errorf("no new revision: %s", set.Status.UpdateRevision)
	}
	assertDaemonSetGone(t, k, ds)
}

// runDaemonSet creates the DaemonSet "agent" in ns (its agents on a host
// port) and waits until every node runs a Ready agent of it.
func runDaemonSet(t *testing.T, k client.Client, ns string, port int32, nodes []string) *appsv1.DaemonSet {
	t.Helper()
	if err := k.Create(t.Context(), namespace(ns)); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "agent"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromString("10%"))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"agent": "yes"},
					Containers: []corev1.Container{{Name: "agent", Image: "registry.example/agent:1",
						Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: port, HostPort: port}}}},
				},
			},
		},
	}
	start := time.Now()
	if err := k.Create(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &appsv1.DaemonSet{}
		if err := k.Get(ctx, client.ObjectKeyFromObject(ds), got); err != nil {
			return false, nil
		}
		st := got.Status
		last = fmt.Sprintf("desired %d ready %d updated %d", st.DesiredNumberScheduled, st.NumberReady, st.UpdatedNumberScheduled)
		ds = got
		return st.ObservedGeneration == got.Generation && st.DesiredNumberScheduled == int32(len(nodes)) &&
			st.NumberReady == int32(len(nodes)) && st.UpdatedNumberScheduled == int32(len(nodes)), nil
	})
	if err != nil {
		t.Fatalf("the DaemonSet did not converge: %v; last seen: %s", err, last)
	}
	t.Logf("the DaemonSet's %d agents were Ready after %s", len(nodes), time.Since(start).Round(time.Millisecond))
	return ds
}

// daemonPods is the DaemonSet's pods by node, checked to be one per node.
func daemonPods(t *testing.T, k client.Client, ds *appsv1.DaemonSet) map[string]types.UID {
	t.Helper()
	var pods corev1.PodList
	if err := k.List(t.Context(), &pods, client.InNamespace(ds.Namespace), client.MatchingLabels(ds.Spec.Selector.MatchLabels)); err != nil {
		t.Fatal(err)
	}
	out := map[string]types.UID{}
	for _, p := range pods.Items {
		if _, dup := out[p.Spec.NodeName]; dup || !metav1.IsControlledBy(&p, ds) {
			t.Fatalf("pod %s: a second pod on its node, or not the DaemonSet's", p.Name)
		}
		out[p.Spec.NodeName] = p.UID
	}
	return out
}

func assertDaemonSetGone(t *testing.T, k client.Client, ds *appsv1.DaemonSet) {
	t.Helper()
	if err := k.Get(t.Context(), client.ObjectKeyFromObject(ds), &appsv1.DaemonSet{}); !apierrors.IsNotFound(err) {
		t.Errorf("the DaemonSet is still there (%v)", err)
	}
	var revs appsv1.ControllerRevisionList
	if err := k.List(t.Context(), &revs, client.InNamespace(ds.Namespace)); err != nil {
		t.Fatal(err)
	}
	for _, cr := range revs.Items {
		if cr.Labels[nasv1alpha1.LabelSetName] != ds.Name {
			t.Errorf("ControllerRevision %s of the DaemonSet is left behind", cr.Name)
		}
	}
}

// waitRolledOut waits until the set's rollout is complete on n nodes.
func waitRolledOut(t *testing.T, k client.Client, key client.ObjectKey, n int) *nasv1alpha1.NodeAgentSet {
	t.Helper()
	got := &nasv1alpha1.NodeAgentSet{}
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := k.Get(ctx, key, got); err != nil {
			return false, nil
		}
		st := got.Status
		last = fmt.Sprintf("revision %s (current %s), %d updated, %d available", st.UpdateRevision, st.CurrentRevision, st.UpdatedNumberScheduled, st.NumberAvailable)
		return st.ObservedGeneration == got.Generation && st.UpdateRevision == st.CurrentRevision &&
			st.UpdatedNumberScheduled == int32(n) && st.NumberAvailable == int32(n) && st.CurrentNumberScheduled == int32(n), nil
	})
	if err != nil {
		t.Fatalf("the rollout did not complete: %v; last seen: %s", err, last)
	}
	return got
}

// deletions counts the pods deleted while watched.
func (ch *checker) deletions() int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return len(ch.deleted)
}
