// Package podtemplate builds the agent pod for one node and one template
// revision, and reads back which node and revision a pod belongs to. Pure.
package podtemplate

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/eligibility"
)

// nodeNameField is the node field a pod is pinned by; the scheduler then
// binds it to exactly that node, and kwok or a kubelet runs it.
const nodeNameField = "metadata.name"

// AnnotationDaemonSetPod is the Cluster Autoscaler's mark of a DaemonSet
// pod, on every agent pod.
const AnnotationDaemonSetPod = "cluster-autoscaler.kubernetes.io/daemonset-pod"

// Build returns the pod to create for set on node from template, the
// template of the revision with the given hash.
func Build(set *nasv1alpha1.NodeAgentSet, template *corev1.PodTemplateSpec, hash, node string) *corev1.Pod {
	t := template.DeepCopy()
	labels := t.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	labels[nasv1alpha1.LabelRevisionHash] = hash
	labels[nasv1alpha1.LabelSetName] = set.Name
	annotations := t.Annotations
	if annotations == nil {
		annotations = map[string]string{}
	}
	// The Cluster Autoscaler treats a pod so marked as a DaemonSet pod: it
	// neither blocks a node's scale-down nor needs a place elsewhere.
	annotations[AnnotationDaemonSetPod] = "true"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    set.Name + "-",
			Namespace:       set.Namespace,
			Labels:          labels,
			Annotations:     annotations,
			Finalizers:      t.Finalizers,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, nasv1alpha1.GroupVersion.WithKind("NodeAgentSet"))},
		},
		Spec: t.Spec,
	}
	pod.Spec.Tolerations = tolerations(set, &pod.Spec)
	pin(&pod.Spec, node)
	if UpdatesInPlace(set) {
		// Readiness gates cannot be added to a running pod, so every pod
		// that may be updated in place carries it from its creation; pods of
		// sets that always recreate go without (and without the status
		// write that opens it).
		pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates,
			corev1.PodReadinessGate{ConditionType: nasv1alpha1.ReadinessGateInPlace})
	}
	return pod
}

// UpdatesInPlace tells whether set's rolling updates patch pods in place
// when they can (podUpdatePolicy InPlaceIfPossible).
func UpdatesInPlace(set *nasv1alpha1.NodeAgentSet) bool {
	ru := set.Spec.UpdateStrategy.RollingUpdate
	return ru != nil && ru.PodUpdatePolicy == nasv1alpha1.InPlaceIfPossiblePodUpdate
}

// AgentSpec is the pod spec eligibility judges for set: its template's
// spec with the tolerations Build adds. It shares everything else with
// the template and must not be modified.
func AgentSpec(set *nasv1alpha1.NodeAgentSet) *corev1.PodSpec {
	s := set.Spec.Template.Spec
	s.Tolerations = tolerations(set, &set.Spec.Template.Spec)
	return &s
}

// tolerations are spec's own, DaemonSet's defaults, and the set's startup
// taint: a node registered with it must get the agent that lifts it.
// (Not part of the revision, as the defaults are not: changing the startup
// taint restarts no agent.)
func tolerations(set *nasv1alpha1.NodeAgentSet, spec *corev1.PodSpec) []corev1.Toleration {
	ts := eligibility.WithDefaultTolerations(spec)
	if st := set.Spec.StartupTaint; st != nil {
		ts = append(ts, corev1.Toleration{Key: st.Key, Operator: corev1.TolerationOpExists, Effect: st.Effect})
	}
	return ts
}

// pin replaces the pod's required node affinity with one term selecting
// node by name, as DaemonSet does: eligibility has already judged the
// template's own terms for this node, and keeping them would leave the pod
// unschedulable if the node's labels changed before it was bound.
func pin(spec *corev1.PodSpec, node string) {
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchFields: []corev1.NodeSelectorRequirement{{
				Key: nodeNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{node},
			}},
		}},
	}
}

// NodeOf is the node a pod runs on, or, before the scheduler binds it, the
// node its affinity pins it to. Empty when neither says.
func NodeOf(pod *corev1.Pod) string {
	if pod.Spec.NodeName != "" {
		return pod.Spec.NodeName
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, f := range term.MatchFields {
			if f.Key == nodeNameField && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) == 1 {
				return f.Values[0]
			}
		}
	}
	return ""
}

// Hash is the template revision hash a pod was built from.
func Hash(pod *corev1.Pod) string { return pod.Labels[nasv1alpha1.LabelRevisionHash] }
