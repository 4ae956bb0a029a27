package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// One set the manager cannot decode must not stop it serving the others.
// The schema bounds maxUnavailable to int32 now; an object stored under an
// older schema (played here by relaxing the CRD for the test) still must
// not stall the informer of every set.
func TestAnUndecodableSetStopsNoOtherSet(t *testing.T) {
	f := newFixture(t, "undecodable")
	nodes := f.nodes(2)
	relaxMaxUnavailable(t, f)

	good := f.set()
	eventually(t, "the first set's pods", f.onePerNode(good, nodes))

	bad := &unstructured.Unstructured{}
	badSet := f.newSet(func(s *nasv1alpha1.NodeAgentSet) {
		s.Name = "bad"
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromInt32(1))}
	})
	badSet.APIVersion, badSet.Kind = nasv1alpha1.GroupVersion.String(), "NodeAgentSet"
	raw, err := json.Marshal(badSet)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.UnmarshalJSON([]byte(strings.Replace(string(raw), `"maxUnavailable":1`, `"maxUnavailable":99999999999`, 1))); err != nil {
		t.Fatal(err)
	}
	bad.SetGroupVersionKind(nasv1alpha1.GroupVersion.WithKind("NodeAgentSet"))
	// The relaxed schema takes a moment to reach the API server's handler.
	eventually(t, "the API server to store the out-of-range set", func() (bool, string) {
		err := k8s.Create(f.ctx, bad.DeepCopy())
		return err == nil, fmt.Sprint(err)
	})
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), bad) })

	// Sets created and changed after it are still served.
	second := f.newSet(func(s *nasv1alpha1.NodeAgentSet) { s.Name = "second" })
	f.create(second)
	eventually(t, "the second set's pods", f.onePerNode(second, nodes))
	f.update(good, func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.Template.Spec.Containers[0].Image = "registry.example/agent:2"
	})
	eventually(t, "the first set's new generation observed", func() (bool, string) {
		got := f.get(good)
		return got.Status.ObservedGeneration == got.Generation, fmt.Sprintf("generation %d observed %d", got.Generation, got.Status.ObservedGeneration)
	})

	// The bad set says what is wrong with it, where kstatus reads it.
	eventually(t, "the bad set reported Stalled InvalidSpec", func() (bool, string) {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(bad.GroupVersionKind())
		if err := k8s.Get(f.ctx, client.ObjectKeyFromObject(bad), got); err != nil {
			return false, err.Error()
		}
		raw, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		b, _ := json.Marshal(raw)
		var conds []metav1.Condition
		_ = json.Unmarshal(b, &conds)
		c := meta.FindStatusCondition(conds, nasv1alpha1.ConditionStalled)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == "InvalidSpec" && strings.Contains(c.Message, "maxUnavailable"),
			fmt.Sprintf("conditions %+v", conds)
	})
	var pods corev1.PodList
	if err := k8s.List(f.ctx, &pods, client.InNamespace(f.ns), client.MatchingLabels{nasv1alpha1.LabelSetName: "bad"}); err != nil || len(pods.Items) != 0 {
		t.Errorf("the undecodable set has %d pods (err %v)", len(pods.Items), err)
	}
}

// relaxMaxUnavailable drops every check on maxUnavailable from the CRD for
// the test's duration, as an older schema without bounds would have had.
func relaxMaxUnavailable(t *testing.T, f *fixture) {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := k8s.Get(f.ctx, client.ObjectKey{Name: "nodeagentsets.nodeagentset.io"}, crd); err != nil {
		t.Fatal(err)
	}
	original := crd.Spec.DeepCopy()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(f.ctx, client.ObjectKey{Name: crd.Name}, crd); err != nil {
			return err
		}
		ru := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["updateStrategy"].Properties["rollingUpdate"]
		ru.Properties["maxUnavailable"] = apiextensionsv1.JSONSchemaProps{XIntOrString: true}
		var rules apiextensionsv1.ValidationRules
		for _, r := range ru.XValidations {
			if !strings.Contains(r.Rule, "maxUnavailable") {
				rules = append(rules, r)
			}
		}
		ru.XValidations = rules
		crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["updateStrategy"].Properties["rollingUpdate"] = ru
		return k8s.Update(f.ctx, crd)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// t.Context() is over once cleanups run.
		ctx := context.Background()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := k8s.Get(ctx, client.ObjectKey{Name: crd.Name}, crd); err != nil {
				return err
			}
			crd.Spec = *original
			return k8s.Update(ctx, crd)
		})
		if err != nil {
			t.Fatalf("restoring the CRD: %v", err)
		}
		// The next test must meet the real schema again: wait until a
		// negative maxUnavailable, which only the relaxed one takes, is
		// refused.
		probe := f.newSet(func(s *nasv1alpha1.NodeAgentSet) {
			s.Name = "probe"
			s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{MaxUnavailable: ptr.To(intstr.FromInt32(-1))}
		})
		eventually(t, "the restored schema to be served", func() (bool, string) {
			err := k8s.Create(ctx, probe.DeepCopy(), client.DryRunAll)
			return err != nil, fmt.Sprint(err)
		})
	})
}
