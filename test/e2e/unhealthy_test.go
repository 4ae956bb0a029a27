package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	kstatusv1 "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

// TestUnhealthyNodes plays, on 100 fake nodes (or $NAS_E2E_UNHEALTHY_NODES)
// with the upstream DaemonSet controller beside the manager, the two halves
// of rollingUpdate.unhealthyNodes:
//   - three nodes die as a real control plane shows it (kwok stops playing
//     them, Ready Unknown, unreachable:NoExecute, their agents Ready False);
//     a rolling update with maxUnavailable 1 completes on the healthy nodes,
//     while the same update of a DaemonSet stalls; a node that comes back
//     gets the new agent before the rollout reports complete again; cordoned
//     and deleting nodes are skipped the same way;
//   - a node that dies right after its agent was updated is charged: the
//     rollout stops there instead of going on to every node.
func TestUnhealthyNodes(t *testing.T) {
	n := envInt("NAS_E2E_UNHEALTHY_NODES", 100)
	ctx := t.Context()
	c, names := chaosCluster(t, n, cluster.Options{Controllers: append(slices.Clone(cluster.DefaultControllers), "daemonset-controller")})
	env := &rolloutEnv{c: c, k: startManager(t, c), nodes: names}
	dead := env.nodes[:3]

	set := env.deploy(t, "skip", func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromInt32(1))}
	})
	charged := env.deploy(t, "charged", func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromInt32(1))}
		s.Spec.ProgressDeadlineSeconds = ptr.To[int32](20)
	})
	ds := env.deployDaemonSet(t, "daemonset")
	ch := watchPods(t, c.Client, set, env.nodes)

	if err := c.KillNodes(ctx, dead...); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	env.update(t, set, image("registry.example/agent:2"))
	env.updateDaemonSet(t, ds, "registry.example/agent:2")
	hash := env.updateHash(t, set)
	healthy := func(node string) bool { return !slices.Contains(dead, node) }
	env.waitFor(t, ch, "the rollout to complete on the healthy nodes", func() (bool, string) {
		if ok, seen := onRevision(ch, hash, all, env.nodes[3:])(); !ok {
			return false, seen
		}
		got := env.get(t, set)
		return kstatus(t, got) == kstatusv1.CurrentStatus, fmt.Sprintf("kstatus %s, status %+v", kstatus(t, got), got.Status)
	})
	took := time.Since(start)
	got := env.get(t, set)
	if got.Status.UnhealthyNodes != 3 || meta.IsStatusConditionTrue(got.Status.Conditions, nasv1alpha1.ConditionAvailable) {
		t.Errorf("status: unhealthyNodes %d, Available %v; want 3 and not True (the dead nodes' agents are not available)",
			got.Status.UnhealthyNodes, meta.FindStatusCondition(got.Status.Conditions, nasv1alpha1.ConditionAvailable))
	}
	for _, node := range dead {
		if pods := ch.current()[node]; len(pods) != 1 || podtemplate.Hash(pods[0]) == hash {
			t.Errorf("dead node %s: %d live agents, want its one old agent left alone", node, len(pods))
		}
	}
	out := mustPlugin(t, c, "skipped: node Ready Unknown since", "status", "agent", "-n", "skip", "--node", dead[0])
	t.Logf("NodeAgentSet, maxUnavailable 1, %d nodes of which 3 dead: rollout complete on the %d healthy nodes in %v\n%s",
		n, n-3, took.Round(100*time.Millisecond), out)

	// The DaemonSet had the same time, and as long again, and is stuck.
	window := max(took, 30*time.Second)
	unav, _, _ := ch.worst()
	t.Logf("worst seen: %d nodes without an available agent (3 dead + maxUnavailable 1)", unav)
	if unav > 4 {
		t.Errorf("%d nodes without an available agent; 3 dead plus maxUnavailable 1 allow 4", unav)
	}
	updatedDS, stalled := env.daemonSetStalls(t, ds, "registry.example/agent:2", dead, window)
	t.Logf("DaemonSet, maxUnavailable 1, same nodes: %d of %d healthy nodes updated %v after its update (stalled: %t)",
		updatedDS, n-3, (took + window).Round(time.Second), stalled)
	if !stalled {
		t.Errorf("the DaemonSet's rollout finished on %d healthy nodes with 3 dead ones; the comparison this test shows is void", updatedDS)
	}

	// A node that comes back gets the new agent, and the rollout is not
	// complete until it has.
	if err := c.ReviveNodes(ctx, dead[0]); err != nil {
		t.Fatal(err)
	}
	sawIncomplete := false
	env.waitFor(t, ch, "the revived node's agent updated and the rollout complete", func() (bool, string) {
		got := env.get(t, set)
		updated := onRevision(ch, hash, all, []string{dead[0]})
		ok, _ := updated()
		if !ok && got.Status.UnhealthyNodes == 2 {
			if kstatus(t, got) == kstatusv1.CurrentStatus {
				t.Errorf("the rollout reports complete while recovered node %s still runs its old agent: %+v", dead[0], got.Status)
			}
			sawIncomplete = true
		}
		return ok && kstatus(t, got) == kstatusv1.CurrentStatus, fmt.Sprintf("node updated %t, status %+v", ok, got.Status)
	})
	t.Logf("revived node updated (incomplete status seen meanwhile: %t)", sawIncomplete)

	env.cordonedAndDeleting(t, set, ch, healthy)
	env.chargedWhenTheNodeDiesAfterItsUpdate(t, charged)
}

// cordonedAndDeleting: a cordoned node and one being deleted (held by a
// finalizer) keep their old agent through a rollout that completes; once
// uncordoned, the node gets the new agent; once deleted, its agent goes.
func (e *rolloutEnv) cordonedAndDeleting(t *testing.T, set *nasv1alpha1.NodeAgentSet, ch *checker, healthy func(string) bool) {
	ctx := t.Context()
	cordoned, deleting := e.nodes[10], e.nodes[11]
	e.patchNode(t, cordoned, func(n *corev1.Node) { n.Spec.Unschedulable = true })
	e.patchNode(t, deleting, func(n *corev1.Node) { n.Finalizers = append(n.Finalizers, "e2e.nodeagentset.io/hold") })
	if err := e.c.Client.CoreV1().Nodes().Delete(ctx, deleting, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, ch, "both nodes counted unhealthy", func() (bool, string) {
		got := e.get(t, set)
		return got.Status.UnhealthyNodes == 4, fmt.Sprintf("unhealthyNodes %d", got.Status.UnhealthyNodes)
	})
	e.update(t, set, image("registry.example/agent:3"))
	hash := e.updateHash(t, set)
	skipped := map[string]bool{cordoned: true, deleting: true}
	e.waitFor(t, ch, "the rollout to complete around cordoned and deleting nodes", func() (bool, string) {
		if ok, seen := onRevision(ch, hash, func(n string) bool { return !skipped[n] }, slices.DeleteFunc(slices.Clone(e.nodes), func(n string) bool { return !healthy(n) }))(); !ok {
			return false, seen
		}
		got := e.get(t, set)
		return kstatus(t, got) == kstatusv1.CurrentStatus, fmt.Sprintf("kstatus %s", kstatus(t, got))
	})
	e.patchNode(t, cordoned, func(n *corev1.Node) { n.Spec.Unschedulable = false })
	e.patchNode(t, deleting, func(n *corev1.Node) { n.Finalizers = nil })
	e.waitFor(t, ch, "the uncordoned node updated and the deleted node's agent gone", func() (bool, string) {
		cur := ch.current()
		ok, _ := onRevision(ch, hash, all, []string{cordoned})()
		got := e.get(t, set)
		return ok && len(cur[deleting]) == 0 && kstatus(t, got) == kstatusv1.CurrentStatus,
			fmt.Sprintf("cordoned updated %t, %d agents on the deleted node, kstatus %s", ok, len(cur[deleting]), kstatus(t, got))
	})
}

// chargedWhenTheNodeDiesAfterItsUpdate: a second set, whose new agents
// are slow to start; the first node whose new agent becomes Ready dies at
// once. The rollout must stop with it charged, not run on to every node.
func (e *rolloutEnv) chargedWhenTheNodeDiesAfterItsUpdate(t *testing.T, set *nasv1alpha1.NodeAgentSet) {
	ctx := t.Context()
	ch := watchPods(t, e.c.Client, set, e.nodes)
	e.update(t, set, func(s *nasv1alpha1.NodeAgentSet) {
		image("registry.example/agent:bad")(s)
		s.Spec.Template.Annotations = map[string]string{"kwok.nodeagentset.io/ready-after": "2s"}
	})
	hash := e.updateHash(t, set)
	var victim string
	e.waitFor(t, ch, "a first node with a Ready new agent", func() (bool, string) {
		for node, pods := range ch.current() {
			for _, p := range pods {
				if podtemplate.Hash(p) == hash && podReady(p) {
					victim = node
					return true, ""
				}
			}
		}
		return false, "no new agent Ready yet"
	})
	if err := e.c.KillNodes(ctx, victim); err != nil {
		t.Fatal(err)
	}
	// The rollout stops: no progress for progressDeadlineSeconds.
	e.waitFor(t, ch, "the rollout to stall on the charged node", func() (bool, string) {
		got := e.get(t, set)
		return meta.IsStatusConditionTrue(got.Status.Conditions, nasv1alpha1.ConditionStalled), fmt.Sprintf("status %+v", got.Status)
	})
	updated := 0
	for _, pods := range ch.current() {
		for _, p := range pods {
			if podtemplate.Hash(p) == hash {
				updated++
			}
		}
	}
	out := mustPlugin(t, e.c, "charged: node became Ready Unknown after its agent was updated", "status", "agent", "-n", "charged", "--node", victim)
	t.Logf("node %s died right after its update: rollout stopped with %d of %d nodes on the new revision\n%s", victim, updated, len(e.nodes), out)
	if updated > 4 {
		t.Errorf("%d nodes got the new agent; with the first updated node dead and maxUnavailable 1 the rollout should have stopped within a node or two", updated)
	}
}

func (e *rolloutEnv) patchNode(t *testing.T, name string, mutate func(*corev1.Node)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := e.c.Client.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(n)
		_, err = e.c.Client.CoreV1().Nodes().Update(t.Context(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// deployDaemonSet runs the same agent as agentSet under the upstream
// DaemonSet controller, maxUnavailable 1, and waits for it to be Ready on
// every node.
func (e *rolloutEnv) deployDaemonSet(t *testing.T, ns string) *appsv1.DaemonSet {
	t.Helper()
	ctx := t.Context()
	if _, err := e.c.Client.CoreV1().Namespaces().Create(ctx, namespace(ns), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	set := agentSet(ns, "agent")
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: set.Spec.Template.Labels},
			Template: set.Spec.Template,
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(1))}},
		},
	}
	ds, err := e.c.Client.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, nil, "the DaemonSet Ready on every node", func() (bool, string) {
		got, err := e.c.Client.AppsV1().DaemonSets(ns).Get(ctx, ds.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		st := got.Status
		return st.DesiredNumberScheduled == int32(len(e.nodes)) && st.NumberAvailable == st.DesiredNumberScheduled,
			fmt.Sprintf("%+v", st)
	})
	return ds
}

func (e *rolloutEnv) updateDaemonSet(t *testing.T, ds *appsv1.DaemonSet, img string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got, err := e.c.Client.AppsV1().DaemonSets(ds.Namespace).Get(t.Context(), ds.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		got.Spec.Template.Spec.Containers[0].Image = img
		_, err = e.c.Client.AppsV1().DaemonSets(ds.Namespace).Update(t.Context(), got, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// daemonSetStalls watches the DaemonSet's pods for the window and returns
// how many healthy nodes run a Ready pod of the new image at its end, and
// whether that stayed short of all of them.
func (e *rolloutEnv) daemonSetStalls(t *testing.T, ds *appsv1.DaemonSet, img string, dead []string, window time.Duration) (int, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), window)
	defer cancel()
	updated := 0
	healthy := len(e.nodes) - len(dead)
	for ctx.Err() == nil && updated < healthy {
		pods, err := e.c.Client.CoreV1().Pods(ds.Namespace).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		updated = 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Spec.Containers[0].Image == img && podReady(&p) && !slices.Contains(dead, p.Spec.NodeName) {
				updated++
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return updated, updated < healthy
}
