package plan

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// dead makes a node look as the control plane shows a node whose kubelet
// stopped d before t0: Ready Unknown and tainted unreachable.
func dead(n *corev1.Node, d time.Duration) *corev1.Node {
	at := metav1.NewTime(t0.Add(-d))
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: at}}
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &at})
	return n
}

func unhealthyRollout(nodes []*corev1.Node, pods []*corev1.Pod, policy nasv1alpha1.UnhealthyNodesPolicy) Plan {
	// The agent tolerates everything, as node agents do.
	s := rolloutSnapshot(nodes, pods, nasv1alpha1.RollingUpdate{MaxUnavailable: int32Budget(1), UnhealthyNodes: policy}, 0)
	s.Set.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	return Compute(s)
}

func node(p Plan, name string) NodeState {
	i := slices.IndexFunc(p.Nodes, func(st NodeState) bool { return st.Name == name })
	return p.Nodes[i]
}

// A dead node's old agent (not Ready, as the node lifecycle controller
// marks it) takes the whole maxUnavailable 1 with Wait, as with DaemonSet;
// with Skip (the default) it is left alone and the healthy nodes go on.
func TestDeadNodeDoesNotHoldTheBudget(t *testing.T) {
	nodes := []*corev1.Node{dead(mkNode("a", true), time.Hour), mkNode("b", true), mkNode("c", true)}
	pods := []*corev1.Pod{
		mkPod("pa", "a", 2*time.Hour),
		mkPod("pb", "b", time.Hour, readyFor(time.Hour)),
		mkPod("pc", "c", time.Hour, readyFor(time.Hour)),
	}
	p := unhealthyRollout(nodes, pods, nasv1alpha1.UnhealthyNodesSkip)
	if got := deletedPods(p); !slices.Equal(got, []string{"pb"}) {
		t.Fatalf("Skip: deleted %v, want [pb]: the dead node's agent is skipped and the budget goes to b", got)
	}
	st := node(p, "a")
	if want := "skipped: node Ready Unknown since " + t0.Add(-time.Hour).UTC().Format(time.TimeOnly); st.Skipped != want || st.Held != want {
		t.Errorf("Skip: node a Skipped %q, Held %q, want %q", st.Skipped, st.Held, want)
	}
	if p.Rollout.Unavailable != 1 {
		t.Errorf("Skip: %d nodes charged after the pass, want 1 (b)", p.Rollout.Unavailable)
	}

	// Wait: the dead node's not-Ready agent is replaced for free (it has no
	// working agent), and its replacement, which cannot start, then holds
	// the budget.
	p = unhealthyRollout(nodes, pods, nasv1alpha1.UnhealthyNodesWait)
	if got := deletedPods(p); !slices.Equal(got, []string{"pa"}) {
		t.Fatalf("Wait: deleted %v, want [pa]: DaemonSet's free replacement of an agent that is not Ready", got)
	}
	pods[0] = mkPod("pa2", "a", time.Minute, updated)
	p = unhealthyRollout(nodes, pods, nasv1alpha1.UnhealthyNodesWait)
	if got := deletedPods(p); len(got) != 0 {
		t.Fatalf("Wait: deleted %v; the new agent stuck on the dead node should hold maxUnavailable 1", got)
	}
	// Skip: that new agent was placed on a node already dead: skipped.
	p = unhealthyRollout(nodes, pods, nasv1alpha1.UnhealthyNodesSkip)
	if got := deletedPods(p); !slices.Equal(got, []string{"pb"}) {
		t.Fatalf("Skip: deleted %v, want [pb]: an agent placed on an already dead node is not charged", got)
	}
}

// A node that dies after its agent was updated may have been killed by
// that agent: it is charged, and the rollout does not go past the budget.
func TestNodeDyingAfterItsUpdateIsCharged(t *testing.T) {
	nodes := []*corev1.Node{dead(mkNode("a", true), time.Minute), mkNode("b", true), mkNode("c", true)}
	pods := []*corev1.Pod{
		mkPod("pa", "a", 2*time.Minute, updated), // created before the node died, not Ready now
		mkPod("pb", "b", time.Hour, readyFor(time.Hour)),
		mkPod("pc", "c", time.Hour, readyFor(time.Hour)),
	}
	p := unhealthyRollout(nodes, pods, nasv1alpha1.UnhealthyNodesSkip)
	if got := deletedPods(p); len(got) != 0 {
		t.Fatalf("deleted %v: node a died after its update and holds maxUnavailable 1", got)
	}
	if st := node(p, "a"); st.Charged != "charged: node became Ready Unknown after its agent was updated" || st.Skipped != "" {
		t.Errorf("node a Charged %q Skipped %q", st.Charged, st.Skipped)
	}
	if st := node(p, "b"); !strings.HasPrefix(st.Waiting, "waiting: maxUnavailable budget used") {
		t.Errorf("node b Waiting %q, want the budget named", st.Waiting)
	}
	// Its agent available again (the node came back): no longer charged.
	nodes[0] = mkNode("a", true)
	pods[0] = mkPod("pa", "a", 2*time.Minute, updated, readyFor(time.Minute))
	if got := deletedPods(unhealthyRollout(nodes, pods, nasv1alpha1.UnhealthyNodesSkip)); !slices.Equal(got, []string{"pb"}) {
		t.Fatalf("deleted %v, want [pb] once a is healthy and its agent available", got)
	}
}

// Cordoned and deleting nodes are unhealthy too; once healthy again their
// old agent is replaced like any other.
func TestCordonedOrDeletingNodesAreSkippedUntilTheyRecover(t *testing.T) {
	cordoned := mkNode("a", true)
	cordoned.Spec.Unschedulable = true
	deleting := mkNode("b", true)
	deleting.DeletionTimestamp = ptr.To(metav1.NewTime(t0.Add(-time.Second)))
	nodes := []*corev1.Node{cordoned, deleting, mkNode("c", true)}
	pods := []*corev1.Pod{
		mkPod("pa", "a", time.Hour, readyFor(time.Hour)),
		mkPod("pb", "b", time.Hour, readyFor(time.Hour)),
		mkPod("pc", "c", time.Hour, readyFor(time.Hour)),
	}
	p := unhealthyRollout(nodes, pods, "")
	if got := deletedPods(p); !slices.Equal(got, []string{"pc"}) {
		t.Fatalf("deleted %v, want [pc]: cordoned a and deleting b are skipped (Skip is the default)", got)
	}
	if a, b := node(p, "a").Skipped, node(p, "b").Skipped; a != "skipped: node cordoned" || !strings.HasPrefix(b, "skipped: node being deleted since") {
		t.Errorf("Skipped notes %q, %q", a, b)
	}
	cordoned.Spec.Unschedulable = false
	pods[2] = mkPod("pc2", "c", time.Minute, updated, readyFor(time.Minute))
	if got := deletedPods(unhealthyRollout(nodes, pods, "")); !slices.Equal(got, []string{"pa"}) {
		t.Fatalf("deleted %v, want [pa]: the uncordoned node's agent is next", got)
	}
}

// A pod stuck Terminating past its grace period on a dead node does not
// occupy the node with Skip (no kubelet will finish it); with Wait it does.
func TestStuckTerminatingPodDoesNotHoldItsNode(t *testing.T) {
	nodes := []*corev1.Node{dead(mkNode("a", true), time.Hour)}
	stuck := func(name string) *corev1.Pod {
		return mkPod(name, "a", 2*time.Hour, func(p *corev1.Pod) { p.DeletionTimestamp = ptr.To(metav1.NewTime(t0.Add(-time.Minute))) })
	}
	pods := []*corev1.Pod{stuck("old1"), stuck("old2")}
	if got := createdOn(unhealthyRollout(nodes, pods, nasv1alpha1.UnhealthyNodesSkip)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("Skip: created on %v, want [a]: pods stuck Terminating on a dead node hold no slot", got)
	}
	if got := createdOn(unhealthyRollout(nodes, pods, nasv1alpha1.UnhealthyNodesWait)); len(got) != 0 {
		t.Fatalf("Wait: created on %v; DaemonSet's behaviour keeps the node occupied", got)
	}
	// Inside the grace period the pods still occupy the node.
	for _, p := range pods {
		p.DeletionTimestamp = ptr.To(metav1.NewTime(t0.Add(time.Second)))
	}
	if got := createdOn(unhealthyRollout(nodes, pods, nasv1alpha1.UnhealthyNodesSkip)); len(got) != 0 {
		t.Fatalf("Skip: created on %v while the pods were inside their grace period", got)
	}
}
