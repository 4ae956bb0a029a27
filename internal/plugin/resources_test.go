package plugin

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// status --node shows what nodeOverrides make of each node: a selected
// node gets its override, and resourcesFromAllocatable follows the node's
// size within its bounds.
func TestResourcesApplyTheOverridesOfTheNode(t *testing.T) {
	q := resource.MustParse
	min, max := q("100m"), q("1")
	set := &nasv1alpha1.NodeAgentSet{Spec: nasv1alpha1.NodeAgentSetSpec{
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "agent", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: q("256Mi")}}},
			{Name: "sidecar"},
		}}},
		NodeOverrides: []nasv1alpha1.NodeOverride{
			{Containers: []nasv1alpha1.ContainerOverride{{Name: "agent", ResourcesFromAllocatable: map[corev1.ResourceName]nasv1alpha1.AllocatableShare{
				corev1.ResourceCPU: {Percent: 5, Min: &min, Max: &max}}}}},
			{NodeSelector: &nasv1alpha1.LabelSelector{MatchLabels: map[string]nasv1alpha1.LabelValue{"pool": "big"}},
				Containers: []nasv1alpha1.ContainerOverride{{Name: "sidecar", Resources: &corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceMemory: q("1Gi")}}}}},
		},
	}}
	node := func(name, cpu string, labels map[string]string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceCPU: q(cpu)}}}
	}
	for _, tc := range []struct {
		node *corev1.Node
		want string
	}{
		{node("small", "1", nil), "agent       cpu=100m   memory=256Mi\nsidecar     -          -\n"},
		{node("mid", "8", nil), "agent       cpu=400m   memory=256Mi\nsidecar     -          -\n"},
		{node("big", "64", map[string]string{"pool": "big"}), "agent       cpu=1        memory=256Mi\nsidecar     memory=1Gi   -\n"},
	} {
		got, err := Resources(set, tc.node)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if err := RenderResources(&out, got); err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(out.String(), "\n", 2)
		if !strings.HasPrefix(lines[0], "CONTAINER") || lines[1] != tc.want {
			t.Errorf("node %s:\n%s\nwant rows\n%s", tc.node.Name, out.String(), tc.want)
		}
	}
}
