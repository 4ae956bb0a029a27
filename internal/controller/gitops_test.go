package controller_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/status"
	"github.com/nodeagentset/nodeagentset/test/gitops"
)

var updateGitOps = flag.Bool("update-gitops", false, "rewrite test/gitops/testdata from the live states")

// The states GitOps tools must tell apart, reached by the running
// controller: Argo CD's Lua check and kstatus give the answers
// gitops.Want names, and the fixtures in test/gitops/testdata (which the
// unit tests there check without a cluster) still show the same
// conditions. -update-gitops rewrites them.
func TestGitOpsHealthOfLiveStates(t *testing.T) {
	f := newFixture(t, "gitops")
	nodes := f.nodes(2)
	set := f.set()
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	f.markAllReady(set)
	capture(t, f, set, "healthy", condition(nasv1alpha1.ConditionReconciling, metav1.ConditionFalse, "Complete"))

	f.update(set, func(s *nasv1alpha1.NodeAgentSet) {
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{Paused: true}
		s.Spec.Template.Spec.Containers[0].Image = "registry.example/agent:2"
	})
	capture(t, f, set, "paused", condition(nasv1alpha1.ConditionReconciling, metav1.ConditionFalse, "Paused"))

	f.update(set, func(s *nasv1alpha1.NodeAgentSet) { s.Spec.UpdateStrategy.RollingUpdate.Paused = false })
	// Once the first old agent is gone and its replacement is not Ready
	// (it never is here: no kubelet), which holds until the next step.
	capture(t, f, set, "progressing", func(c []metav1.Condition) bool {
		return condition(nasv1alpha1.ConditionReconciling, metav1.ConditionTrue, "Updating")(c) &&
			condition(nasv1alpha1.ConditionAvailable, metav1.ConditionFalse, "NodesUnavailable")(c)
	})

	// No new agent becomes Ready (no kubelet plays it): no progress.
	f.update(set, func(s *nasv1alpha1.NodeAgentSet) { s.Spec.ProgressDeadlineSeconds = ptr.To[int32](1) })
	capture(t, f, set, "degraded-deadline", condition(nasv1alpha1.ConditionStalled, metav1.ConditionTrue, "ProgressDeadlineExceeded"))

	// Suspended: every agent gone, none placed.
	f.update(set, func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Suspend = true })
	capture(t, f, set, "suspended", func(c []metav1.Condition) bool {
		return condition(nasv1alpha1.ConditionSuspended, metav1.ConditionTrue, "Suspended")(c) &&
			condition(nasv1alpha1.ConditionReconciling, metav1.ConditionFalse, "Suspended")(c)
	})

	// A staged rollout whose canary crash-loops: Stalled HealthCheckFailed.
	staged := f.newSet(func(s *nasv1alpha1.NodeAgentSet) {
		s.Name = "staged"
		s.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{Canary: &nasv1alpha1.Canary{},
			Health: &nasv1alpha1.Health{MaxRestarts: ptr.To[int32](2)}}
	})
	f.create(staged)
	f.settledOn(staged, len(nodes))
	f.update(staged, image("registry.example/agent:2-broken"))
	var canary corev1.Pod
	eventually(t, "the canary agent created", func() (bool, string) {
		for _, p := range f.pods(staged) {
			if p.Spec.Containers[0].Image == "registry.example/agent:2-broken" {
				canary = p
				return true, ""
			}
		}
		return false, describe(byNode(f.pods(staged)))
	})
	f.crashLoop(&canary, 3)
	capture(t, f, staged, "health-check-failed", condition(nasv1alpha1.ConditionStalled, metav1.ConditionTrue, status.ReasonHealthCheckFailed))

	// A pass that fails before it can plan: the API server refuses the
	// revision (see TestPassFailuresAreReportedOnTheSet).
	failing := f.newSet(func(s *nasv1alpha1.NodeAgentSet) {
		s.Name = "failing"
		s.Spec.Template.Labels["not a key!"] = "x"
	})
	f.create(failing)
	capture(t, f, failing, "reconcile-failure", condition(nasv1alpha1.ConditionReconcileFailure, metav1.ConditionTrue, "RevisionSyncFailed"))
}

// condition: the set has condition kind with this status and reason.
func condition(kind string, status metav1.ConditionStatus, reason string) func([]metav1.Condition) bool {
	return func(conds []metav1.Condition) bool {
		c := meta.FindStatusCondition(conds, kind)
		return c != nil && c.Status == status && c.Reason == reason
	}
}

// capture waits for the set to reach state (reached), then checks the
// GitOps answers on the live object and compares it with, or writes, the
// fixture.
func capture(t *testing.T, f *fixture, set *nasv1alpha1.NodeAgentSet, state string, reached func([]metav1.Condition) bool) {
	t.Helper()
	var live map[string]any
	eventually(t, "state "+state, func() (bool, string) {
		got := f.get(set)
		if got.Status.ObservedGeneration != got.Generation && state != "reconcile-failure" {
			return false, fmt.Sprintf("generation %d observed %d", got.Generation, got.Status.ObservedGeneration)
		}
		if !reached(got.Status.Conditions) {
			return false, fmt.Sprintf("%+v", got.Status.Conditions)
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(nasv1alpha1.GroupVersion.WithKind("NodeAgentSet"))
		if err := k8s.Get(f.ctx, client.ObjectKeyFromObject(set), u); err != nil {
			return false, err.Error()
		}
		live = u.Object
		return true, ""
	})
	want := gitops.Want[state]
	got, err := gitops.Evaluate(live)
	if err != nil {
		t.Fatal(err)
	}
	if got.Argo != want.Argo || got.KStatus != want.KStatus {
		t.Errorf("%s: Argo CD %s (%q), kstatus %s; want %s and %s", state, got.Argo, got.ArgoMessage, got.KStatus, want.Argo, want.KStatus)
	}
	normal := gitops.Normalize(live)
	if *updateGitOps {
		raw, err := json.MarshalIndent(normal, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(gitops.FixturePath(state), append(raw, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	stored, err := gitops.Load(state)
	if err != nil {
		t.Fatalf("%v (run with -update-gitops to capture it)", err)
	}
	if a, b := gitops.Signature(normal), gitops.Signature(stored); !slices.Equal(a, b) {
		t.Errorf("%s: live conditions %q, fixture %q; rerun with -update-gitops if the change is meant", state, a, b)
	}
}
