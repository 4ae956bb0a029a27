package status

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/eligibility"
	"github.com/nodeagentset/nodeagentset/internal/nodehealth"
	"github.com/nodeagentset/nodeagentset/internal/plan"
)

var now = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func readyPod(hash string, readyFor time.Duration) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{nasv1alpha1.LabelRevisionHash: hash}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{
			Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-readyFor)),
		}}},
	}
}

// node is a node as the planner leaves it: pods of revision "new" or "h"
// (the update revisions of these tests) in New, others in Old.
func node(name string, run, keep bool, pods ...*corev1.Pod) plan.NodeState {
	st := plan.NodeState{Name: name, Exists: true, Eligibility: eligibility.Result{ShouldRun: run, ShouldContinueRunning: keep}, Active: pods}
	for _, p := range pods {
		if h := p.Labels[nasv1alpha1.LabelRevisionHash]; h == "new" || h == "h" {
			st.New = p
		} else {
			st.Old = p
		}
	}
	return st
}

func TestCountFollowsDaemonSet(t *testing.T) {
	p := plan.Plan{Nodes: []plan.NodeState{
		node("ready-new", true, true, readyPod("new", time.Minute)),
		node("ready-old", true, true, readyPod("old", time.Minute)),
		node("ready-not-yet-available", true, true, readyPod("new", 5*time.Second)),
		node("empty", true, true),
		node("tainted-noschedule-with-pod", false, true, readyPod("new", time.Minute)),
		node("ineligible-empty", false, false),
	}}
	c := Count(p, "new", 10*time.Second, now)
	want := Counts{Desired: 4, Current: 3, Misscheduled: 1, Ready: 3, Available: 2, Updated: 2, Settled: 1, Outdated: 1, Pods: 4, NextAvailable: now.Add(5 * time.Second)}
	if c != want {
		t.Errorf("Count = %+v\nwant    %+v", c, want)
	}
}

func TestConditions(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
	converged := plan.Plan{Nodes: []plan.NodeState{node("a", true, true, readyPod("h", time.Minute))}}
	st, _ := Compute(Input{Set: set, Plan: converged, UpdateHash: "h", UpdateRevision: "agent-h", Now: now})
	if !meta.IsStatusConditionTrue(st.Conditions, nasv1alpha1.ConditionAvailable) ||
		!meta.IsStatusConditionFalse(st.Conditions, nasv1alpha1.ConditionReconciling) ||
		st.CurrentRevision != "agent-h" || st.ObservedGeneration != 3 {
		t.Errorf("converged status = %+v", st)
	}

	set.Status = st
	rolling := plan.Plan{Nodes: []plan.NodeState{node("a", true, true, readyPod("h", time.Minute))},
		Creates: []plan.Create{{Node: "b"}}}
	st, _ = Compute(Input{Set: set, Plan: rolling, UpdateHash: "h2", UpdateRevision: "agent-h2", Now: now,
		PodFailure: errors.New("pods is forbidden: exceeded quota")})
	if !meta.IsStatusConditionTrue(st.Conditions, nasv1alpha1.ConditionReconciling) || st.CurrentRevision != "agent-h" {
		t.Errorf("rolling status = %+v", st)
	}
	if c := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionPodFailure); c == nil ||
		c.Status != metav1.ConditionTrue || c.Message != "pods is forbidden: exceeded quota" {
		t.Errorf("PodFailure condition = %+v", c)
	}
}

func TestProgressDeadline(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Generation: 2}}
	set.Spec.ProgressDeadlineSeconds = ptrTo(int32(600))
	stuck := plan.Plan{Nodes: []plan.NodeState{node("a", true, true, readyPod("old", time.Hour)), node("b", true, true)},
		Creates: []plan.Create{{Node: "b"}}}
	in := Input{Set: set, Plan: stuck, UpdateHash: "h", UpdateRevision: "agent-h", Now: now}

	st, wake := Compute(in)
	if c := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionProgressing); c == nil || c.Reason != "RollingOut" {
		t.Fatalf("Progressing at the start = %+v", c)
	}
	if !wake.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("Compute wakes at %v, want the progress deadline 10 minutes on", wake)
	}
	if got := ProgressDeadline(set, st); !got.Equal(now.Add(10 * time.Minute)) {
		t.Errorf("ProgressDeadline = %v, want 10 minutes on", got)
	}

	set.Status = st
	in.Now = now.Add(9 * time.Minute)
	if st, _ = Compute(in); meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionStalled) != nil {
		t.Fatal("stalled before the deadline")
	}
	set.Status = st
	in.Now = now.Add(10 * time.Minute)
	st, _ = Compute(in)
	if !meta.IsStatusConditionTrue(st.Conditions, nasv1alpha1.ConditionStalled) ||
		meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionProgressing).Reason != "ProgressDeadlineExceeded" {
		t.Fatalf("no progress for the deadline: conditions %+v", st.Conditions)
	}

	// Progress (the new pod becomes available) clears the failure.
	set.Status = st
	in.Now = now.Add(11 * time.Minute)
	in.Plan = plan.Plan{Nodes: []plan.NodeState{node("a", true, true, readyPod("old", time.Hour)), node("b", true, true, readyPod("h", time.Minute))}}
	st, _ = Compute(in)
	if meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionStalled) != nil ||
		meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionProgressing).Reason != "RollingOut" {
		t.Fatalf("progress did not clear the failure: %+v", st.Conditions)
	}

	// No deadline while paused.
	set.Status = st
	set.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{Paused: true}
	in.Now = now.Add(time.Hour)
	st, _ = Compute(in)
	if meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionStalled) != nil {
		t.Error("a paused rollout was reported stalled")
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestSignificantChangesAreTheOnesReadersActOn(t *testing.T) {
	base := nasv1alpha1.NodeAgentSetStatus{
		ObservedGeneration: 2, NumberReady: 3, UpdateRevision: "r2", CurrentRevision: "r1",
		Conditions: []metav1.Condition{
			{Type: nasv1alpha1.ConditionAvailable, Status: metav1.ConditionFalse, Reason: "Unavailable", Message: "3 of 10", ObservedGeneration: 2},
		},
	}
	for _, tc := range []struct {
		name   string
		change func(*nasv1alpha1.NodeAgentSetStatus)
		want   bool
	}{
		{"nothing", func(*nasv1alpha1.NodeAgentSetStatus) {}, false},
		{"a count", func(s *nasv1alpha1.NodeAgentSetStatus) { s.NumberReady = 4 }, false},
		{"a condition message", func(s *nasv1alpha1.NodeAgentSetStatus) { s.Conditions[0].Message = "4 of 10" }, false},
		{"a condition time", func(s *nasv1alpha1.NodeAgentSetStatus) { s.Conditions[0].LastTransitionTime = metav1.Now() }, false},
		{"the generation", func(s *nasv1alpha1.NodeAgentSetStatus) { s.ObservedGeneration = 3 }, true},
		{"the current revision", func(s *nasv1alpha1.NodeAgentSetStatus) { s.CurrentRevision = "r2" }, true},
		{"the collision count", func(s *nasv1alpha1.NodeAgentSetStatus) { s.CollisionCount = ptr.To[int32](1) }, true},
		{"a condition status", func(s *nasv1alpha1.NodeAgentSetStatus) { s.Conditions[0].Status = metav1.ConditionTrue }, true},
		{"a condition reason", func(s *nasv1alpha1.NodeAgentSetStatus) { s.Conditions[0].Reason = "Other" }, true},
		{"a new condition", func(s *nasv1alpha1.NodeAgentSetStatus) {
			s.Conditions = append(s.Conditions, metav1.Condition{Type: nasv1alpha1.ConditionStalled, Status: metav1.ConditionFalse})
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := *base.DeepCopy()
			tc.change(&next)
			if got := Significant(base, next); got != tc.want {
				t.Errorf("Significant = %v, want %v", got, tc.want)
			}
		})
	}
}

// After a rollout completed, an agent going unready is not a rollout: no
// progress deadline, no Stalled, so kstatus never says Failed and
// `rollout status` does not fail while nothing rolls out.
func TestNoStallOutsideARollout(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Generation: 1}}
	set.Spec.ProgressDeadlineSeconds = ptrTo(int32(60))
	in := Input{Set: set, UpdateHash: "h", UpdateRevision: "agent-h", Now: now,
		Plan: plan.Plan{Nodes: []plan.NodeState{node("a", true, true, readyPod("h", time.Hour)), node("b", true, true, readyPod("h", time.Hour))}}}
	st, _ := Compute(in)
	if c := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionProgressing); c == nil || c.Reason != "RolloutComplete" {
		t.Fatalf("Progressing after the rollout = %+v", c)
	}
	unready := readyPod("h", time.Hour)
	unready.Status.Conditions[0].Status = corev1.ConditionFalse
	in.Plan = plan.Plan{Nodes: []plan.NodeState{node("a", true, true, readyPod("h", time.Hour)), node("b", true, true, unready)}}
	for _, later := range []time.Duration{time.Second, 2 * time.Minute, time.Hour} {
		set.Status = st
		in.Now = now.Add(later)
		var wake time.Time
		st, wake = Compute(in)
		if c := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionStalled); c != nil {
			t.Fatalf("%v after an agent went unready, outside a rollout: Stalled %+v", later, c)
		}
		if c := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionProgressing); c.Status != metav1.ConditionTrue || c.Reason != "RolloutComplete" {
			t.Fatalf("%v later: Progressing = %+v, want True RolloutComplete", later, c)
		}
		if !wake.IsZero() && !wake.After(in.Now.Add(time.Hour)) {
			t.Errorf("%v later: a progress deadline is armed (wake %v)", later, wake)
		}
	}
	// A new revision is a rollout again, with its deadline.
	set.Status = st
	in.UpdateHash, in.UpdateRevision = "h2", "agent-h2"
	st, _ = Compute(in)
	if c := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionProgressing); c.Reason != "RollingOut" {
		t.Fatalf("a new revision: Progressing = %+v, want RollingOut", c)
	}
}

// A paused rollout with nothing else to do is not reconciling (kstatus
// Current), so a GitOps tool does not wait on it for ever.
func TestPausedRolloutIsNotReconciling(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Generation: 1}}
	set.Spec.UpdateStrategy.RollingUpdate = &nasv1alpha1.RollingUpdate{Paused: true}
	old := node("a", true, true, readyPod("old", time.Hour))
	old.Held = plan.HeldPaused
	st, _ := Compute(Input{Set: set, UpdateHash: "h", UpdateRevision: "agent-h", Now: now, Plan: plan.Plan{Nodes: []plan.NodeState{old}}})
	if c := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionReconciling); c == nil || c.Status != metav1.ConditionFalse || c.Reason != "Paused" {
		t.Fatalf("Reconciling while paused = %+v, want False Paused", c)
	}
	// Placing an agent on a new node while paused is work in progress.
	st, _ = Compute(Input{Set: set, UpdateHash: "h", UpdateRevision: "agent-h", Now: now,
		Plan: plan.Plan{Nodes: []plan.NodeState{old, node("b", true, true)}, Creates: []plan.Create{{Node: "b"}}}})
	if !meta.IsStatusConditionTrue(st.Conditions, nasv1alpha1.ConditionReconciling) {
		t.Fatalf("Reconciling while paused and placing = %+v", meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionReconciling))
	}
}

// A node running an old agent and a surge agent that is not available is
// not updated yet (DaemonSet counts the oldest pod).
func TestSurgingNodeIsNotCountedUpdated(t *testing.T) {
	pending := readyPod("new", 0)
	pending.Status.Conditions = nil
	c := Count(plan.Plan{Nodes: []plan.NodeState{node("a", true, true, readyPod("old", time.Hour), pending)}}, "new", 0, now)
	if c.Updated != 0 {
		t.Fatalf("Updated = %d for a node whose new agent is Pending next to the old one", c.Updated)
	}
}

// A rollout whose only outdated nodes are unhealthy ones it skips is
// complete for Reconciling and Progressing; Available still says the
// skipped nodes have no available agent, and unhealthyNodes counts them.
func TestSkippedUnhealthyNodesDoNotHoldCompletion(t *testing.T) {
	set := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Generation: 2}}
	set.Status.UpdateRevision, set.Status.CurrentRevision = "agent-old", "agent-old"
	notReady := readyPod("old", time.Minute)
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	dead := node("dead", true, true, notReady)
	dead.Health = nodehealth.Health{Reason: "Ready Unknown", Since: now.Add(-time.Hour)}
	dead.Skipped, dead.Held = "skipped: node Ready Unknown since 11:00:00", "skipped: node Ready Unknown since 11:00:00"
	cordoned := node("cordoned", true, true, readyPod("h", time.Minute))
	cordoned.Health = nodehealth.Health{Reason: "cordoned"}
	p := plan.Plan{Nodes: []plan.NodeState{node("a", true, true, readyPod("h", time.Minute)), dead, cordoned}}
	st, _ := Compute(Input{Set: set, Plan: p, UpdateHash: "h", UpdateRevision: "agent-h", Now: now})
	if !meta.IsStatusConditionFalse(st.Conditions, nasv1alpha1.ConditionReconciling) {
		t.Errorf("Reconciling = %+v, want False: only a skipped node is left", meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionReconciling))
	}
	if c := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionProgressing); c == nil || c.Reason != "RolloutComplete" {
		t.Errorf("Progressing = %+v, want RolloutComplete", c)
	}
	if !meta.IsStatusConditionFalse(st.Conditions, nasv1alpha1.ConditionAvailable) || st.NumberAvailable != 2 {
		t.Errorf("Available = %+v, numberAvailable %d: the dead node has no available agent", meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionAvailable), st.NumberAvailable)
	}
	if st.UnhealthyNodes != 2 {
		t.Errorf("unhealthyNodes = %d, want 2 (dead and cordoned)", st.UnhealthyNodes)
	}
	if c := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionReconciling); c != nil && !strings.Contains(c.Message, "1 unhealthy nodes skipped") {
		t.Errorf("Reconciling message %q does not say a node was skipped", c.Message)
	}

	// The node recovers: its old agent is outdated again, and the rollout
	// is not complete until it is replaced.
	set.Status = st
	recovered := node("dead", true, true, readyPod("old", time.Minute))
	p.Nodes[1] = recovered
	st, _ = Compute(Input{Set: set, Plan: p, UpdateHash: "h", UpdateRevision: "agent-h", Now: now.Add(time.Minute)})
	if !meta.IsStatusConditionTrue(st.Conditions, nasv1alpha1.ConditionReconciling) {
		t.Errorf("Reconciling = %+v after the node recovered with an old agent, want True", meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionReconciling))
	}
}
