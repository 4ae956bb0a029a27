package status

import (
	"encoding/json"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// A patch that omits a field leaves the server's value in place: a count
// that dropped to zero must be written as zero, and a field st leaves
// empty as null.
func TestMergePatchCarriesEveryStatusField(t *testing.T) {
	patch, err := MergePatch(nasv1alpha1.NodeAgentSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 3,
		Conditions: []metav1.Condition{{Type: "Available", Status: metav1.ConditionTrue}}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Status map[string]any `json:"status"`
	}
	if err := json.Unmarshal(patch, &got); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"numberAvailable", "numberUnavailable", "updatedNumberScheduled", "numberReady", "collisionCount", "currentRevision"} {
		v, ok := got.Status[field]
		if !ok {
			t.Errorf("%s missing from the patch %s", field, patch)
		} else if v != nil && v != float64(0) && v != "" {
			t.Errorf("%s = %v, want zero or null", field, v)
		}
	}
	if got.Status["desiredNumberScheduled"] != float64(3) {
		t.Errorf("desiredNumberScheduled = %v in %s", got.Status["desiredNumberScheduled"], patch)
	}
}

// Inside status.rollout too: a merge patch merges nested objects, so a
// wave that ended or a failure a retry cleared must be written as null,
// or the server keeps it (and the next pass reads the failure back).
func TestMergePatchClearsRolloutFieldsLeftEmpty(t *testing.T) {
	patch, err := MergePatch(nasv1alpha1.NodeAgentSetStatus{Rollout: &nasv1alpha1.RolloutStatus{Revision: "agent-h2", Phase: nasv1alpha1.PhaseComplete}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Status struct {
			Rollout map[string]any `json:"rollout"`
		} `json:"status"`
	}
	if err := json.Unmarshal(patch, &got); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"wave", "failure", "canaryNodes", "phaseSince"} {
		if v, ok := got.Status.Rollout[field]; !ok || v != nil {
			t.Errorf("rollout.%s = %v (present %t), want null in %s", field, v, ok, patch)
		}
	}
	if got.Status.Rollout["phase"] != "Complete" {
		t.Errorf("rollout.phase = %v in %s", got.Status.Rollout["phase"], patch)
	}
}
