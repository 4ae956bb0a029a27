package controller_test

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// A set in a namespace being deleted stops creating pods (the API server
// refuses them; DaemonSet stops on that cause too) instead of retrying
// and reporting every refusal as a failure.
func TestNoCreatesInATerminatingNamespace(t *testing.T) {
	f := newFixture(t, "terminating")
	nodes := f.nodes(1)
	set := f.set()
	eventually(t, "the first pod", f.onePerNode(set, nodes))
	// No namespace controller runs here: the namespace stays Terminating.
	if err := k8s.Delete(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the namespace terminating", func() (bool, string) {
		ns := &corev1.Namespace{}
		err := k8s.Get(f.ctx, client.ObjectKey{Name: f.ns}, ns)
		return err == nil && ns.Status.Phase == corev1.NamespaceTerminating, fmt.Sprint(ns.Status.Phase, err)
	})
	f.nodes(1, func(n *corev1.Node) { n.Name = "terminating-late" })
	eventually(t, "the set to see the new node", func() (bool, string) {
		st := f.get(set).Status
		return st.DesiredNumberScheduled == 2, fmt.Sprintf("desired %d", st.DesiredNumberScheduled)
	})
	holds(t, 3*time.Second, "no pod failure reported", func() (bool, string) {
		c := meta.FindStatusCondition(f.get(set).Status.Conditions, nasv1alpha1.ConditionPodFailure)
		return c == nil || c.Status != metav1.ConditionTrue, fmt.Sprintf("%+v", c)
	})
}
