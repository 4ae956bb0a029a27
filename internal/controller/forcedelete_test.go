package controller_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/execute"
	"github.com/nodeagentset/nodeagentset/internal/plan"
)

// The planner asks to delete at once (grace 0) the pods of a node missing
// from the cache. If the node is only briefly absent there (re-registered,
// cache lag), its kubelet may still run the pod: the executor confirms
// with a live read that the node is gone before forcing anything.
func TestForcedDeleteOnlyWhenTheNodeIsReallyGone(t *testing.T) {
	f := newFixture(t, "forcedelete")
	nodes := f.nodes(1)
	pod := func(name, node string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "agent", Image: "agent:1"}}}}
		f.create(p)
		return p
	}
	alive, gone := pod("on-live-node", nodes[0]), pod("on-gone-node", "forcedelete-no-such-node")
	x := &execute.Executor{Client: k8s, APIReader: k8s, Recorder: discard{}, Expectations: execute.NewExpectations(), Backoff: execute.NewBackoff()}
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: f.ns, UID: "forcedelete"}}
	p := plan.Plan{Deletes: []plan.Delete{
		{Pod: alive, Node: nodes[0], Now: true, Reason: "node missing from the cache"},
		{Pod: gone, Node: "forcedelete-no-such-node", Now: true, Reason: "node missing from the cache"},
	}}
	if _, err := x.Execute(f.ctx, set, p, func(string, string) (*corev1.PodTemplateSpec, error) { return &corev1.PodTemplateSpec{}, nil }, "h"); err != nil {
		t.Fatal(err)
	}
	got := &corev1.Pod{}
	if err := k8s.Get(f.ctx, client.ObjectKeyFromObject(alive), got); err != nil || got.DeletionTimestamp != nil {
		t.Errorf("pod on a node that exists was force-deleted: err %v, deletion %v", err, got.DeletionTimestamp)
	}
	if err := k8s.Get(f.ctx, client.ObjectKeyFromObject(gone), got); !apierrors.IsNotFound(err) {
		t.Errorf("pod on a node that is gone still there: %v", fmt.Sprint(err, got.DeletionTimestamp))
	}
}

// discard is an event recorder that records nothing.
type discard struct{}

func (discard) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {}
func (discard) AnnotatedEventf(runtime.Object, runtime.Object, map[string]string, string, string, string, string, ...any) {
}
