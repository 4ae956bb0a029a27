package controller_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// A template the CRD schema accepts but the API server refuses at pod
// creation (a volume mount naming no volume) shows as a Warning
// event and a PodFailure condition carrying the server's own message; fixing
// the template clears the condition.
func TestPodCreateRefusalIsReportedWithTheServerMessage(t *testing.T) {
	f := newFixture(t, "refused")
	nodes := f.nodes(2)
	set := f.newSet()
	set.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "missing", MountPath: "/data"}}
	f.create(set)

	const serverSays = "spec.containers[0].volumeMounts[0].name: Not found"
	eventually(t, "a FailedCreate event with the server's message", func() (bool, string) {
		var events eventsv1.EventList
		if err := k8s.List(f.ctx, &events, client.InNamespace(f.ns)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range events.Items {
			// Related to the node the refused create was for, so
			// repeats fold per node and the note stays true.
			if e.Regarding.Name == set.Name && e.Reason == "FailedCreate" && strings.Contains(e.Note, serverSays) &&
				e.Related != nil && e.Related.Kind == "Node" && strings.Contains(e.Note, fmt.Sprintf("Node %q", e.Related.Name)) {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Note)
		}
		return false, fmt.Sprintf("%q", seen)
	})
	eventually(t, "refused creates counted", func() (bool, string) {
		n, _ := metricValue(t, "nodeagentset_pod_write_failures_total", f.ns, set.Name)
		return n >= 1, fmt.Sprintf("nodeagentset_pod_write_failures_total %v", n)
	})
	eventually(t, "a PodFailure condition with the server's message", func() (bool, string) {
		c := meta.FindStatusCondition(f.get(set).Status.Conditions, nasv1alpha1.ConditionPodFailure)
		return c != nil && c.Status == "True" && strings.Contains(c.Message, serverSays), fmt.Sprintf("%+v", c)
	})
	if pods := f.pods(set); len(pods) != 0 {
		t.Fatalf("%d pods exist for a template the server refuses", len(pods))
	}

	f.update(set, func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Spec.Containers[0].VolumeMounts = nil })
	eventually(t, "pods once the template is fixed", f.onePerNode(set, nodes))
	eventually(t, "PodFailure cleared", func() (bool, string) {
		c := meta.FindStatusCondition(f.get(set).Status.Conditions, nasv1alpha1.ConditionPodFailure)
		return c != nil && c.Status == "False", fmt.Sprintf("%+v", c)
	})
}

// Status written by someone else (or a write of ours that was lost) is put
// right by the next pass: the controller compares what it computes with
// what the API server holds, not with what it wrote last.
func TestOverwrittenStatusIsRestored(t *testing.T) {
	f := newFixture(t, "status")
	nodes := f.nodes(2)
	set := f.set()
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	f.markAllReady(set)
	eventually(t, "status available", func() (bool, string) {
		st := f.get(set).Status
		return st.NumberAvailable == 2, fmt.Sprintf("%+v", st)
	})
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := f.get(set)
		got.Status.NumberAvailable, got.Status.DesiredNumberScheduled = 99, 99
		return k8s.Status().Update(f.ctx, got)
	})
	if err != nil {
		t.Fatal(err)
	}
	// No nudge: the foreign write itself must bring the pass that
	// restores the status.
	eventually(t, "status restored", func() (bool, string) {
		st := f.get(set).Status
		return st.NumberAvailable == 2 && st.DesiredNumberScheduled == 2, fmt.Sprintf("%+v", st)
	})
}

// A pass that fails before it can plan (here the API server refuses the
// ControllerRevision: a template label key it does not accept, which the CRD cannot check) is
// reported where a user looks, not only in the log.
func TestPassFailuresAreReportedOnTheSet(t *testing.T) {
	f := newFixture(t, "passfailure")
	f.nodes(1)
	set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) { s.Spec.Template.Labels["not a key!"] = "x" })
	f.create(set)
	eventually(t, "condition ReconcileFailure naming the refusal", func() (bool, string) {
		c := meta.FindStatusCondition(f.get(set).Status.Conditions, nasv1alpha1.ConditionReconcileFailure)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == "RevisionSyncFailed" &&
			strings.Contains(c.Message, "not a key!"), fmt.Sprintf("%+v", c)
	})
	eventually(t, "a Warning event", func() (bool, string) {
		var events eventsv1.EventList
		if err := k8s.List(f.ctx, &events, client.InNamespace(f.ns)); err != nil {
			return false, err.Error()
		}
		for _, e := range events.Items {
			if e.Regarding.Name == set.Name && e.Type == corev1.EventTypeWarning && e.Reason == "RevisionSyncFailed" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events, none RevisionSyncFailed", len(events.Items))
	})
	// Fixed, the condition goes.
	f.update(set, func(s *nasv1alpha1.NodeAgentSet) { delete(s.Spec.Template.Labels, "not a key!") })
	eventually(t, "the condition gone", func() (bool, string) {
		c := meta.FindStatusCondition(f.get(set).Status.Conditions, nasv1alpha1.ConditionReconcileFailure)
		return c == nil, fmt.Sprintf("%+v", c)
	})
}

// A refusal with a message longer than an event note may be (1024 bytes)
// still leaves a FailedCreate event: the note is clipped, not refused.
func TestLongRefusalsStillLeaveAnEvent(t *testing.T) {
	f := newFixture(t, "longrefusal")
	f.nodes(1)
	set := f.newSet()
	for i := range 40 {
		set.Spec.Template.Spec.Containers[0].VolumeMounts = append(set.Spec.Template.Spec.Containers[0].VolumeMounts,
			corev1.VolumeMount{Name: fmt.Sprintf("missing-volume-number-%d", i), MountPath: fmt.Sprintf("/data/%d", i)})
	}
	f.create(set)
	eventually(t, "a FailedCreate event with the start of the server's message", func() (bool, string) {
		var events eventsv1.EventList
		if err := k8s.List(f.ctx, &events, client.InNamespace(f.ns)); err != nil {
			return false, err.Error()
		}
		for _, e := range events.Items {
			if e.Regarding.Name == set.Name && e.Reason == "FailedCreate" {
				return len(e.Note) <= 1024 && strings.Contains(e.Note, "missing-volume-number-0"), e.Note
			}
		}
		c := meta.FindStatusCondition(f.get(set).Status.Conditions, nasv1alpha1.ConditionPodFailure)
		return false, fmt.Sprintf("%d events, no FailedCreate; PodFailure %d bytes", len(events.Items), len(fmt.Sprint(c)))
	})
}
