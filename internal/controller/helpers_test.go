package controller_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// fixture is one test's corner of the shared API server: its namespace,
// and nodes carrying its own label, which its sets select.
type fixture struct {
	t     *testing.T
	ctx   context.Context
	name  string
	ns    string
	label string
}

func newFixture(t *testing.T, name string) *fixture {
	t.Helper()
	f := &fixture{t: t, ctx: t.Context(), name: name, ns: "test-" + name, label: "test.nodeagentset.io/" + name}
	if err := k8s.Create(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}); err != nil {
		t.Fatal(err)
	}
	return f
}

// nodes creates n nodes named <test>-<i> carrying the fixture's label.
func (f *fixture) nodes(n int, mutate ...func(*corev1.Node)) []string {
	f.t.Helper()
	var names []string
	for i := range n {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:   fmt.Sprintf("%s-%d", f.name, i),
			Labels: map[string]string{f.label: "true"},
		}}
		for _, m := range mutate {
			m(node)
		}
		f.create(node)
		names = append(names, node.Name)
		f.t.Cleanup(func() { _ = k8s.Delete(context.Background(), node) })
	}
	return names
}

func (f *fixture) create(obj client.Object) {
	f.t.Helper()
	if err := k8s.Create(f.ctx, obj); err != nil {
		f.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// newSet returns (without creating) a set that selects the fixture's nodes.
func (f *fixture) newSet(mutate ...func(*nasv1alpha1.NodeAgentSet)) *nasv1alpha1.NodeAgentSet {
	labels := map[string]string{"app": f.name}
	set := &nasv1alpha1.NodeAgentSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: f.ns},
		Spec: nasv1alpha1.NodeAgentSetSpec{
			Selector: &nasv1alpha1.LabelSelector{MatchLabels: map[string]nasv1alpha1.LabelValue{"app": nasv1alpha1.LabelValue(f.name)}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{f.label: "true"},
					Containers:   []corev1.Container{{Name: "agent", Image: "registry.example/agent:1"}},
				},
			},
		},
	}
	for _, m := range mutate {
		m(set)
	}
	return set
}

// set creates the set newSet describes.
func (f *fixture) set() *nasv1alpha1.NodeAgentSet {
	f.t.Helper()
	set := f.newSet()
	f.create(set)
	return set
}

// pods lists the live (not terminating) pods carrying the set's name label.
func (f *fixture) pods(set *nasv1alpha1.NodeAgentSet) []corev1.Pod {
	f.t.Helper()
	var list corev1.PodList
	if err := k8s.List(f.ctx, &list, client.InNamespace(set.Namespace),
		client.MatchingLabels{nasv1alpha1.LabelSetName: set.Name}); err != nil {
		f.t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	return live
}

func byNode(pods []corev1.Pod) map[string][]corev1.Pod {
	m := map[string][]corev1.Pod{}
	for _, p := range pods {
		n := podtemplate.NodeOf(&p)
		m[n] = append(m[n], p)
	}
	return m
}

// onePerNode holds when exactly the given nodes each have one pod.
func (f *fixture) onePerNode(set *nasv1alpha1.NodeAgentSet, nodes []string) func() (bool, string) {
	return func() (bool, string) {
		got := byNode(f.pods(set))
		ok := len(got) == len(nodes)
		for _, n := range nodes {
			ok = ok && len(got[n]) == 1
		}
		st := f.get(set).Status
		return ok, fmt.Sprintf("%s; status desired %d current %d conditions %v", describe(got),
			st.DesiredNumberScheduled, st.CurrentNumberScheduled, st.Conditions)
	}
}

func describe(m map[string][]corev1.Pod) string {
	var parts []string
	for n, pods := range m {
		parts = append(parts, fmt.Sprintf("%s:%d", n, len(pods)))
	}
	sort.Strings(parts)
	return "pods per node {" + strings.Join(parts, " ") + "}"
}

// markReady plays the kubelet: the pod runs and is Ready.
func (f *fixture) markReady(pod *corev1.Pod) {
	f.t.Helper()
	f.setPhase(pod, corev1.PodRunning, corev1.ConditionTrue)
}

func (f *fixture) setPhase(pod *corev1.Pod, phase corev1.PodPhase, ready corev1.ConditionStatus) {
	f.t.Helper()
	// The controller may be deleting the pod meanwhile (a rollout): retry on
	// conflicts with a fresh copy, and leave a pod that is going alone.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p := &corev1.Pod{}
		if err := k8s.Get(f.ctx, client.ObjectKeyFromObject(pod), p); err != nil {
			return err
		}
		if p.DeletionTimestamp != nil || p.UID != pod.UID {
			return nil
		}
		p.Status.Phase = phase
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready, LastTransitionTime: metav1.Now()}}
		return k8s.Status().Update(f.ctx, p)
	})
	if err != nil && !apierrors.IsNotFound(err) {
		f.t.Fatalf("setting pod %s %s: %v", pod.Name, phase, err)
	}
}

// markAllReady marks every live pod of the set Ready.
func (f *fixture) markAllReady(set *nasv1alpha1.NodeAgentSet) {
	f.t.Helper()
	for _, p := range f.pods(set) {
		f.markReady(&p)
	}
}

func (f *fixture) get(set *nasv1alpha1.NodeAgentSet) *nasv1alpha1.NodeAgentSet {
	f.t.Helper()
	got := &nasv1alpha1.NodeAgentSet{}
	if err := k8s.Get(f.ctx, client.ObjectKeyFromObject(set), got); err != nil {
		f.t.Fatal(err)
	}
	return got
}

func (f *fixture) patchNode(name string, mutate func(*corev1.Node)) {
	f.t.Helper()
	node := &corev1.Node{}
	if err := k8s.Get(f.ctx, client.ObjectKey{Name: name}, node); err != nil {
		f.t.Fatal(err)
	}
	before := node.DeepCopy()
	mutate(node)
	if err := k8s.Patch(f.ctx, node, client.MergeFrom(before)); err != nil {
		f.t.Fatal(err)
	}
}

func podNames(pods []corev1.Pod) []string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

// update changes the set's spec, retrying when the controller's status
// writes got in between.
func (f *fixture) update(set *nasv1alpha1.NodeAgentSet, mutate func(*nasv1alpha1.NodeAgentSet)) {
	f.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := f.get(set)
		mutate(got)
		return k8s.Update(f.ctx, got)
	})
	if err != nil {
		f.t.Fatalf("updating NodeAgentSet: %v", err)
	}
}
