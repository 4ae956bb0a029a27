package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LabelSelector is metav1.LabelSelector, field for field, with size bounds.
// The bounds are what let the API server afford (by its static cost
// estimate) the CEL rule that checks the selector against the template's
// labels; unbounded, the estimate is over the limit a hundredfold.
// +structType=atomic
type LabelSelector struct {
	// MatchLabels: every key must have this value.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	MatchLabels map[string]LabelValue `json:"matchLabels,omitempty"`
	// MatchExpressions: every requirement must hold.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelValue is a label value (at most 63 characters, as the API server
// requires of labels anyway).
// +kubebuilder:validation:MaxLength=63
type LabelValue string

// LabelSelectorRequirement is metav1.LabelSelectorRequirement with bounds.
type LabelSelectorRequirement struct {
	// Key is the label key.
	// +kubebuilder:validation:MaxLength=317
	Key string `json:"key"`
	// Operator is In, NotIn, Exists or DoesNotExist.
	// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist
	Operator metav1.LabelSelectorOperator `json:"operator"`
	// Values for In and NotIn; empty for Exists and DoesNotExist.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +listType=atomic
	Values []string `json:"values,omitempty"`
}

// AsMeta converts the selector to the apimachinery type.
func (s *LabelSelector) AsMeta() *metav1.LabelSelector {
	if s == nil {
		return nil
	}
	out := &metav1.LabelSelector{}
	if s.MatchLabels != nil {
		out.MatchLabels = make(map[string]string, len(s.MatchLabels))
		for k, v := range s.MatchLabels {
			out.MatchLabels[k] = string(v)
		}
	}
	for _, r := range s.MatchExpressions {
		out.MatchExpressions = append(out.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: r.Key, Operator: r.Operator, Values: append([]string(nil), r.Values...),
		})
	}
	return out
}

// SelectorFromMeta converts an apimachinery selector (from a DaemonSet, say).
func SelectorFromMeta(s *metav1.LabelSelector) *LabelSelector {
	if s == nil {
		return nil
	}
	out := &LabelSelector{}
	if s.MatchLabels != nil {
		out.MatchLabels = make(map[string]LabelValue, len(s.MatchLabels))
		for k, v := range s.MatchLabels {
			out.MatchLabels[k] = LabelValue(v)
		}
	}
	for _, r := range s.MatchExpressions {
		out.MatchExpressions = append(out.MatchExpressions, LabelSelectorRequirement{
			Key: r.Key, Operator: r.Operator, Values: append([]string(nil), r.Values...),
		})
	}
	return out
}
