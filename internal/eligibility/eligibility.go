// Package eligibility decides, for one node and one agent pod spec, whether
// the agent should run there, as the DaemonSet controller decides it: the
// pod's nodeName, nodeSelector, required node affinity, and the node's taints
// against the pod's tolerations (the DaemonSet default tolerations included).
// It is pure: no client, no clock.
package eligibility

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	schedulingcorev1 "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// Result is the verdict for one node.
type Result struct {
	// ShouldRun: a new agent pod may be placed on the node.
	ShouldRun bool
	// ShouldContinueRunning: an agent pod already there may stay. It differs
	// from ShouldRun only for an untolerated NoSchedule taint, which stops
	// new pods but not running ones.
	ShouldContinueRunning bool
	// Reason says why ShouldRun is false, for a person; empty when it is true.
	Reason string
}

// Evaluate decides whether an agent with spec (the template's spec with the
// default tolerations already added, see WithDefaultTolerations) should run
// on node.
func Evaluate(node *corev1.Node, spec *corev1.PodSpec) Result {
	if spec.NodeName != "" && spec.NodeName != node.Name {
		return no(fmt.Sprintf("template spec.nodeName is %q", spec.NodeName))
	}
	if reason := nodeSelectorMismatch(node, spec.NodeSelector); reason != "" {
		return no(reason)
	}
	if ok, err := nodeaffinity.NewRequiredNodeAffinity(nil, spec.Affinity).Match(node); err != nil {
		return no(fmt.Sprintf("required node affinity is invalid: %v", err))
	} else if !ok {
		return no("required node affinity does not match")
	}
	if taint, found := untolerated(node, spec, corev1.TaintEffectNoExecute); found {
		return no(fmt.Sprintf("taint %s not tolerated", describeTaint(taint)))
	}
	if taint, found := untolerated(node, spec, corev1.TaintEffectNoSchedule); found {
		return Result{ShouldContinueRunning: true, Reason: fmt.Sprintf("taint %s not tolerated", describeTaint(taint))}
	}
	return Result{ShouldRun: true, ShouldContinueRunning: true}
}

func no(reason string) Result { return Result{Reason: reason} }

// nodeSelectorMismatch names the first nodeSelector entry (in key order)
// the node's labels do not satisfy.
func nodeSelectorMismatch(node *corev1.Node, selector map[string]string) string {
	// The first mismatching key, without sorting the selector: on almost
	// every node nothing mismatches, and a pass asks for every node.
	first, found := "", false
	for k, v := range selector {
		if got, ok := node.Labels[k]; (!ok || got != v) && (!found || k < first) {
			first, found = k, true
		}
	}
	if !found {
		return ""
	}
	if got, ok := node.Labels[first]; ok {
		return fmt.Sprintf("nodeSelector %s=%s does not match (node has %s=%s)", first, selector[first], first, got)
	}
	return fmt.Sprintf("nodeSelector %s=%s does not match (node has no label %s)", first, selector[first], first)
}

func untolerated(node *corev1.Node, spec *corev1.PodSpec, effect corev1.TaintEffect) (corev1.Taint, bool) {
	return schedulingcorev1.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, spec.Tolerations,
		func(t *corev1.Taint) bool { return t.Effect == effect }, true)
}

func describeTaint(t corev1.Taint) string {
	if t.Value == "" {
		return fmt.Sprintf("%s:%s", t.Key, t.Effect)
	}
	return fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect)
}

// WithDefaultTolerations returns a copy of spec's tolerations with the ones
// every DaemonSet pod gets: an agent stays through not-ready and unreachable
// (NoExecute, forever) and is placed despite pressure conditions and
// cordoning (NoSchedule); host-network agents also tolerate an unavailable
// pod network.
func WithDefaultTolerations(spec *corev1.PodSpec) []corev1.Toleration {
	tolerations := slices.Clone(spec.Tolerations)
	add := func(key string, effect corev1.TaintEffect) {
		want := corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: effect}
		// As DaemonSet does, the default replaces a user toleration of the
		// same taint, so a tolerationSeconds there cannot evict the agent.
		for i, t := range tolerations {
			if t.Key == key && t.Effect == effect && t.Operator == corev1.TolerationOpExists && t.Value == "" {
				tolerations[i] = want
				return
			}
		}
		tolerations = append(tolerations, want)
	}
	add(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute)
	add(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute)
	add(corev1.TaintNodeDiskPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodeMemoryPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodePIDPressure, corev1.TaintEffectNoSchedule)
	add(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)
	if spec.HostNetwork {
		add(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)
	}
	return tolerations
}

// AgentSpec is the pod spec eligibility is judged against: the template's
// spec plus the default tolerations. The result shares everything else with
// spec and must not be modified.
func AgentSpec(spec *corev1.PodSpec) *corev1.PodSpec {
	s := *spec
	s.Tolerations = WithDefaultTolerations(spec)
	return &s
}
