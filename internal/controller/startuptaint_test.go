package controller_test

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/execute"
)

// The startup taint comes off with a patch that fails, losing nothing,
// when the node's taints changed since the copy the pass judged (a stale
// cache, someone else's change), and succeeds keeping the other taints.
func TestStartupTaintPatchLosesNoConcurrentChange(t *testing.T) {
	f := newFixture(t, "taintpatch")
	startup := corev1.Taint{Key: "example.com/agent-not-ready", Effect: corev1.TaintEffectNoSchedule}
	other := corev1.Taint{Key: "example.com/other", Effect: corev1.TaintEffectNoSchedule}
	name := f.nodes(1, func(n *corev1.Node) { n.Spec.Taints = []corev1.Taint{startup} })[0]
	set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.StartupTaint = &nasv1alpha1.StartupTaint{Key: startup.Key, Effect: startup.Effect}
	})
	x := &execute.Executor{Client: k8s}
	get := func() *corev1.Node {
		n := &corev1.Node{}
		if err := k8s.Get(f.ctx, client.ObjectKey{Name: name}, n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	stale := get()
	// Someone else adds a taint after the pass took its copy.
	cur := get()
	cur.Spec.Taints = append(cur.Spec.Taints, other)
	if err := k8s.Update(f.ctx, cur); err != nil {
		t.Fatal(err)
	}
	out := x.LiftStartupTaint(f.ctx, set, []*corev1.Node{stale})
	if out.Lifted != 0 || out.Err != nil || out.Forbidden != nil {
		t.Errorf("patch against a stale copy: %+v, want refused quietly", out)
	}
	if got := get().Spec.Taints; len(got) != 2 {
		t.Fatalf("taints after a refused patch: %+v", got)
	}
	// With the current copy the startup taint goes and the other stays.
	if out := x.LiftStartupTaint(f.ctx, set, []*corev1.Node{get()}); out.Lifted != 1 || out.Err != nil {
		t.Fatalf("patch against the current copy: %+v", out)
	}
	got := get().Spec.Taints
	if len(got) != 1 || got[0].Key != other.Key || slices.ContainsFunc(got, func(t corev1.Taint) bool { return t.Key == startup.Key }) {
		t.Errorf("taints after lifting: %+v, want only %s", got, other.Key)
	}
	// A node without the taint is not patched at all.
	if out := x.LiftStartupTaint(f.ctx, set, []*corev1.Node{get()}); out.Lifted != 0 || out.Err != nil {
		t.Errorf("patch of an untainted node: %+v", out)
	}
}
