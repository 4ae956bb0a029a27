package controller_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// TestNodeOverridesSizeEachPodAndRestartOnlyChangedOnes: pods get their
// resources from the node overrides that select their node and from the
// node's allocatable; changing one override replaces only the pods whose
// computed spec changed, the others move to the new revision in place.
func TestNodeOverridesSizeEachPodAndRestartOnlyChangedOnes(t *testing.T) {
	f := newFixture(t, "overrides")
	q := resource.MustParse
	sizes := map[string][2]string{"small": {"2", "4Gi"}, "big": {"16", "64Gi"}, "gpu": {"16", "64Gi"}}
	var nodes []string
	for _, kind := range []string{"small", "big", "gpu"} {
		nodes = append(nodes, f.nodes(1, func(n *corev1.Node) {
			n.Name = "overrides-" + kind
			if kind == "gpu" {
				n.Labels["pool"] = "gpu"
			}
			n.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: q(sizes[kind][0]), corev1.ResourceMemory: q(sizes[kind][1])}
		})...)
	}
	min, max := q("256Mi"), q("4Gi")
	gpuCPU := func(cpu string) nasv1alpha1.NodeOverride {
		return nasv1alpha1.NodeOverride{
			NodeSelector: &nasv1alpha1.LabelSelector{MatchLabels: map[string]nasv1alpha1.LabelValue{"pool": "gpu"}},
			Containers: []nasv1alpha1.ContainerOverride{{Name: "agent", ResourcesFromAllocatable: map[corev1.ResourceName]nasv1alpha1.AllocatableShare{
				corev1.ResourceCPU: {Percent: 1, Min: ptrQ(q(cpu))}}}},
		}
	}
	set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.NodeOverrides = []nasv1alpha1.NodeOverride{
			{Containers: []nasv1alpha1.ContainerOverride{{Name: "agent", ResourcesFromAllocatable: map[corev1.ResourceName]nasv1alpha1.AllocatableShare{
				corev1.ResourceMemory: {Percent: 10, Min: &min, Max: &max}}}}},
			gpuCPU("2"),
		}
	})
	f.create(set)
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	want := map[string][2]string{"overrides-small": {"", "409.6Mi"}, "overrides-big": {"", "4Gi"}, "overrides-gpu": {"2", "4Gi"}}
	check := func() (bool, string) {
		for _, p := range f.pods(set) {
			r := p.Spec.Containers[0].Resources.Requests
			w := want[podtemplate.NodeOf(&p)]
			cpu, mem, wantMem := r[corev1.ResourceCPU], r[corev1.ResourceMemory], q(w[1])
			// 10% of 4Gi is not a whole byte: rounded down.
			if (w[0] == "") != cpu.IsZero() || w[0] != "" && cpu.Cmp(q(w[0])) != 0 || mem.Cmp(wantMem) > 0 || wantMem.Value()-mem.Value() > 1 {
				return false, fmt.Sprintf("pod on %s requests %v, want cpu %q memory %q", podtemplate.NodeOf(&p), r, w[0], w[1])
			}
		}
		return true, ""
	}
	if ok, msg := check(); !ok {
		t.Fatal(msg)
	}
	f.markAllReady(set)
	before := map[string]types.UID{}
	for _, p := range f.pods(set) {
		before[podtemplate.NodeOf(&p)] = p.UID
	}
	oldHash := podtemplate.Hash(&f.pods(set)[0])

	f.update(set, func(s *nasv1alpha1.NodeAgentSet) { s.Spec.NodeOverrides[1] = gpuCPU("3") })
	want["overrides-gpu"] = [2]string{"3", "4Gi"}
	eventually(t, "every node on the new revision", func() (bool, string) {
		f.markAllReady(set)
		pods := f.pods(set)
		for _, p := range pods {
			if podtemplate.Hash(&p) == oldHash {
				return false, podtemplate.NodeOf(&p) + " still on the old revision"
			}
		}
		if len(pods) != 3 {
			return false, fmt.Sprintf("%d pods", len(pods))
		}
		return check()
	})
	for _, p := range f.pods(set) {
		kept := before[podtemplate.NodeOf(&p)] == p.UID
		if kept != (podtemplate.NodeOf(&p) != "overrides-gpu") {
			t.Errorf("pod on %s kept %v; only the gpu node's pod should have been replaced", podtemplate.NodeOf(&p), kept)
		}
	}
}

func ptrQ(q resource.Quantity) *resource.Quantity { return &q }
