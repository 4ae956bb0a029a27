package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	kstatusv1 "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// suspend: spec.suspend on every node of the env removes every agent and
// places none, keeps the history, and resuming fans out again; kstatus
// answers InProgress while agents go or come and Current once suspended
// with no pod left, and once resumed and converged.
func (e *rolloutEnv) suspend(t *testing.T) {
	set := e.deploy(t, "suspend", nil)
	e.update(t, set, image("registry.example/agent:2"))
	e.waitFor(t, nil, "the second revision rolled out", e.complete(t, set))
	revisions := func() int {
		var list appsv1.ControllerRevisionList
		if err := e.k.List(t.Context(), &list, client.InNamespace(set.Namespace)); err != nil {
			t.Fatal(err)
		}
		return len(list.Items)
	}
	before := revisions()

	started := time.Now()
	e.update(t, set, func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Suspend = true })
	sawInProgress := false
	e.waitFor(t, nil, "every agent gone and the set settled as suspended", func() (bool, string) {
		got := e.get(t, set)
		ks := kstatus(t, got)
		sawInProgress = sawInProgress || (got.Status.ObservedGeneration == got.Generation && ks == kstatusv1.InProgressStatus)
		pods, err := setPods(t.Context(), e.k, set)
		if err != nil {
			return false, err.Error()
		}
		st := got.Status
		return len(pods) == 0 && ks == kstatusv1.CurrentStatus && st.ObservedGeneration == got.Generation &&
				meta.IsStatusConditionTrue(st.Conditions, nasv1alpha1.ConditionSuspended) &&
				st.DesiredNumberScheduled == 0 && st.CurrentNumberScheduled == 0 && st.NumberAvailable == 0 &&
				st.NumberMisscheduled == 0 && st.UpdatedNumberScheduled == 0,
			fmt.Sprintf("%d pods left, kstatus %s, status %+v", len(pods), ks, st)
	})
	t.Logf("suspended: %d agents removed in %v", len(e.nodes), time.Since(started).Round(time.Millisecond))
	if !sawInProgress {
		t.Log("kstatus never seen InProgress while agents were removed (the removal may have been quicker than a poll)")
	}
	if got := revisions(); got != before {
		t.Errorf("ControllerRevisions: %d before suspending, %d after: history must be kept", before, got)
	}
	out := mustPlugin(t, e.c, "Suspended", "status", set.Name, "-n", set.Namespace)
	if !strings.Contains(out, "the set is suspended") {
		t.Errorf("plugin status does not give the nodes' reason:\n%s", out)
	}

	started = time.Now()
	e.update(t, set, func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Suspend = false })
	sawInProgress = false
	e.waitFor(t, nil, "agents back on every node", func() (bool, string) {
		got := e.get(t, set)
		ks := kstatus(t, got)
		sawInProgress = sawInProgress || (got.Status.ObservedGeneration == got.Generation && ks == kstatusv1.InProgressStatus)
		st := got.Status
		return ks == kstatusv1.CurrentStatus && st.ObservedGeneration == got.Generation &&
				st.NumberAvailable == int32(len(e.nodes)) && meta.IsStatusConditionFalse(st.Conditions, nasv1alpha1.ConditionSuspended),
			fmt.Sprintf("kstatus %s, status %+v", ks, st)
	})
	t.Logf("resumed: %d agents available in %v", len(e.nodes), time.Since(started).Round(time.Millisecond))
	if !sawInProgress {
		t.Error("kstatus never said InProgress while the agents came back")
	}
	eligible := map[string]bool{}
	for _, n := range e.nodes {
		eligible[n] = true
	}
	if err := waitConverged(t.Context(), e.k, set, eligible); err != nil {
		t.Fatal(err)
	}
	if got := revisions(); got != before {
		t.Errorf("ControllerRevisions: %d before suspending, %d after resuming", before, got)
	}
}
