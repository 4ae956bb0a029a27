package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LabelSelector is metav1.LabelSelector, field for field, with size bounds
// and the checks apps/v1 makes of a selector (label keys and values, the
// operator, values present for In and NotIn only), so that the API server
// refuses what the controller could only read as "matches nothing".
// The bounds are what let the API server afford (by its static cost
// estimate) the CEL rule that checks the selector against the template's
// labels; unbounded, the estimate is over the limit a hundredfold.
// +structType=atomic
type LabelSelector struct {
	// MatchLabels: every key must have this value.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && (!k.contains('/') || k.indexOf('/') <= 253))",message="every key must be a valid label key: an optional DNS subdomain prefix (at most 253 characters) and '/', then a name of at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
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
// +kubebuilder:validation:XValidation:rule="self.matches('^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$')",message="must be a valid label value: at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
type LabelValue string

// LabelSelectorRequirement is metav1.LabelSelectorRequirement with bounds.
// +kubebuilder:validation:XValidation:rule="self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",message="must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",fieldPath=".values"
type LabelSelectorRequirement struct {
	// Key is the label key.
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && (!self.contains('/') || self.indexOf('/') <= 253)",message="must be a valid label key: an optional DNS subdomain prefix (at most 253 characters) and '/', then a name of at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
	Key string `json:"key"`
	// Operator is In, NotIn, Exists or DoesNotExist.
	// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist
	Operator metav1.LabelSelectorOperator `json:"operator"`
	// Values for In and NotIn; empty for Exists and DoesNotExist.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.all(v, v.matches('^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'))",message="every value must be a valid label value: at most 63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
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
