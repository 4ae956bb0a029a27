package nodehealth

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNodeHealthReadsEveryCause(t *testing.T) {
	at := metav1.Now()
	for name, tc := range map[string]struct {
		node corev1.Node
		want string
	}{
		"healthy":       {corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}, ""},
		"no Ready yet":  {corev1.Node{}, ""},
		"NotReady":      {corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse, LastTransitionTime: at}}}}, "NotReady"},
		"not-ready":     {corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}}}}, "tainted node.kubernetes.io/not-ready"},
		"autoscaler":    {corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "ToBeDeletedByClusterAutoscaler", Effect: corev1.TaintEffectNoSchedule}}}}, "tainted ToBeDeletedByClusterAutoscaler"},
		"karpenter":     {corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "karpenter.sh/disrupted", Effect: corev1.TaintEffectNoSchedule}}}}, "tainted karpenter.sh/disrupted"},
		"other taint":   {corev1.Node{Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: "dedicated", Effect: corev1.TaintEffectNoSchedule}}}}, ""},
		"cordoned":      {corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}}, "cordoned"},
		"being deleted": {corev1.Node{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &at}}, "being deleted"},
	} {
		if got := Of(&tc.node); got.Reason != tc.want {
			t.Errorf("%s: reason %q, want %q", name, got.Reason, tc.want)
		}
	}
}
