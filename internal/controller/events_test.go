package controller_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Passes that create pods one after another, with the set's status (and so
// its resourceVersion) changing between them, fold into one event series:
// a rollout of many waves costs a couple of event writes, not two a wave.
func TestRepeatedEventsFoldIntoASeries(t *testing.T) {
	f := newFixture(t, "series")
	nodes := f.nodes(1)
	set := f.set()
	eventually(t, "the first pod", f.onePerNode(set, nodes))
	for i := 1; i <= 3; i++ {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-late-%d", f.name, i), Labels: map[string]string{f.label: "true"},
		}}
		f.create(node)
		t.Cleanup(func() { _ = k8s.Delete(f.ctx, node) })
		nodes = append(nodes, node.Name)
		eventually(t, fmt.Sprintf("a pod on %s", node.Name), f.onePerNode(set, nodes))
	}
	eventually(t, "one SuccessfulCreate event, counted as a series", func() (bool, string) {
		var events eventsv1.EventList
		if err := k8s.List(f.ctx, &events, client.InNamespace(f.ns)); err != nil {
			return false, err.Error()
		}
		var creates []string
		series := false
		for _, e := range events.Items {
			if e.Regarding.Name == set.Name && e.Reason == "SuccessfulCreate" {
				creates = append(creates, e.Note)
				series = e.Series != nil && e.Series.Count >= 2
			}
		}
		return len(creates) == 1 && series, fmt.Sprintf("SuccessfulCreate events: %q (series: %v)", creates, series)
	})
}
