package podtemplate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

func TestBuildPinsLabelsAndOwns(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "ns", UID: "u"}}
	tmpl := &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "a"}},
		Spec: corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}},
			}}},
		}}},
	}
	pod := Build(set, tmpl, "h1", "node-7")
	if NodeOf(pod) != "node-7" || Hash(pod) != "h1" || pod.Labels[nasv1alpha1.LabelSetName] != "agent" || pod.Labels["app"] != "a" {
		t.Errorf("pod = %+v", pod.ObjectMeta)
	}
	terms := pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchExpressions) != 0 {
		t.Errorf("the template's own terms were kept: %+v", terms)
	}
	if pod.Annotations[AnnotationDaemonSetPod] != "true" {
		t.Errorf("annotations = %v, want the Cluster Autoscaler's DaemonSet-pod mark", pod.Annotations)
	}
	if ref := metav1.GetControllerOf(pod); ref == nil || ref.UID != "u" || ref.Kind != "NodeAgentSet" {
		t.Errorf("controller reference = %+v", ref)
	}
	if len(tmpl.Labels) != 1 || len(tmpl.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions) != 1 {
		t.Error("Build modified the template")
	}
}

// The agent tolerates its set's startup taint (any value), as eligibility
// judges it; the template is left alone.
func TestAgentToleratesTheStartupTaint(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "ns"}}
	set.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "own", Operator: corev1.TolerationOpExists}}
	set.Spec.StartupTaint = &nasv1alpha1.StartupTaint{Key: "example.com/agent-not-ready", Effect: corev1.TaintEffectNoExecute}
	taint := corev1.Taint{Key: "example.com/agent-not-ready", Value: "anything", Effect: corev1.TaintEffectNoExecute}
	tolerates := func(ts []corev1.Toleration) bool {
		for _, tol := range ts {
			if tol.ToleratesTaint(klog.Background(), &taint, false) {
				return true
			}
		}
		return false
	}
	pod := Build(set, &set.Spec.Template, "h", "n")
	if !tolerates(pod.Spec.Tolerations) || !tolerates(AgentSpec(set).Tolerations) {
		t.Errorf("tolerations %+v do not tolerate %+v", pod.Spec.Tolerations, taint)
	}
	if len(set.Spec.Template.Spec.Tolerations) != 1 {
		t.Errorf("the template was modified: %+v", set.Spec.Template.Spec.Tolerations)
	}
	set.Spec.StartupTaint = nil
	if tolerates(Build(set, &set.Spec.Template, "h", "n").Spec.Tolerations) {
		t.Error("tolerated without spec.startupTaint")
	}
}
