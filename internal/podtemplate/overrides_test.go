package podtemplate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

func TestForNodeAppliesOverridesInOrder(t *testing.T) {
	q := resource.MustParse
	tmpl := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent",
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: q("1Gi")}}}}}}
	min, max := q("100Mi"), q("2Gi")
	overrides := []nasv1alpha1.NodeOverride{
		{Containers: []nasv1alpha1.ContainerOverride{{Name: "agent", ResourcesFromAllocatable: map[corev1.ResourceName]nasv1alpha1.AllocatableShare{
			corev1.ResourceMemory: {Percent: 10, Min: &min, Max: &max},
			corev1.ResourceCPU:    {Percent: 5},
		}}}},
		{NodeSelector: &nasv1alpha1.LabelSelector{MatchLabels: map[string]nasv1alpha1.LabelValue{"gpu": "yes"}},
			Containers: []nasv1alpha1.ContainerOverride{{Name: "agent", Resources: &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: q("3")}}}}},
	}
	node := func(mem, cpu string, labels map[string]string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceMemory: q(mem), corev1.ResourceCPU: q(cpu)}}}
	}
	for _, tc := range []struct {
		name             string
		node             *corev1.Node
		memReq, memLimit string
		cpuReq           string
	}{
		{"small node: min", node("512Mi", "2", nil), "100Mi", "100Mi", "100m"},
		{"mid node: percent", node("8Gi", "16", nil), "858993459", "858993459", "800m"},
		{"big node: max", node("64Gi", "64", nil), "2Gi", "2Gi", "3200m"},
		// The second entry replaces the resources whole (no limit any
		// more, cpu 3), after the first set memory from allocatable.
		{"gpu node: later entry wins", node("8Gi", "16", map[string]string{"gpu": "yes"}), "", "", "3"},
	} {
		got, err := ForNode(tmpl, overrides, tc.node)
		if err != nil {
			t.Fatal(err)
		}
		r := got.Spec.Containers[0].Resources
		check := func(what string, l corev1.ResourceList, name corev1.ResourceName, want string) {
			v, ok := l[name]
			if want == "" && ok || want != "" && (!ok || v.Cmp(q(want)) != 0) {
				t.Errorf("%s: %s = %v (set %v), want %q", tc.name, what, v.String(), ok, want)
			}
		}
		check("memory request", r.Requests, corev1.ResourceMemory, tc.memReq)
		check("memory limit", r.Limits, corev1.ResourceMemory, tc.memLimit)
		check("cpu request", r.Requests, corev1.ResourceCPU, tc.cpuReq)
		check("cpu limit", r.Limits, corev1.ResourceCPU, "")
	}
	if l := tmpl.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]; l.Cmp(q("1Gi")) != 0 || tmpl.Spec.Containers[0].Resources.Requests != nil {
		t.Error("ForNode modified the template")
	}
}

func TestCheckOverridesRefusesWhatTheCRDCannot(t *testing.T) {
	min, max := resource.MustParse("2"), resource.MustParse("1")
	spec := &nasv1alpha1.NodeAgentSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent"}}}}}
	spec.NodeOverrides = []nasv1alpha1.NodeOverride{{Containers: []nasv1alpha1.ContainerOverride{{Name: "other"}}}}
	if err := CheckOverrides(spec); err == nil {
		t.Error("an unknown container name was accepted")
	}
	spec.NodeOverrides = []nasv1alpha1.NodeOverride{{Containers: []nasv1alpha1.ContainerOverride{{Name: "agent",
		ResourcesFromAllocatable: map[corev1.ResourceName]nasv1alpha1.AllocatableShare{corev1.ResourceCPU: {Percent: 5, Min: &min, Max: &max}}}}}}
	if err := CheckOverrides(spec); err == nil {
		t.Error("min above max was accepted")
	}
}
