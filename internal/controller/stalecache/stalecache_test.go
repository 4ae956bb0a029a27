// Package stalecache_test proves that the controller's expectations keep a
// stale informer cache from causing duplicate pods: a reconciler whose pod
// reads come from a frozen snapshot runs pass after pass against a real API
// server. It has its own control plane and no manager, so nothing else
// reconciles its sets.
package stalecache_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/controller"
	"github.com/nodeagentset/nodeagentset/internal/execute"
	"github.com/nodeagentset/nodeagentset/test/cluster"
)

var direct client.Client

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(nasv1alpha1.AddToScheme(scheme))
	c, err := cluster.Start(context.Background(), cluster.Options{
		ControlPlaneOnly: true,
		CRDDirs:          []string{filepath.Join("..", "..", "..", "config", "crd", "bases")},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = c.Stop() }()
	if direct, err = client.New(c.Config, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// staleClient serves pod lists from a snapshot taken when it was made, as
// an informer cache that has stopped receiving events would; everything
// else goes to the API server.
type staleClient struct {
	client.Client
	pods corev1.PodList
}

func (s *staleClient) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if pods, ok := list.(*corev1.PodList); ok {
		s.pods.DeepCopyInto(pods)
		return nil
	}
	return s.Client.List(ctx, list, opts...)
}

type noEvents struct{}

func (noEvents) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {}
func (noEvents) AnnotatedEventf(runtime.Object, runtime.Object, map[string]string, string, string, string, string, ...any) {
}

// reconcilePasses runs passes of a reconciler whose pod cache never moves
// past the moment the set was created. With fresh expectations every pass
// (forget), it has no memory of its own writes.
func reconcilePasses(t *testing.T, ns string, passes int, forget bool) int {
	t.Helper()
	ctx := t.Context()
	if err := direct.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": ns}
	set := &nasv1alpha1.NodeAgentSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns},
		Spec: nasv1alpha1.NodeAgentSetSpec{
			Selector: &nasv1alpha1.LabelSelector{MatchLabels: map[string]nasv1alpha1.LabelValue{"app": nasv1alpha1.LabelValue(ns)}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"stale": "yes"},
					Containers:   []corev1.Container{{Name: "agent", Image: "registry.example/agent:1"}},
				},
			},
		},
	}
	if err := direct.Create(ctx, set); err != nil {
		t.Fatal(err)
	}
	stale := &staleClient{Client: direct}
	r := &controller.Reconciler{Client: stale, APIReader: direct, Executor: &execute.Executor{
		Client: direct, Recorder: noEvents{}, Expectations: execute.NewExpectations(), Backoff: execute.NewBackoff(),
	}}
	for range passes {
		if forget {
			r.Executor.Expectations = execute.NewExpectations()
		}
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(set)}); err != nil {
			t.Fatal(err)
		}
	}
	var pods corev1.PodList
	if err := direct.List(ctx, &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return len(pods.Items)
}

func TestExpectationsPreventDuplicatesFromAStaleCache(t *testing.T) {
	for i := range 3 {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("stale-%d", i), Labels: map[string]string{"stale": "yes"}}}
		if err := direct.Create(t.Context(), node); err != nil {
			t.Fatal(err)
		}
	}
	if got := reconcilePasses(t, "with-expectations", 4, false); got != 3 {
		t.Errorf("4 passes on a stale cache made %d pods for 3 nodes; expectations should keep it at 3", got)
	}
	// The control: without memory of its writes, the same stale cache makes
	// the reconciler place a second pod on every node each pass. This is
	// what shows the test above can fail.
	if got := reconcilePasses(t, "without-expectations", 4, true); got != 12 {
		t.Errorf("without expectations 4 passes made %d pods; the stale cache should have caused 12", got)
	}
}
