// Package kstatus tells, for tests, what generic tooling (kstatus, hence
// Flux, Argo CD, kpt) makes of a NodeAgentSet without knowing its kind.
package kstatus

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kstatusv1 "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// Of is kstatus' verdict on set; the test fails when it cannot compute one.
func Of(t testing.TB, set *nasv1alpha1.NodeAgentSet) kstatusv1.Status {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(set)
	if err != nil {
		t.Fatal(err)
	}
	res, err := kstatusv1.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		t.Fatal(err)
	}
	return res.Status
}
