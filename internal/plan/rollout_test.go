package plan

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// readyFor marks a pod Ready since d before t0.
func readyFor(d time.Duration) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(t0.Add(-d))}}
	}
}

// updated marks a pod as of the update revision of rolloutSnapshot, h2.
func updated(p *corev1.Pod) { p.Labels[nasv1alpha1.LabelRevisionHash] = "h2" }

// rolloutSnapshot is a snapshot whose update revision is h2, with the
// rolling update settings given.
func rolloutSnapshot(nodes []*corev1.Node, pods []*corev1.Pod, ru nasv1alpha1.RollingUpdate, minReady int32) Snapshot {
	s := snapshot(nodes, pods, nil)
	s.UpdateHash = "h2"
	s.Set.Spec.MinReadySeconds = minReady
	s.Set.Spec.UpdateStrategy = nasv1alpha1.UpdateStrategy{Type: nasv1alpha1.RollingUpdateStrategy, RollingUpdate: &ru}
	return s
}

func deletedPods(p Plan) []string {
	var out []string
	for _, d := range p.Deletes {
		out = append(out, d.Pod.Name)
	}
	slices.Sort(out)
	return out
}

func createdOn(p Plan) []string {
	var out []string
	for _, c := range p.Creates {
		out = append(out, c.Node)
	}
	slices.Sort(out)
	return out
}

func int32Budget(n int) *intstr.IntOrString { return ptr.To(intstr.FromInt(n)) }

// Two template changes inside minReadySeconds: every agent is Ready but
// none is available yet. DaemonSet replaces them all at once; the
// contract charges them to maxUnavailable.
func TestReadyButNotAvailableAgentsAreChargedToTheBudget(t *testing.T) {
	nodes := []*corev1.Node{mkNode("a", true), mkNode("b", true), mkNode("c", true)}
	pods := []*corev1.Pod{
		mkPod("pa", "a", time.Minute, readyFor(10*time.Second)),
		mkPod("pb", "b", time.Minute, readyFor(10*time.Second)),
		mkPod("pc", "c", time.Minute, readyFor(10*time.Second)),
	}
	p := Compute(rolloutSnapshot(nodes, pods, nasv1alpha1.RollingUpdate{MaxUnavailable: int32Budget(1)}, 60))
	if got := deletedPods(p); len(got) != 0 {
		t.Fatalf("deleted %v: Ready agents inside minReadySeconds were replaced outside maxUnavailable 1 (3 nodes already unavailable)", got)
	}

	// One not yet available, two available, maxUnavailable 2: one more
	// Ready agent may go, the first by name.
	pods[1], pods[2] = mkPod("pb", "b", time.Minute, readyFor(2*time.Minute)), mkPod("pc", "c", time.Minute, readyFor(2*time.Minute))
	p = Compute(rolloutSnapshot(nodes, pods, nasv1alpha1.RollingUpdate{MaxUnavailable: int32Budget(2)}, 60))
	if got := deletedPods(p); !slices.Equal(got, []string{"pa"}) {
		t.Fatalf("deleted %v, want [pa]: one unavailable node plus one charged delete fill maxUnavailable 2", got)
	}

	// An agent that is not Ready is replaced at once, for free.
	pods[0] = mkPod("pa", "a", time.Minute)
	p = Compute(rolloutSnapshot(nodes, pods, nasv1alpha1.RollingUpdate{MaxUnavailable: int32Budget(1)}, 60))
	if got := deletedPods(p); !slices.Equal(got, []string{"pa"}) {
		t.Fatalf("deleted %v, want [pa]: an old agent that is not Ready costs nothing to replace", got)
	}
}

// With maxSurge set, DaemonSet never deletes an available old agent
// before its replacement is available, whatever maxUnavailable says.
func TestSurgeNeverDeletesAReadyOldAgentEarly(t *testing.T) {
	nodes := []*corev1.Node{mkNode("a", true), mkNode("b", true), mkNode("c", true)}
	pods := []*corev1.Pod{
		mkPod("pa", "a", time.Minute, readyFor(time.Minute)),
		mkPod("pb", "b", time.Minute, readyFor(time.Minute)),
		mkPod("pc", "c", time.Minute, readyFor(time.Minute)),
	}
	p := Compute(rolloutSnapshot(nodes, pods, nasv1alpha1.RollingUpdate{MaxUnavailable: int32Budget(1), MaxSurge: int32Budget(1)}, 0))
	if got := deletedPods(p); len(got) != 0 {
		t.Fatalf("deleted %v with maxSurge 1: an available old agent went before its replacement was available", got)
	}
	if got := createdOn(p); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("created on %v, want one surge agent on [a]", got)
	}
}

// Partition counts nodes still on an older revision: a node joining gets
// the update revision and must not release a held node.
func TestPartitionHoldsTheSameNodesWhenANodeJoins(t *testing.T) {
	nodes := []*corev1.Node{mkNode("a", true), mkNode("b", true), mkNode("c", true), mkNode("d", true)}
	pods := []*corev1.Pod{
		mkPod("pa", "a", time.Minute, readyFor(time.Minute), updated),
		mkPod("pb", "b", time.Minute, readyFor(time.Minute)),
		mkPod("pc", "c", time.Minute, readyFor(time.Minute)),
	}
	p := Compute(rolloutSnapshot(nodes, pods, nasv1alpha1.RollingUpdate{MaxUnavailable: int32Budget(3), Partition: int32Budget(2)}, 0))
	if got := deletedPods(p); len(got) != 0 {
		t.Fatalf("deleted %v: with partition 2 and two old agents, node d joining released a held node", got)
	}
	if got := createdOn(p); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("created on %v, want the joining node [d]", got)
	}
}

// A surge agent that could not start (a host port taken), then maxSurge
// lowered to zero: the extra new pod goes, as DaemonSet deletes all but
// the oldest pod of a node when it does not surge.
func TestStuckSurgeIsUndoneWhenMaxSurgeDropsToZero(t *testing.T) {
	nodes := []*corev1.Node{mkNode("a", true)}
	pods := []*corev1.Pod{
		mkPod("old", "a", time.Minute, readyFor(time.Minute)),
		mkPod("new", "a", time.Second, updated, phase(corev1.PodPending)),
	}
	p := Compute(rolloutSnapshot(nodes, pods, nasv1alpha1.RollingUpdate{MaxUnavailable: int32Budget(2), MaxSurge: int32Budget(0)}, 0))
	if got := deletedPods(p); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("deleted %v, want the stuck surge pod [new]", got)
	}
	// While surging is allowed, the surge agent is left to start.
	p = Compute(rolloutSnapshot(nodes, pods, nasv1alpha1.RollingUpdate{MaxUnavailable: int32Budget(0), MaxSurge: int32Budget(1)}, 0))
	if got := deletedPods(p); len(got) != 0 {
		t.Fatalf("deleted %v while maxSurge is 1", got)
	}
}

// A rollback to the current revision with a partition rolls back every
// agent of the abandoned revision: partition holds the current revision,
// which the held nodes already run.
func TestRollbackWithAPartitionRollsBackTheAbandonedRevision(t *testing.T) {
	nodes := []*corev1.Node{mkNode("a", true), mkNode("b", true), mkNode("c", true), mkNode("d", true)}
	pods := []*corev1.Pod{
		mkPod("pa", "a", time.Minute, readyFor(time.Minute), updated),
		mkPod("pb", "b", time.Minute, readyFor(time.Minute), updated),
		mkPod("pc", "c", time.Minute, readyFor(time.Minute)),
		mkPod("pd", "d", time.Minute, readyFor(time.Minute)),
	}
	s := rolloutSnapshot(nodes, pods, nasv1alpha1.RollingUpdate{MaxUnavailable: int32Budget(2), Partition: int32Budget(2)}, 0)
	s.UpdateHash = "h1" // the template equals the current revision again
	s.Set.Status.CurrentRevision = s.Set.Name + "-h1"
	if got := deletedPods(Compute(s)); !slices.Equal(got, []string{"pa", "pb"}) {
		t.Fatalf("deleted %v, want the agents of the abandoned revision [pa pb]", got)
	}
}
