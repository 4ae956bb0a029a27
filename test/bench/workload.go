package bench

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

const (
	// namespace holds the workload under test and nothing else, so the
	// tracker's pods are the agents.
	namespace = "bench"
	// setName names the DaemonSet and the NodeAgentSet alike.
	setName = "agent"
	// unrelatedNamespace holds the pods of the busy-cluster phase.
	unrelatedNamespace = "unrelated"
)

// agentImage is the agent image of a template version: 1 at creation, 2 after
// the rolling update.
func agentImage(version int) string { return fmt.Sprintf("registry.example/agent:%d", version) }

var agentLabels = map[string]string{"app": "agent"}

// template is the one pod template both controllers get, so their pods are
// the same apart from what each controller adds.
func template(version int) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: agentLabels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "agent", Image: agentImage(version)}},
		},
	}
}

// tenPercent is the rolling update's maxUnavailable for both controllers.
var tenPercent = intstr.FromString("10%")

func daemonSet() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: setName, Namespace: namespace},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: agentLabels},
			Template: template(1),
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &tenPercent},
			},
		},
	}
}

func nodeAgentSet() *nasv1alpha1.NodeAgentSet {
	return &nasv1alpha1.NodeAgentSet{
		ObjectMeta: metav1.ObjectMeta{Name: setName, Namespace: namespace},
		Spec: nasv1alpha1.NodeAgentSetSpec{
			Selector: nasv1alpha1.SelectorFromMeta(&metav1.LabelSelector{MatchLabels: agentLabels}),
			Template: template(1),
			UpdateStrategy: nasv1alpha1.UpdateStrategy{
				Type:          nasv1alpha1.RollingUpdateStrategy,
				RollingUpdate: &nasv1alpha1.RollingUpdate{MaxUnavailable: &tenPercent},
			},
		},
	}
}

// floorWorkers is how many creates the floor client has in flight.
const floorWorkers = 32

// pinnedPod is what the floor client creates: the agent pod bound to node
// the way both controllers bind theirs, by a required node affinity on the
// node's name, so the scheduler's part of the work is the same.
func pinnedPod(node string) *corev1.Pod {
	t := template(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "floor-" + node, Namespace: namespace, Labels: t.Labels},
		Spec: func() corev1.PodSpec {
			s := t.Spec
			s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{
						Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
					}}}},
				},
			}}
			return s
		}(),
	}
}

// unrelatedPod is one of the pods of the busy-cluster phase: bound to a node
// directly, so the scheduler skips it and kwok runs it, and labelled so no
// agent selector matches.
func unrelatedPod(i int, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("web-%05d", i), Namespace: unrelatedNamespace,
			Labels: map[string]string{"app": "web"},
		},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{{Name: "web", Image: "registry.example/web:1"}},
		},
	}
}
