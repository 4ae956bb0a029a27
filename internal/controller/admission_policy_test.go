package controller_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// overrides sets spec.nodeOverrides to one entry (every node) of the given
// container overrides.
func overrides(cs ...nasv1alpha1.ContainerOverride) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.NodeOverrides = append(s.Spec.NodeOverrides, nasv1alpha1.NodeOverride{Containers: cs})
	}
}

// share is a resourcesFromAllocatable of one resource.
func share(name corev1.ResourceName, min, max string) map[corev1.ResourceName]nasv1alpha1.AllocatableShare {
	s := nasv1alpha1.AllocatableShare{Percent: 10}
	if min != "" {
		s.Min = ptrQ(resource.MustParse(min))
	}
	if max != "" {
		s.Max = ptrQ(resource.MustParse(max))
	}
	return map[corev1.ResourceName]nasv1alpha1.AllocatableShare{name: s}
}

// applyAdmissionPolicy creates the policy and binding of config/admission,
// the binding narrowed to namespace ns so that the suite's other tests keep
// seeing the manager's own InvalidSpec reports, and removes both when the
// test ends.
func applyAdmissionPolicy(t *testing.T, ns string) {
	t.Helper()
	var policy admissionv1.ValidatingAdmissionPolicy
	var binding admissionv1.ValidatingAdmissionPolicyBinding
	for file, obj := range map[string]any{"node_overrides_policy.yaml": &policy, "node_overrides_policy_binding.yaml": &binding} {
		data, err := os.ReadFile(filepath.Join("..", "..", "config", "admission", file))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(data, obj); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	binding.Spec.MatchResources = &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
		MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}}
	for _, obj := range []client.Object{&policy, &binding} {
		if err := k8s.Create(t.Context(), obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
	}
}

// TestAdmissionPolicyRefusesNodeOverridesNamingTheField: the checks of
// spec.nodeOverrides the CRD cannot make are refused by the API server
// once config/admission is applied, naming the field; valid overrides
// (quantities as ints and strings) pass, and a set written before the
// policy can still have its metadata changed.
func TestAdmissionPolicyRefusesNodeOverridesNamingTheField(t *testing.T) {
	f := newFixture(t, "admission")
	badName := overrides(nasv1alpha1.ContainerOverride{Name: "sidecar", ResourcesFromAllocatable: share(corev1.ResourceCPU, "", "")})
	// Written before the policy: the API server takes it.
	old := f.newSet(func(s *nasv1alpha1.NodeAgentSet) { s.Name = "before-policy" }, badName)
	f.create(old)
	applyAdmissionPolicy(t, f.ns)

	// Policies are enforced once the API server has loaded and compiled
	// them: retry a bad create until it is refused.
	const want = `spec.nodeOverrides[0].containers[0].name: no container "sidecar" in spec.template.spec.containers`
	deadline := time.Now().Add(3 * time.Minute)
	for {
		probe := f.newSet(func(s *nasv1alpha1.NodeAgentSet) { s.Name = "probe" }, badName)
		err := k8s.Create(f.ctx, probe)
		if err != nil {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("refused, but the error %q does not contain %q", err, want)
			}
			break
		}
		if err := k8s.Delete(f.ctx, probe); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the API server still accepts a container name the template lacks 3 minutes after the policy was created")
		}
		time.Sleep(200 * time.Millisecond)
	}

	two := func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Template.Spec.Containers = append(s.Spec.Template.Spec.Containers, corev1.Container{Name: "exporter", Image: "registry.example/exporter:1"})
	}
	refused := []struct {
		name   string
		mutate []func(*nasv1alpha1.NodeAgentSet)
		want   string
	}{
		{"unknown container in the second entry", []func(*nasv1alpha1.NodeAgentSet){two,
			overrides(nasv1alpha1.ContainerOverride{Name: "agent"}),
			overrides(nasv1alpha1.ContainerOverride{Name: "exporter"}, nasv1alpha1.ContainerOverride{Name: "agnet"})},
			`spec.nodeOverrides[1].containers[1].name: no container "agnet" in spec.template.spec.containers`},
		{"min above max", []func(*nasv1alpha1.NodeAgentSet){overrides(
			nasv1alpha1.ContainerOverride{Name: "agent", ResourcesFromAllocatable: share(corev1.ResourceMemory, "1Gi", "512Mi")})},
			"spec.nodeOverrides[0].containers[0].resourcesFromAllocatable[memory].min: 1Gi is greater than max 512Mi"},
		{"min above max, other units", []func(*nasv1alpha1.NodeAgentSet){two, overrides(
			nasv1alpha1.ContainerOverride{Name: "agent"},
			nasv1alpha1.ContainerOverride{Name: "exporter", ResourcesFromAllocatable: share(corev1.ResourceCPU, "1500m", "1")})},
			"spec.nodeOverrides[0].containers[1].resourcesFromAllocatable[cpu].min: 1500m is greater than max 1"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			set := f.newSet(tt.mutate...)
			err := k8s.Create(f.ctx, set)
			if err == nil {
				_ = k8s.Delete(f.ctx, set) // out of the next case's way
				t.Fatal("API server accepted the set")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}

	t.Run("quantities written as integers", func(t *testing.T) {
		// A typed client writes quantities as strings; YAML users write
		// `max: 2`. The policy compares both.
		for _, c := range []struct {
			min, max any
			refused  bool
		}{{int64(3), "2", true}, {"3", int64(2), true}, {int64(3), int64(2), true}, {"500m", int64(1), false}, {int64(1), int64(1), false}} {
			set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) { s.Name = "ints" },
				overrides(nasv1alpha1.ContainerOverride{Name: "agent", ResourcesFromAllocatable: share(corev1.ResourceCPU, "1", "1")}))
			u := unstructuredSet(t, set)
			cpu := u.Object["spec"].(map[string]any)["nodeOverrides"].([]any)[0].(map[string]any)["containers"].([]any)[0].(map[string]any)["resourcesFromAllocatable"].(map[string]any)["cpu"].(map[string]any)
			cpu["min"], cpu["max"] = c.min, c.max
			err := k8s.Create(f.ctx, u)
			if err == nil {
				if err := k8s.Delete(f.ctx, u); err != nil {
					t.Fatal(err)
				}
			}
			switch {
			case c.refused && err == nil:
				t.Errorf("min %v, max %v: accepted", c.min, c.max)
			case c.refused && !strings.Contains(err.Error(), "spec.nodeOverrides[0].containers[0].resourcesFromAllocatable[cpu].min: 3 is greater than max 2"):
				t.Errorf("min %v, max %v: error %q does not name the field and values", c.min, c.max, err)
			case !c.refused && err != nil:
				t.Errorf("min %v, max %v: refused: %v", c.min, c.max, err)
			}
		}
	})

	t.Run("valid overrides are accepted, a bad update is refused", func(t *testing.T) {
		set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) { s.Name = "valid" }, two,
			overrides(nasv1alpha1.ContainerOverride{Name: "agent", ResourcesFromAllocatable: share(corev1.ResourceMemory, "512Mi", "1Gi")}),
			overrides(nasv1alpha1.ContainerOverride{Name: "exporter", ResourcesFromAllocatable: share(corev1.ResourceCPU, "1", "1000m")}))
		f.create(set)
		set.Spec.NodeOverrides[1].Containers[0].Name = "exporterr"
		err := k8s.Update(f.ctx, set)
		if err == nil || !strings.Contains(err.Error(), `spec.nodeOverrides[1].containers[0].name: no container "exporterr"`) {
			t.Errorf("update naming a missing container: want refused naming the field, got %v", err)
		}
	})

	t.Run("a set written before the policy can still be labelled", func(t *testing.T) {
		if err := k8s.Patch(f.ctx, old, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"labels":{"team":"x"}}}`))); err != nil {
			t.Errorf("metadata-only patch refused: %v", err)
		}
		err := k8s.Patch(f.ctx, old, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"minReadySeconds":5}}`)))
		if err == nil || !strings.Contains(err.Error(), "spec.nodeOverrides[0].containers[0].name") {
			t.Errorf("spec change keeping the bad override: want refused naming the field, got %v", err)
		}
	})
}

// unstructuredSet is set as an unstructured object, to write fields in
// forms a typed client does not produce.
func unstructuredSet(t *testing.T, set *nasv1alpha1.NodeAgentSet) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(set)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(nasv1alpha1.GroupVersion.WithKind("NodeAgentSet"))
	return u
}
