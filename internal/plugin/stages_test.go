package plugin

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

func TestStageLineShowsSoakLeftAndWave(t *testing.T) {
	t0 := time.Date(2027, 1, 1, 10, 0, 0, 0, time.UTC)
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Name: "agent"}}
	set.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{
		Canary: &nasv1alpha1.Canary{Soak: "5m"}, Waves: &nasv1alpha1.Waves{By: "zone", Soak: "1m"}}
	set.Status.UpdateRevision = "agent-h2"
	set.Status.Rollout = &nasv1alpha1.RolloutStatus{Revision: "agent-h2", Phase: nasv1alpha1.PhaseSoaking,
		CanaryNodes: []string{"n1"}, PhaseSince: ptr.To(metav1.NewTime(t0))}
	if got, want := stageLine(set, t0.Add(108*time.Second)), "canary soak, 3m12s left (canary [n1])"; got != want {
		t.Errorf("soak: %q, want %q", got, want)
	}
	set.Status.Rollout.Phase, set.Status.Rollout.Wave = nasv1alpha1.PhaseWaves, "b"
	if got, want := stageLine(set, t0), "wave zone=b"; got != want {
		t.Errorf("wave: %q, want %q", got, want)
	}
	set.Status.Rollout.Revision = "agent-h1"
	if got := stageLine(set, t0); got != "" {
		t.Errorf("a rollout status of another revision shows %q", got)
	}
}
