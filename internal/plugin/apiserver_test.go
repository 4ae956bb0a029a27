package plugin

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/revision"
)

// `kubectl nodeagentset convert -f shipped.yaml | kubectl apply -f -`, as
// the README shows it, against a real API server: every object of the
// file is created, the DaemonSet as a NodeAgentSet.
func TestConvertPipesIntoKubectlApply(t *testing.T) {
	c := apiServer(t)
	ctx := t.Context()
	out := mustPlugin(t, c.Kubeconfig, "convert", "-f", "testdata/calico.yaml")
	applied := kubectl(t, c.Kubeconfig, []byte(out), "apply", "-f", "-")
	for _, obj := range []client.Object{
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "cni-kube-controllers"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "cni-node"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "cni-node"}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "cni-node"}},
		&nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "cni-node"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "cni-kube-controllers"}},
	} {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Errorf("after kubectl apply: %v\nkubectl said:\n%s", err, applied)
		}
	}
	err := k8s.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "cni-node"}, &appsv1.DaemonSet{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("a DaemonSet was applied: %v", err)
	}

	// Several DaemonSets, one inside a List, read from standard input.
	kubectl(t, c.Kubeconfig, nil, "create", "namespace", "agents")
	stdout, stderr, err := plugin(t, c.Kubeconfig, readFile(t, "testdata/agents.yaml"), "convert", "-f", "-")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	kubectl(t, c.Kubeconfig, []byte(stdout), "apply", "-f", "-")
	var sets nasv1alpha1.NodeAgentSetList
	if err := k8s.List(ctx, &sets, client.InNamespace("agents")); err != nil || len(sets.Items) != 3 {
		t.Errorf("%d NodeAgentSets in namespace agents (%v), want 3", len(sets.Items), err)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "agents", Name: "trace-agent-config"}, &corev1.ConfigMap{}); err != nil {
		t.Errorf("the List's ConfigMap: %v", err)
	}
}

// fixture is a namespace with one set, "agent", whose history holds one
// revision per image given (the set's template is the last); no controller
// runs, so the test writes the status it wants.
type fixture struct {
	ns  string
	set *nasv1alpha1.NodeAgentSet
}

func newFixture(t *testing.T, ns string, strategy nasv1alpha1.UpdateStrategyType, images ...string) *fixture {
	t.Helper()
	ctx := t.Context()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	set := &nasv1alpha1.NodeAgentSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent", Labels: map[string]string{"team": "platform"}},
		Spec: nasv1alpha1.NodeAgentSetSpec{
			Selector: nasv1alpha1.SelectorFromMeta(&metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: images[len(images)-1]}}},
			},
			UpdateStrategy: nasv1alpha1.UpdateStrategy{Type: strategy},
		},
	}
	if err := k8s.Create(ctx, set); err != nil {
		t.Fatal(err)
	}
	for i, image := range images {
		template := set.Spec.Template.DeepCopy()
		template.Spec.Containers[0].Image = image
		encoded, err := revision.Encode(template)
		if err != nil {
			t.Fatal(err)
		}
		if err := k8s.Create(ctx, revision.Build(set, encoded, revision.Hash(encoded, nil), int64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{ns: ns, set: set}
}

// status writes the set's status as a controller would.
func (f *fixture) status(t *testing.T, change func(*nasv1alpha1.NodeAgentSet)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(f.set), f.set); err != nil {
			return err
		}
		change(f.set)
		return k8s.Status().Update(t.Context(), f.set)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// settled is the status of a finished pass over 3 desired nodes:
// generation observed, counts given, Reconciling False with reason Complete
// when complete.
func settled(updated, available int32, complete bool) func(*nasv1alpha1.NodeAgentSet) {
	const desired = 3
	return func(s *nasv1alpha1.NodeAgentSet) {
		s.Status.ObservedGeneration = s.Generation
		s.Status.DesiredNumberScheduled, s.Status.CurrentNumberScheduled = desired, desired
		s.Status.UpdatedNumberScheduled, s.Status.NumberAvailable, s.Status.NumberReady = updated, available, available
		s.Status.NumberUnavailable = desired - available
		cond := metav1.Condition{Type: nasv1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: "Progressing", Message: "rolling"}
		if complete {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Complete", "settled"
		}
		meta.SetStatusCondition(&s.Status.Conditions, cond)
	}
}

func contains(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("%s: want %q in:\n%s", what, want, got)
	}
}
