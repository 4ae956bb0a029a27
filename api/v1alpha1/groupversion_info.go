// Package v1alpha1 holds the NodeAgentSet API, group nodeagentset.io.
// +kubebuilder:object:generate=true
// +groupName=nodeagentset.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of these types.
	GroupVersion = schema.GroupVersion{Group: "nodeagentset.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types with a scheme. It is apimachinery's,
	// so importing this package pulls in no controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this group-version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &NodeAgentSet{}, &NodeAgentSetList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
