package eligibility

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzEvaluate checks Evaluate's properties on fuzzed nodes and pod specs:
// it never panics; a node where the agent should run is one where it may
// stay; every refusal has a reason and every acceptance none; tolerating
// everything leaves only nodeName, nodeSelector and affinity to refuse; and
// a NoExecute taint the pod does not tolerate always removes the agent.
func FuzzEvaluate(f *testing.F) {
	f.Add("zone", "a", "zone", "a", "dedicated", "gpu", uint8(0), "dedicated", "gpu", uint8(0), false, "")
	f.Add("zone", "a", "zone", "b", "dedicated", "gpu", uint8(1), "", "", uint8(3), true, "n2")
	f.Add("", "", "k", "v", "node.kubernetes.io/not-ready", "", uint8(1), "other", "", uint8(2), false, "n1")
	f.Fuzz(func(t *testing.T, labelKey, labelValue, selKey, selValue, taintKey, taintValue string, taintEffect uint8,
		tolKey, tolValue string, tolMode uint8, hostNetwork bool, nodeName string) {
		effects := []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute, corev1.TaintEffectPreferNoSchedule}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{labelKey: labelValue}}}
		if taintKey != "" {
			node.Spec.Taints = []corev1.Taint{{Key: taintKey, Value: taintValue, Effect: effects[int(taintEffect)%len(effects)]}}
		}
		spec := &corev1.PodSpec{HostNetwork: hostNetwork, NodeName: nodeName}
		if selKey != "" {
			spec.NodeSelector = map[string]string{selKey: selValue}
		}
		switch tolMode % 4 {
		case 1:
			spec.Tolerations = []corev1.Toleration{{Key: tolKey, Operator: corev1.TolerationOpEqual, Value: tolValue}}
		case 2:
			spec.Tolerations = []corev1.Toleration{{Key: tolKey, Operator: corev1.TolerationOpExists}}
		case 3:
			spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		}
		r := Evaluate(node, AgentSpec(spec))
		if r.ShouldRun && !r.ShouldContinueRunning {
			t.Fatalf("should run but not continue running: %+v", r)
		}
		if r.ShouldRun == (r.Reason != "") {
			t.Fatalf("ShouldRun %t with reason %q", r.ShouldRun, r.Reason)
		}
		placementOK := (nodeName == "" || nodeName == "n1") && (selKey == "" || node.Labels[selKey] == selValue)
		if tolMode%4 == 3 && r.ShouldRun != placementOK {
			t.Fatalf("tolerating every taint, ShouldRun = %t, want %t (%q)", r.ShouldRun, placementOK, r.Reason)
		}
		if tolMode%4 == 0 && placementOK && len(node.Spec.Taints) == 1 && node.Spec.Taints[0].Effect == corev1.TaintEffectNoExecute &&
			taintKey != corev1.TaintNodeNotReady && taintKey != corev1.TaintNodeUnreachable && r.ShouldContinueRunning {
			t.Fatalf("untolerated NoExecute taint %q kept the agent", taintKey)
		}
	})
}
