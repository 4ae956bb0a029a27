package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

func TestNodeUpdatesThatCannotChangeEligibilityAreDropped(t *testing.T) {
	base := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "1"}}}
	heartbeat := base.DeepCopy()
	heartbeat.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	heartbeat.Status.Images = []corev1.ContainerImage{{Names: []string{"x"}}}
	relabel := base.DeepCopy()
	relabel.Labels["a"] = "2"
	taint := base.DeepCopy()
	taint.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}
	cordon := base.DeepCopy()
	cordon.Spec.Unschedulable = true

	p := eligibilityChanged()
	for name, tc := range map[string]struct {
		node *corev1.Node
		want bool
	}{"heartbeat and images": {heartbeat, false}, "label": {relabel, true}, "taint": {taint, true}, "cordon": {cordon, true}} {
		if got := p.Update(event.UpdateEvent{ObjectOld: base, ObjectNew: tc.node}); got != tc.want {
			t.Errorf("%s: predicate = %t, want %t", name, got, tc.want)
		}
	}
}

func TestLeanNodeKeepsWhatEligibilityReads(t *testing.T) {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "1"}, Annotations: map[string]string{"big": "x"}},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: "k"}}, PodCIDR: "10.0.0.0/24"},
		Status:     corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"x"}}}},
	}
	out, _ := leanNode(n)
	lean := out.(*corev1.Node)
	if lean.Name != "n" || lean.Labels["a"] != "1" || len(lean.Spec.Taints) != 1 {
		t.Errorf("lost what eligibility reads: %+v", lean)
	}
	if lean.Annotations != nil || lean.Status.Images != nil || lean.Spec.PodCIDR != "" {
		t.Errorf("kept what nobody reads: %+v", lean)
	}
}
