package controller_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

func rolling(mutate func(*nasv1alpha1.RollingUpdate)) func(*nasv1alpha1.NodeAgentSet) {
	return func(s *nasv1alpha1.NodeAgentSet) {
		ru := &nasv1alpha1.RollingUpdate{}
		mutate(ru)
		s.Spec.UpdateStrategy = nasv1alpha1.UpdateStrategy{Type: nasv1alpha1.RollingUpdateStrategy, RollingUpdate: ru}
	}
}

func TestInvalidSpecsAreRefusedNamingTheField(t *testing.T) {
	f := newFixture(t, "invalid")
	zero, pct0 := intstr.FromInt32(0), intstr.FromString("0%")
	tests := []struct {
		name   string
		mutate func(*nasv1alpha1.NodeAgentSet)
		want   string // substring of the API server's message
	}{
		{"empty selector", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Selector = &nasv1alpha1.LabelSelector{} },
			"spec.selector: must not be empty"},
		{"selector does not match template labels", func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.Selector.MatchLabels = map[string]nasv1alpha1.LabelValue{"app": "other"}
		}, "spec.selector: matchLabels do not match spec.template.metadata.labels"},
		{"selector expression does not match template labels", func(s *nasv1alpha1.NodeAgentSet) {
			s.Spec.Selector.MatchExpressions = []nasv1alpha1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpExists}}
		}, "spec.selector: matchExpressions do not match spec.template.metadata.labels"},
		{"restartPolicy Never", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			"spec.template.spec.restartPolicy"},
		{"activeDeadlineSeconds", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.ActiveDeadlineSeconds = ptr.To[int64](60) },
			"spec.template.spec.activeDeadlineSeconds"},
		{"maxUnavailable and maxSurge both 0", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxUnavailable, r.MaxSurge = &zero, &zero }),
			"maxUnavailable and maxSurge must not both be zero"},
		{"maxUnavailable and maxSurge both 0%", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxUnavailable, r.MaxSurge = &pct0, &pct0 }),
			"maxUnavailable and maxSurge must not both be zero"},
		{"maxUnavailable 0 with default maxSurge", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxUnavailable = &zero }),
			"maxUnavailable and maxSurge must not both be zero"},
		{"maxUnavailable over 100%", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxUnavailable = ptr.To(intstr.FromString("150%")) }),
			"spec.updateStrategy.rollingUpdate.maxUnavailable"},
		{"maxSurge not a percent", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxSurge = ptr.To(intstr.FromString("ten")) }),
			"spec.updateStrategy.rollingUpdate.maxSurge"},
		{"negative maxSurge", rolling(func(r *nasv1alpha1.RollingUpdate) { r.MaxSurge = ptr.To(intstr.FromInt32(-1)) }),
			"spec.updateStrategy.rollingUpdate.maxSurge: must not be negative"},
		{"negative partition", rolling(func(r *nasv1alpha1.RollingUpdate) { r.Partition = ptr.To(intstr.FromInt32(-2)) }),
			"spec.updateStrategy.rollingUpdate.partition: must not be negative"},
		{"unknown strategy", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.UpdateStrategy.Type = "Recreate" },
			"spec.updateStrategy.type"},
		{"negative minReadySeconds", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.MinReadySeconds = -1 },
			"spec.minReadySeconds"},
		{"negative revisionHistoryLimit", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.RevisionHistoryLimit = ptr.To[int32](-1) },
			"spec.revisionHistoryLimit"},
		{"zero progressDeadlineSeconds", func(s *nasv1alpha1.NodeAgentSet) { s.Spec.ProgressDeadlineSeconds = ptr.To[int32](0) },
			"spec.progressDeadlineSeconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := f.newSet(tt.mutate)
			set.Name = "invalid"
			err := k8s.Create(f.ctx, set)
			if err == nil {
				t.Fatalf("API server accepted an invalid NodeAgentSet")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestDefaultsAndImmutableSelector(t *testing.T) {
	f := newFixture(t, "defaults")
	set := f.set()
	got := f.get(set)
	ru := got.Spec.UpdateStrategy.RollingUpdate
	if got.Spec.UpdateStrategy.Type != nasv1alpha1.RollingUpdateStrategy || ru == nil ||
		ru.MaxUnavailable.String() != "1" || ru.MaxSurge.String() != "0" || ru.Partition.String() != "0" ||
		ptr.Deref(got.Spec.RevisionHistoryLimit, -1) != 10 {
		t.Errorf("defaults not applied: %+v revisionHistoryLimit %v", got.Spec.UpdateStrategy, got.Spec.RevisionHistoryLimit)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := f.get(set) // the controller writes status meanwhile
		got.Spec.Selector.MatchLabels["extra"] = "x"
		got.Spec.Template.Labels["extra"] = "x"
		return k8s.Update(f.ctx, got)
	})
	if err == nil || !strings.Contains(err.Error(), "spec.selector: field is immutable") {
		t.Errorf("changing the selector: got %v, want a refusal naming spec.selector", err)
	}
}
