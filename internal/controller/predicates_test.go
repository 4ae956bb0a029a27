package controller

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/nodeagentset/nodeagentset/internal/execute"
)

func TestNodeUpdatesThatCannotChangeEligibilityAreDropped(t *testing.T) {
	since := metav1.NewTime(time.Date(2026, 12, 3, 10, 4, 31, 0, time.UTC))
	base := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "1"}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastTransitionTime: since, LastHeartbeatTime: since, Message: "ok"},
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: since},
		}}}
	heartbeat := base.DeepCopy()
	for i := range heartbeat.Status.Conditions {
		heartbeat.Status.Conditions[i].LastHeartbeatTime = metav1.NewTime(since.Add(time.Minute))
	}
	heartbeat.Status.Conditions[0].Message = "still ok"
	heartbeat.Status.Conditions[1].Status = corev1.ConditionTrue
	heartbeat.Status.Images = []corev1.ContainerImage{{Names: []string{"x"}}}
	notReady := base.DeepCopy()
	notReady.Status.Conditions[0].Status = corev1.ConditionUnknown
	notReady.Status.Conditions[0].LastTransitionTime = metav1.NewTime(since.Add(time.Minute))
	deleting := base.DeepCopy()
	deleting.DeletionTimestamp = ptr.To(metav1.NewTime(since.Add(time.Hour)))
	unreachable := base.DeepCopy()
	unreachable.Spec.Taints = []corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}}
	relabel := base.DeepCopy()
	relabel.Labels["a"] = "2"
	taint := base.DeepCopy()
	taint.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}
	cordon := base.DeepCopy()
	cordon.Spec.Unschedulable = true

	p := eligibilityChanged()
	for name, tc := range map[string]struct {
		node *corev1.Node
		want bool
	}{"heartbeat, messages, other conditions and images": {heartbeat, false}, "label": {relabel, true}, "taint": {taint, true},
		"cordon": {cordon, true}, "Ready Unknown": {notReady, true}, "being deleted": {deleting, true}, "unreachable": {unreachable, true}} {
		// The predicate sees what the cache holds: nodes after leanNode.
		old, _ := leanNode(base)
		cur, _ := leanNode(tc.node)
		if got := p.Update(event.UpdateEvent{ObjectOld: old.(*corev1.Node), ObjectNew: cur.(*corev1.Node)}); got != tc.want {
			t.Errorf("%s: predicate = %t, want %t", name, got, tc.want)
		}
	}
}

func TestLeanNodeKeepsWhatEligibilityReads(t *testing.T) {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "1"}, Annotations: map[string]string{"big": "x"}},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: "k"}}, PodCIDR: "10.0.0.0/24"},
		Status:     corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"x"}}}},
	}
	out, _ := leanNode(n)
	lean := out.(*corev1.Node)
	if lean.Name != "n" || lean.Labels["a"] != "1" || len(lean.Spec.Taints) != 1 {
		t.Errorf("lost what eligibility reads: %+v", lean)
	}
	n.Status.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
		{Type: corev1.NodeReady, Status: corev1.ConditionFalse, LastTransitionTime: metav1.Now(), LastHeartbeatTime: metav1.Now(), Message: "m"},
	}
	out, _ = leanNode(n)
	lean = out.(*corev1.Node)
	want := []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse, LastTransitionTime: n.Status.Conditions[1].LastTransitionTime}}
	if !reflect.DeepEqual(lean.Status.Conditions, want) {
		t.Errorf("conditions kept = %+v, want only Ready's status and transition time %+v", lean.Status.Conditions, want)
	}
	if lean.Annotations != nil || lean.Status.Images != nil || lean.Spec.PodCIDR != "" {
		t.Errorf("kept what nobody reads: %+v", lean)
	}
}

func TestPodUpdatesThatCannotChangeAPassAreDropped(t *testing.T) {
	base := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"a": "1"}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	change := func(f func(*corev1.Pod)) *corev1.Pod { p := base.DeepCopy(); f(p); return p }
	readyAt := func(at metav1.Time) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: at}}
		}
	}
	p := podChanged(execute.NewExpectations())
	for name, tc := range map[string]struct {
		pod  *corev1.Pod
		want bool
	}{
		"bound by the scheduler": {change(func(p *corev1.Pod) {
			p.Spec.NodeName = ""
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
		}), false},
		// A restart is what health.maxRestarts of a staged rollout judges.
		"container restarted": {change(func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", RestartCount: 1}}
		}), true},
		"container status without a restart": {change(func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", Started: ptr.To(true)}}
		}), false},
		"moved to another node": {change(func(p *corev1.Pod) { p.Spec.NodeName = "other" }), true},
		"relabelled":            {change(func(p *corev1.Pod) { p.Labels["a"] = "2" }), true},
		"released":              {change(func(p *corev1.Pod) { p.OwnerReferences = []metav1.OwnerReference{{Name: "x"}} }), true},
		"deleted":               {change(func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} }), true},
		"running":               {change(func(p *corev1.Pod) { p.Status.Phase = corev1.PodRunning }), true},
		"ready":                 {change(readyAt(metav1.Unix(10, 0))), true},
		"cannot be scheduled": {change(func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}
		}), true},
		"crash-looping": {change(func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
		}), true},
	} {
		if got := p.Update(event.UpdateEvent{ObjectOld: base, ObjectNew: tc.pod}); got != tc.want {
			t.Errorf("%s: predicate = %t, want %t", name, got, tc.want)
		}
	}
	// Ready again after a blip: same status, later time (minReadySeconds counts from it).
	first, again := change(readyAt(metav1.Unix(10, 0))), change(readyAt(metav1.Unix(20, 0)))
	if !p.Update(event.UpdateEvent{ObjectOld: first, ObjectNew: again}) {
		t.Error("a new Ready time was dropped")
	}
}

func TestEventsOfOurOwnPodWritesAreDropped(t *testing.T) {
	own := execute.NewExpectations()
	p := podChanged(own)
	controller := []metav1.OwnerReference{{APIVersion: "nodeagentset.io/v1alpha1", Kind: "NodeAgentSet", Name: "s", UID: "set", Controller: ptr.To(true)}}
	created := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "new", UID: "new", ResourceVersion: "7", OwnerReferences: controller}}
	own.Created("set", created, time.Now())
	if p.Create(event.CreateEvent{Object: created.DeepCopy()}) {
		t.Error("the watch's copy of a pod this process created let a pass through")
	}
	someoneElses := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x", UID: "x", ResourceVersion: "3", OwnerReferences: controller}}
	if !p.Create(event.CreateEvent{Object: someoneElses}) {
		t.Error("a pod this process did not create was dropped")
	}

	old := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "old", UID: "old", OwnerReferences: controller}}
	terminating := old.DeepCopy()
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	if !p.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: terminating}) {
		t.Error("a deletion this process did not make was dropped")
	}
	own.Deleted("set", "old", time.Now())
	if p.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: terminating}) {
		t.Error("the deletion this process made let a pass through")
	}
}

// A pod created under one version of the API maps to its set under any
// other: owner references are matched by group and kind (kruise #2520).
func TestPodsMapToTheirSetWhateverTheOwnersVersion(t *testing.T) {
	for _, apiVersion := range []string{"nodeagentset.io/v1alpha1", "nodeagentset.io/v1beta1", "nodeagentset.io/v1"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: apiVersion, Kind: "NodeAgentSet", Name: "agent", UID: "u", Controller: ptr.To(true)}}}}
		if reqs := podToSet(t.Context(), pod); len(reqs) != 1 || reqs[0].Name != "agent" {
			t.Errorf("owner %s: requests %v, want the set agent", apiVersion, reqs)
		}
	}
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", OwnerReferences: []metav1.OwnerReference{{
		APIVersion: "apps.kruise.io/v1alpha1", Kind: "NodeAgentSet", Name: "agent", UID: "u", Controller: ptr.To(true)}}}}
	if reqs := podToSet(t.Context(), other); len(reqs) != 0 {
		t.Errorf("a controller of another group mapped to %v", reqs)
	}
}
