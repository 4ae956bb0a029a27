package controller_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Passes that create pods one after another on different nodes each leave
// an event whose note names the pod and node it created, related to that
// pod. Before, the recorder folded them into one series keyed by the set
// alone and kept the first note: "Created 1 pod(s) on node-a" ×4, the
// other nodes never named.
func TestEachCreateEventNamesItsNode(t *testing.T) {
	f := newFixture(t, "series")
	nodes := f.nodes(1)
	set := f.set()
	eventually(t, "the first pod", f.onePerNode(set, nodes))
	for i := 1; i <= 2; i++ {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-late-%d", f.name, i), Labels: map[string]string{f.label: "true"},
		}}
		f.create(node)
		t.Cleanup(func() { _ = k8s.Delete(f.ctx, node) })
		nodes = append(nodes, node.Name)
		eventually(t, fmt.Sprintf("a pod on %s", node.Name), f.onePerNode(set, nodes))
	}
	pods := byNode(f.pods(set))
	eventually(t, "a SuccessfulCreate event per node, naming its pod and node", func() (bool, string) {
		var events eventsv1.EventList
		if err := k8s.List(f.ctx, &events, client.InNamespace(f.ns)); err != nil {
			return false, err.Error()
		}
		notes := map[string]string{} // related pod → note
		var all []string
		for _, e := range events.Items {
			if e.Regarding.Name == set.Name && e.Reason == "SuccessfulCreate" {
				all = append(all, e.Note)
				if e.Related != nil && e.Related.Kind == "Pod" && e.Series == nil {
					notes[e.Related.Name] = e.Note
				}
			}
		}
		for _, node := range nodes {
			pod := pods[node][0].Name
			if notes[pod] != "Created pod "+pod+" on "+node {
				return false, fmt.Sprintf("no readable event for %s on %s; SuccessfulCreate notes: %q", pod, node, all)
			}
		}
		return true, ""
	})
}

// An agent that crash-loops raises a Warning on its set naming the pod,
// its node and the cause; one that cannot be scheduled too.
func TestAgentsThatDoNotRunRaiseWarnings(t *testing.T) {
	f := newFixture(t, "warnings")
	nodes := f.nodes(2)
	set := f.set()
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	pods := byNode(f.pods(set))
	crashing, unschedulable := pods[nodes[0]][0], pods[nodes[1]][0]
	crashing.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
		Name: "agent", Image: "registry.example/agent:1", RestartCount: 4,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s"}},
	}}}
	unschedulable.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
		Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/2 nodes are available: 1 node(s) didn't have free ports"}}}
	for _, p := range []*corev1.Pod{&crashing, &unschedulable} {
		if err := k8s.Status().Update(f.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "Warning events naming each pod, node and cause", func() (bool, string) {
		var events eventsv1.EventList
		if err := k8s.List(f.ctx, &events, client.InNamespace(f.ns)); err != nil {
			return false, err.Error()
		}
		seen := map[string]string{}
		for _, e := range events.Items {
			if e.Regarding.Name == set.Name && e.Type == corev1.EventTypeWarning && e.Related != nil {
				seen[e.Related.Name] = e.Reason + " " + e.Note
			}
		}
		ok := strings.HasPrefix(seen[crashing.Name], "CrashLoopBackOff agent "+crashing.Name+" on node "+nodes[0]) &&
			strings.HasPrefix(seen[unschedulable.Name], "Unschedulable agent "+unschedulable.Name+" on node "+nodes[1]) &&
			strings.Contains(seen[unschedulable.Name], "free ports")
		return ok, fmt.Sprintf("%q", seen)
	})
}
