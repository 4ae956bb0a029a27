package controller_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// staged sets canary, waves and health on a rolling update.
func staged(c *nasv1alpha1.Canary, w *nasv1alpha1.Waves, h *nasv1alpha1.Health) func(*nasv1alpha1.NodeAgentSet) {
	return rolling(func(ru *nasv1alpha1.RollingUpdate) { ru.Canary, ru.Waves, ru.Health = c, w, h })
}

func TestStagedRolloutFieldsAreValidatedByTheAPIServer(t *testing.T) {
	f := newFixture(t, "stagedinvalid")
	d := func(s string) *nasv1alpha1.Duration { return ptr.To(nasv1alpha1.Duration(s)) }
	const duration, labelKey = "must be a non-negative Go duration", "must be a valid label key"
	tests := []struct {
		name   string
		mutate func(*nasv1alpha1.NodeAgentSet)
		want   string
	}{
		{"negative canary soak", staged(&nasv1alpha1.Canary{Soak: "-1m"}, nil, nil), "spec.updateStrategy.rollingUpdate.canary.soak: Invalid value"},
		{"canary soak not a duration", staged(&nasv1alpha1.Canary{Soak: "ten minutes"}, nil, nil), duration},
		{"canary soak without a unit", staged(&nasv1alpha1.Canary{Soak: "10"}, nil, nil), duration},
		{"wave soak not a duration", staged(nil, &nasv1alpha1.Waves{By: "zone", Soak: "1d"}, nil), "spec.updateStrategy.rollingUpdate.waves.soak"},
		{"negative maxUnavailableTime", staged(nil, nil, &nasv1alpha1.Health{MaxUnavailableTime: d("-5s")}),
			"spec.updateStrategy.rollingUpdate.health.maxUnavailableTime"},
		{"canary nodes over 100%", staged(&nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromString("101%"))}, nil, nil),
			"spec.updateStrategy.rollingUpdate.canary.nodes: " + intOrPercent},
		{"negative canary nodes", staged(&nasv1alpha1.Canary{Nodes: ptr.To(intstr.FromInt32(-1))}, nil, nil),
			"spec.updateStrategy.rollingUpdate.canary.nodes: " + intOrPercent},
		{"spreadBy not a label key", staged(&nasv1alpha1.Canary{SpreadBy: "bad key!"}, nil, nil), "spec.updateStrategy.rollingUpdate.canary.spreadBy"},
		{"waves.by not a label key", staged(nil, &nasv1alpha1.Waves{By: "-zone"}, nil), labelKey},
		{"waves.by missing", staged(nil, &nasv1alpha1.Waves{}, nil), "spec.updateStrategy.rollingUpdate.waves.by"},
		{"negative maxRestarts", staged(nil, nil, &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](-1)}), "spec.updateStrategy.rollingUpdate.health.maxRestarts"},
		{"unknown failureAction", staged(nil, nil, &nasv1alpha1.Health{FailureAction: "Rollback"}), "spec.updateStrategy.rollingUpdate.health.failureAction"},
		{"unknown promotion", staged(&nasv1alpha1.Canary{Promotion: "Later"}, nil, nil), "spec.updateStrategy.rollingUpdate.canary.promotion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) { s.Name = "invalid" }, tt.mutate)
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

func TestStagedRolloutDefaultsAndAcceptedValues(t *testing.T) {
	f := newFixture(t, "stageddefaults")
	for i, c := range []*nasv1alpha1.Canary{
		{Soak: "1h30m", Nodes: ptr.To(intstr.FromString("100%")), SpreadBy: "topology.kubernetes.io/zone"},
		{Soak: "0", Nodes: ptr.To(intstr.FromInt32(0))},
		{Soak: "1.5s", Nodes: ptr.To(intstr.FromString("0%"))},
	} {
		set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) { s.Name = "accepted-" + string(rune('a'+i)) }, staged(c, nil, nil))
		if err := k8s.Create(f.ctx, set); err != nil {
			t.Errorf("canary %+v refused: %v", c, err)
		}
	}
	set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) { s.Name = "defaults" },
		staged(&nasv1alpha1.Canary{}, &nasv1alpha1.Waves{By: "zone"}, &nasv1alpha1.Health{}))
	if err := k8s.Create(f.ctx, set); err != nil {
		t.Fatal(err)
	}
	ru := f.get(set).Spec.UpdateStrategy.RollingUpdate
	if c := ru.Canary; c.Nodes.String() != "1" || c.Soak != "0s" || c.Promotion != nasv1alpha1.PromotionAuto {
		t.Errorf("canary defaults: %+v", c)
	}
	if ru.Waves.Soak != "0s" {
		t.Errorf("waves soak default %q, want 0s", ru.Waves.Soak)
	}
	if h := ru.Health; !ptr.Deref(h.NodeNotReady, false) || h.FailureAction != nasv1alpha1.FailurePause || h.MaxRestarts != nil {
		t.Errorf("health defaults: %+v", h)
	}
}
