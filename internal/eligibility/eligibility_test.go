package eligibility

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func node(labels map[string]string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: labels},
		Spec:       corev1.NodeSpec{Taints: taints},
	}
}

func taint(key, value string, effect corev1.TaintEffect) corev1.Taint {
	return corev1.Taint{Key: key, Value: value, Effect: effect}
}

func affinity(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
	}}
}

func TestEvaluate(t *testing.T) {
	zoneA := map[string]string{"zone": "a"}
	tests := []struct {
		name                 string
		node                 *corev1.Node
		spec                 corev1.PodSpec
		run, continueRunning bool
		reason               string // substring of Reason
	}{
		{name: "plain node runs the agent", node: node(nil), spec: corev1.PodSpec{},
			run: true, continueRunning: true},
		{name: "nodeSelector matches", node: node(zoneA), spec: corev1.PodSpec{NodeSelector: zoneA},
			run: true, continueRunning: true},
		{name: "nodeSelector value differs", node: node(map[string]string{"zone": "b"}),
			spec:   corev1.PodSpec{NodeSelector: zoneA},
			reason: "nodeSelector zone=a does not match (node has zone=b)"},
		{name: "nodeSelector label missing", node: node(nil), spec: corev1.PodSpec{NodeSelector: zoneA},
			reason: "nodeSelector zone=a does not match (node has no label zone)"},
		{name: "required affinity by label matches", node: node(zoneA),
			spec: corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a", "c"}}}})},
			run: true, continueRunning: true},
		{name: "required affinity by label does not match", node: node(zoneA),
			spec: corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: "zone", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"a"}}}})},
			reason: "required node affinity does not match"},
		{name: "required affinity terms are ORed", node: node(zoneA),
			spec: corev1.PodSpec{Affinity: affinity(
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "gpu", Operator: corev1.NodeSelectorOpExists}}},
				corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}},
			)},
			run: true, continueRunning: true},
		{name: "required affinity by field names another node", node: node(nil),
			spec: corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{
				{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n2"}}}})},
			reason: "required node affinity does not match"},
		{name: "preferred affinity is ignored", node: node(nil),
			spec: corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 1,
					Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "gpu", Operator: corev1.NodeSelectorOpExists}}}}},
			}}},
			run: true, continueRunning: true},
		{name: "nodeName set to this node", node: node(nil), spec: corev1.PodSpec{NodeName: "n1"},
			run: true, continueRunning: true},
		{name: "nodeName set to another node", node: node(nil), spec: corev1.PodSpec{NodeName: "n2"},
			reason: `template spec.nodeName is "n2"`},
		{name: "untolerated NoSchedule stops new pods but keeps a running one",
			node: node(nil, taint("dedicated", "gpu", corev1.TaintEffectNoSchedule)),
			spec: corev1.PodSpec{}, continueRunning: true,
			reason: "taint dedicated=gpu:NoSchedule not tolerated"},
		{name: "untolerated NoExecute removes the pod",
			node: node(nil, taint("dedicated", "gpu", corev1.TaintEffectNoExecute)),
			spec: corev1.PodSpec{}, reason: "taint dedicated=gpu:NoExecute not tolerated"},
		{name: "NoExecute wins over NoSchedule",
			node: node(nil, taint("a", "", corev1.TaintEffectNoSchedule), taint("b", "", corev1.TaintEffectNoExecute)),
			spec: corev1.PodSpec{}, reason: "taint b:NoExecute not tolerated"},
		{name: "PreferNoSchedule is ignored",
			node: node(nil, taint("dedicated", "gpu", corev1.TaintEffectPreferNoSchedule)),
			spec: corev1.PodSpec{}, run: true, continueRunning: true},
		{name: "toleration by key and value",
			node: node(nil, taint("dedicated", "gpu", corev1.TaintEffectNoSchedule)),
			spec: corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}},
			run:  true, continueRunning: true},
		{name: "toleration with another value does not tolerate",
			node:            node(nil, taint("dedicated", "gpu", corev1.TaintEffectNoSchedule)),
			spec:            corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}}},
			continueRunning: true, reason: "taint dedicated=gpu:NoSchedule not tolerated"},
		{name: "toleration of every taint",
			node: node(nil, taint("a", "1", corev1.TaintEffectNoSchedule), taint("b", "2", corev1.TaintEffectNoExecute)),
			spec: corev1.PodSpec{Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}},
			run:  true, continueRunning: true},
		{name: "NoSchedule toleration does not tolerate NoExecute",
			node:   node(nil, taint("dedicated", "", corev1.TaintEffectNoExecute)),
			spec:   corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}},
			reason: "taint dedicated:NoExecute not tolerated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(tt.node, AgentSpec(&tt.spec))
			if got.ShouldRun != tt.run || got.ShouldContinueRunning != tt.continueRunning {
				t.Errorf("Evaluate() = run %t, continue %t (%q); want run %t, continue %t",
					got.ShouldRun, got.ShouldContinueRunning, got.Reason, tt.run, tt.continueRunning)
			}
			if tt.run && got.Reason != "" {
				t.Errorf("Reason = %q, want none for a node that runs the agent", got.Reason)
			}
			if !tt.run && !strings.Contains(got.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", got.Reason, tt.reason)
			}
		})
	}
}

// The default tolerations are what let an agent run through the node
// conditions DaemonSet agents must survive.
func TestEvaluateDefaultTolerations(t *testing.T) {
	tests := []struct {
		name                 string
		taint                corev1.Taint
		hostNetwork          bool
		run, continueRunning bool
	}{
		{"not-ready NoExecute", taint(corev1.TaintNodeNotReady, "", corev1.TaintEffectNoExecute), false, true, true},
		{"unreachable NoExecute", taint(corev1.TaintNodeUnreachable, "", corev1.TaintEffectNoExecute), false, true, true},
		{"not-ready NoSchedule is not a default", taint(corev1.TaintNodeNotReady, "", corev1.TaintEffectNoSchedule), false, false, true},
		{"disk-pressure", taint(corev1.TaintNodeDiskPressure, "", corev1.TaintEffectNoSchedule), false, true, true},
		{"memory-pressure", taint(corev1.TaintNodeMemoryPressure, "", corev1.TaintEffectNoSchedule), false, true, true},
		{"pid-pressure", taint(corev1.TaintNodePIDPressure, "", corev1.TaintEffectNoSchedule), false, true, true},
		{"unschedulable (cordoned)", taint(corev1.TaintNodeUnschedulable, "", corev1.TaintEffectNoSchedule), false, true, true},
		{"network-unavailable, pod network", taint(corev1.TaintNodeNetworkUnavailable, "", corev1.TaintEffectNoSchedule), false, false, true},
		{"network-unavailable, host network", taint(corev1.TaintNodeNetworkUnavailable, "", corev1.TaintEffectNoSchedule), true, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(node(nil, tt.taint), AgentSpec(&corev1.PodSpec{HostNetwork: tt.hostNetwork}))
			if got.ShouldRun != tt.run || got.ShouldContinueRunning != tt.continueRunning {
				t.Errorf("Evaluate() = run %t, continue %t (%q); want run %t, continue %t",
					got.ShouldRun, got.ShouldContinueRunning, got.Reason, tt.run, tt.continueRunning)
			}
		})
	}
}

func TestWithDefaultTolerationsReplacesLimitedNotReadyToleration(t *testing.T) {
	spec := &corev1.PodSpec{Tolerations: []corev1.Toleration{{
		Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists,
		Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300),
	}}}
	got := WithDefaultTolerations(spec)
	var notReady []corev1.Toleration
	for _, tol := range got {
		if tol.Key == corev1.TaintNodeNotReady {
			notReady = append(notReady, tol)
		}
	}
	if len(notReady) != 1 || notReady[0].TolerationSeconds != nil {
		t.Errorf("not-ready tolerations = %+v, want one without tolerationSeconds", notReady)
	}
	if spec.Tolerations[0].TolerationSeconds == nil {
		t.Error("WithDefaultTolerations modified the template's tolerations")
	}
	if len(got) != 6 {
		t.Errorf("got %d tolerations, want 6 (the defaults, the user's replaced)", len(got))
	}
}
