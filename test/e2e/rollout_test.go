package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	kstatusv1 "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/test/cluster"
	testkstatus "github.com/nodeagentset/nodeagentset/test/kstatus"
)

// rolloutEnv is one cluster with N fake nodes and the manager, shared by
// the rollout scenarios, which run one after another, each with its own
// set in its own namespace.
type rolloutEnv struct {
	c     *cluster.Cluster
	k     client.Client
	nodes []string
}

// TestRollouts runs every rollout scenario on 100 fake nodes (or
// $NAS_E2E_ROLLOUT_NODES), each watched pod by pod by a checker.
func TestRollouts(t *testing.T) {
	n := envInt("NAS_E2E_ROLLOUT_NODES", 100)
	ctx := t.Context()
	c := startCluster(t, cluster.Options{})
	specs := cluster.Nodes("node", n)
	for i := range specs {
		specs[i].Labels = map[string]string{"agent": "yes"}
		if i%10 == 0 {
			specs[i].Labels["canary"] = "yes"
		}
	}
	if err := c.AddNodes(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodesReady(ctx, 2*time.Minute, cluster.Names(specs)...); err != nil {
		t.Fatal(err)
	}
	env := &rolloutEnv{c: c, k: startManager(t, c), nodes: cluster.Names(specs)}
	t.Run("MaxUnavailable10Percent", env.maxUnavailable)
	t.Run("MaxSurge10PercentNeverUnavailable", env.maxSurge)
	t.Run("OnDelete", env.onDelete)
	t.Run("Partition", env.partition)
	t.Run("NodeSelectorCanary", env.canary)
	t.Run("PausedThenResumed", env.paused)
	t.Run("RollbackRestartsNothingOnTheTarget", env.rollback)
	t.Run("ProgressDeadline", env.deadline)
	t.Run("SuspendThenResume", env.suspend)
}

// deploy creates a set in its own namespace and waits for it to converge.
func (e *rolloutEnv) deploy(t *testing.T, name string, mutate func(*nasv1alpha1.NodeAgentSet)) *nasv1alpha1.NodeAgentSet {
	t.Helper()
	ctx := t.Context()
	if err := e.k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	set := agentSet(name, "agent")
	if mutate != nil {
		mutate(set)
	}
	if err := e.k.Create(ctx, set); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.k.Delete(context.Background(), set) })
	eligible := map[string]bool{}
	for _, n := range e.nodes {
		eligible[n] = true
	}
	if err := waitConverged(ctx, e.k, set, eligible); err != nil {
		t.Fatal(err)
	}
	return e.get(t, set)
}

func (e *rolloutEnv) get(t *testing.T, set *nasv1alpha1.NodeAgentSet) *nasv1alpha1.NodeAgentSet {
	t.Helper()
	got := &nasv1alpha1.NodeAgentSet{}
	if err := e.k.Get(t.Context(), client.ObjectKeyFromObject(set), got); err != nil {
		t.Fatal(err)
	}
	return got
}

func (e *rolloutEnv) update(t *testing.T, set *nasv1alpha1.NodeAgentSet, mutate func(*nasv1alpha1.NodeAgentSet)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := e.get(t, set)
		mutate(got)
		return e.k.Update(t.Context(), got)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func image(img string) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.Containers[0].Image = img }
}

// updateHash is the revision hash of the set's current template, once the
// controller has observed it.
func (e *rolloutEnv) updateHash(t *testing.T, set *nasv1alpha1.NodeAgentSet) string {
	t.Helper()
	var hash string
	e.waitFor(t, nil, "the controller observing the new template", func() (bool, string) {
		got := e.get(t, set)
		hash = strings.TrimPrefix(got.Status.UpdateRevision, set.Name+"-")
		return got.Status.ObservedGeneration == got.Generation, fmt.Sprintf("observedGeneration %d of %d", got.Status.ObservedGeneration, got.Generation)
	})
	return hash
}

// waitFor re-checks cond whenever the checker sees a pod event (and every
// 100ms, for status-only changes: a 100-node rollout takes about a second,
// and a test that looks for a state during it must not sleep through it)
// until it holds.
func (e *rolloutEnv) waitFor(t *testing.T, ch *checker, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.After(3 * time.Minute)
	var changed <-chan struct{}
	if ch != nil {
		changed = ch.changed
	}
	for {
		ok, seen := cond()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; last seen: %s", what, seen)
		}
	}
}

// onRevision holds when the given nodes each run exactly one Ready pod,
// of revision hash where want says so.
func onRevision(ch *checker, hash string, want func(node string) bool, nodes []string) func() (bool, string) {
	return func() (bool, string) {
		cur := ch.current()
		bad := 0
		for _, n := range nodes {
			pods := cur[n]
			if len(pods) != 1 || !podReady(pods[0]) || (podtemplate.Hash(pods[0]) == hash) != want(n) {
				bad++
			}
		}
		return bad == 0, fmt.Sprintf("%d of %d nodes not yet as wanted", bad, len(nodes))
	}
}

func all(string) bool { return true }

func (e *rolloutEnv) complete(t *testing.T, set *nasv1alpha1.NodeAgentSet) func() (bool, string) {
	return func() (bool, string) {
		got := e.get(t, set)
		return kstatus(t, got) == kstatusv1.CurrentStatus, fmt.Sprintf("kstatus %s, status %+v", kstatus(t, got), got.Status)
	}
}

func kstatus(t *testing.T, set *nasv1alpha1.NodeAgentSet) kstatusv1.Status {
	t.Helper()
	return testkstatus.Of(t, set)
}

func (e *rolloutEnv) maxUnavailable(t *testing.T) {
	set := e.deploy(t, "max-unavailable", func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromString("10%"))}
	})
	ch := watchPods(t, e.c.Client, set, e.nodes)
	start := time.Now()
	e.update(t, set, image("registry.example/agent:2"))
	hash := e.updateHash(t, set)
	sawInProgress := false
	e.waitFor(t, ch, "every node updated", func() (bool, string) {
		sawInProgress = sawInProgress || kstatus(t, e.get(t, set)) == kstatusv1.InProgressStatus
		return onRevision(ch, hash, all, e.nodes)()
	})
	took := time.Since(start)
	e.waitFor(t, ch, "the rollout reported complete", e.complete(t, set))
	unav, two, most := ch.worst()
	budget := (len(e.nodes) + 9) / 10
	t.Logf("%d nodes, maxUnavailable 10%%: rolled out in %v; at most %d nodes without an available agent (budget %d)",
		len(e.nodes), took.Round(time.Millisecond), unav, budget)
	if unav > budget || most > 2 || two > budget {
		t.Errorf("worst seen: %d unavailable (budget %d), %d nodes with two pods, %d pods on a node", unav, budget, two, most)
	}
	got := e.get(t, set).Status
	if got.UpdatedNumberScheduled != int32(len(e.nodes)) || got.CurrentRevision != got.UpdateRevision {
		t.Errorf("status after the rollout: %+v", got)
	}
	if !sawInProgress {
		t.Error("kstatus never reported InProgress during the rollout")
	}
}

func (e *rolloutEnv) maxSurge(t *testing.T) {
	set := e.deploy(t, "max-surge", func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{
			MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromString("10%"))}
	})
	ch := watchPods(t, e.c.Client, set, e.nodes)
	e.update(t, set, image("registry.example/agent:2"))
	hash := e.updateHash(t, set)
	e.waitFor(t, ch, "every node updated", onRevision(ch, hash, all, e.nodes))
	unav, two, most := ch.worst()
	budget := (len(e.nodes) + 9) / 10
	t.Logf("maxSurge 10%%, maxUnavailable 0: at most %d nodes with two pods (budget %d), %d without an available agent", two, budget, unav)
	if unav != 0 || two > budget || most > 2 {
		t.Errorf("worst seen: %d unavailable (want 0), %d nodes with two pods (budget %d), %d pods on a node", unav, two, budget, most)
	}
}

func (e *rolloutEnv) onDelete(t *testing.T) {
	set := e.deploy(t, "on-delete", func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy = nasv1alpha1.UpdateStrategy{Type: nasv1alpha1.OnDeleteStrategy}
	})
	ch := watchPods(t, e.c.Client, set, e.nodes)
	before := ch.current()
	e.update(t, set, image("registry.example/agent:2"))
	hash := e.updateHash(t, set)
	time.Sleep(2 * time.Second) // give a wrong controller the time to replace pods
	if unav, _, _ := ch.worst(); unav != 0 {
		t.Fatalf("OnDelete: %d nodes lost their agent without anyone deleting it", unav)
	}
	victims := e.nodes[:3]
	for _, n := range victims {
		if err := e.k.Delete(t.Context(), before[n][0]); err != nil {
			t.Fatal(err)
		}
	}
	isVictim := func(n string) bool { return n == victims[0] || n == victims[1] || n == victims[2] }
	e.waitFor(t, ch, "deleted pods replaced by the new revision, others untouched", onRevision(ch, hash, isVictim, e.nodes))
}

func (e *rolloutEnv) partition(t *testing.T) {
	const keep = 30
	set := e.deploy(t, "partition", func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{
			MaxUnavailable: ptr.To(intstr.FromString("10%")), Partition: ptr.To(intstr.FromInt32(keep))}
	})
	ch := watchPods(t, e.c.Client, set, e.nodes)
	e.update(t, set, image("registry.example/agent:2"))
	hash := e.updateHash(t, set)
	// Nodes are updated in name order; the last `keep` stay behind.
	updated := func(n string) bool { return n < e.nodes[len(e.nodes)-keep] }
	e.waitFor(t, ch, "all but the last 30 nodes updated", onRevision(ch, hash, updated, e.nodes))
	e.waitFor(t, ch, "the partitioned rollout reported complete", e.complete(t, set))
	if got := e.get(t, set).Status; got.CurrentRevision == got.UpdateRevision {
		t.Errorf("currentRevision advanced to %s while the partition holds 30 nodes back", got.CurrentRevision)
	}
	e.update(t, set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To(intstr.FromInt32(0))
	})
	e.waitFor(t, ch, "every node updated once the partition is lifted", onRevision(ch, hash, all, e.nodes))
}

func (e *rolloutEnv) canary(t *testing.T) {
	set := e.deploy(t, "canary", func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{
			NodeSelector: &nasv1alpha1.LabelSelector{MatchLabels: map[string]nasv1alpha1.LabelValue{"canary": "yes"}}}
	})
	ch := watchPods(t, e.c.Client, set, e.nodes)
	e.update(t, set, image("registry.example/agent:2"))
	hash := e.updateHash(t, set)
	canaries := map[string]bool{}
	for i, n := range e.nodes {
		canaries[n] = i%10 == 0
	}
	e.waitFor(t, ch, "only canary nodes updated", onRevision(ch, hash, func(n string) bool { return canaries[n] }, e.nodes))
	e.waitFor(t, ch, "the canary rollout reported complete", e.complete(t, set))
}

func (e *rolloutEnv) paused(t *testing.T) {
	set := e.deploy(t, "paused", func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromString("10%")), Paused: true}
	})
	ch := watchPods(t, e.c.Client, set, e.nodes)
	before := ch.current()
	e.update(t, set, image("registry.example/agent:2"))
	hash := e.updateHash(t, set)
	time.Sleep(2 * time.Second)
	for n, pods := range before {
		if ch.wasDeleted(pods[0].UID) {
			t.Fatalf("paused, yet the agent on %s was replaced", n)
		}
	}
	if r := meta.FindStatusCondition(e.get(t, set).Status.Conditions, nasv1alpha1.ConditionReconciling); r == nil || r.Reason != "Paused" {
		t.Errorf("Reconciling condition while paused = %+v", r)
	}
	e.update(t, set, func(s *nasv1alpha1.NodeAgentSet) { s.Spec.UpdateStrategy.RollingUpdate.Paused = false })
	e.waitFor(t, ch, "every node updated once resumed", onRevision(ch, hash, all, e.nodes))
}

func (e *rolloutEnv) rollback(t *testing.T) {
	set := e.deploy(t, "rollback", func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{
			MaxUnavailable: ptr.To(intstr.FromString("10%")), Partition: ptr.To(intstr.FromString("50%"))}
	})
	v1Revision := set.Status.UpdateRevision
	ch := watchPods(t, e.c.Client, set, e.nodes)
	e.update(t, set, image("registry.example/agent:2"))
	v2 := e.updateHash(t, set)
	half := func(n string) bool { return n < e.nodes[len(e.nodes)/2] }
	e.waitFor(t, ch, "half the nodes on v2", onRevision(ch, v2, half, e.nodes))
	onV1 := map[string]*corev1.Pod{}
	for n, pods := range ch.current() {
		if !half(n) {
			onV1[n] = pods[0]
		}
	}
	// Roll back: the template equals v1 again.
	e.update(t, set, image("registry.example/agent:1"))
	e.updateHash(t, set)
	got := e.get(t, set)
	if got.Status.UpdateRevision != v1Revision {
		t.Fatalf("rollback made revision %s; want the old one, %s, re-used", got.Status.UpdateRevision, v1Revision)
	}
	v1 := strings.TrimPrefix(v1Revision, set.Name+"-")
	e.waitFor(t, ch, "every node back on v1", onRevision(ch, v1, all, e.nodes))
	for n, pod := range onV1 {
		if ch.wasDeleted(pod.UID) {
			t.Errorf("pod %s on %s already ran v1, yet the rollback restarted it", pod.Name, n)
		}
	}
}

func (e *rolloutEnv) deadline(t *testing.T) {
	set := e.deploy(t, "deadline", func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.ProgressDeadlineSeconds = ptr.To[int32](5)
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromString("10%"))}
	})
	ch := watchPods(t, e.c.Client, set, e.nodes)
	// kwok leaves pods of the new template Running but never Ready.
	e.update(t, set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Template.Spec.Containers[0].Image = "registry.example/agent:broken"
		s.Spec.Template.Annotations = map[string]string{"kwok.nodeagentset.io/ready": "false"}
	})
	e.waitFor(t, ch, "the rollout reported failed", func() (bool, string) {
		got := e.get(t, set)
		stalled := meta.FindStatusCondition(got.Status.Conditions, nasv1alpha1.ConditionStalled)
		progressing := meta.FindStatusCondition(got.Status.Conditions, nasv1alpha1.ConditionProgressing)
		return stalled != nil && stalled.Status == metav1.ConditionTrue && stalled.Reason == "ProgressDeadlineExceeded" &&
				progressing != nil && progressing.Status == metav1.ConditionFalse && kstatus(t, got) == kstatusv1.FailedStatus,
			fmt.Sprintf("Stalled %+v, Progressing %+v, kstatus %s", stalled, progressing, kstatus(t, got))
	})
	unav, _, _ := ch.worst()
	if budget := (len(e.nodes) + 9) / 10; unav > budget {
		t.Errorf("a rollout of never-ready pods took %d nodes' agents (budget %d)", unav, budget)
	}
	// Rolling back to the working template is progress and clears it.
	e.update(t, set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Template.Spec.Containers[0].Image = "registry.example/agent:1"
		s.Spec.Template.Annotations = nil
	})
	e.waitFor(t, ch, "the failure cleared by the rollback", e.complete(t, set))
}
