package controller_test

import (
	"fmt"
	"testing"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// metricValue reads a gauge, a counter or a histogram's sample count for one set from
// the registry the manager serves.
func metricValue(t *testing.T, name, namespace, set string) (float64, bool) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "namespace") == namespace && label(m, "name") == set {
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount()), true
				}
				if c := m.GetCounter(); c != nil {
					return c.GetValue(), true
				}
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestMetricsFollowStatusAndTimeRollouts(t *testing.T) {
	f := newFixture(t, "metrics")
	nodes := f.nodes(3)
	set := f.set()
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	f.markAllReady(set)
	eventually(t, "gauges equal to the status", func() (bool, string) {
		desired, _ := metricValue(t, "nodeagentset_desired_nodes", f.ns, set.Name)
		available, _ := metricValue(t, "nodeagentset_available_nodes", f.ns, set.Name)
		updated, _ := metricValue(t, "nodeagentset_updated_nodes", f.ns, set.Name)
		return desired == 3 && available == 3 && updated == 3, fmt.Sprintf("desired %v available %v updated %v", desired, available, updated)
	})

	f.update(set, image("registry.example/agent:2"))
	eventually(t, "a rollout timed once complete", func() (bool, string) {
		f.markAllReady(set) // plays the kubelet for each new pod
		n, _ := metricValue(t, "nodeagentset_rollout_duration_seconds", f.ns, set.Name)
		return n == 1, fmt.Sprintf("%v rollouts observed", n)
	})

	if err := k8s.Delete(f.ctx, f.get(set)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted set's metrics gone", func() (bool, string) {
		_, found := metricValue(t, "nodeagentset_desired_nodes", f.ns, set.Name)
		return !found, ""
	})
}

// A cordoned node is unhealthy: counted in status.unhealthyNodes and its
// gauge, and, with unhealthyNodes Skip, passed by in a rollout that then
// completes without it (its old agent left, counted skipped).
func TestUnhealthyNodesAreCountedAndSkipped(t *testing.T) {
	f := newFixture(t, "unhealthy")
	nodes := f.nodes(3)
	set := f.set()
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	f.markAllReady(set)
	f.patchNode(nodes[0], func(n *corev1.Node) { n.Spec.Unschedulable = true })
	eventually(t, "the cordoned node counted unhealthy", func() (bool, string) {
		got := f.get(set).Status.UnhealthyNodes
		gauge, _ := metricValue(t, "nodeagentset_unhealthy_nodes", f.ns, set.Name)
		return got == 1 && gauge == 1, fmt.Sprintf("status.unhealthyNodes %d, gauge %v", got, gauge)
	})
	oldPod := byNode(f.pods(set))[nodes[0]][0].UID
	f.update(set, image("registry.example/agent:2"))
	eventually(t, "the rollout complete around the cordoned node", func() (bool, string) {
		f.markAllReady(set)
		got := f.get(set)
		skipped, _ := metricValue(t, "nodeagentset_unhealthy_skipped_nodes", f.ns, set.Name)
		return got.Status.ObservedGeneration == got.Generation && got.Status.UpdatedNumberScheduled == 2 &&
				meta.IsStatusConditionFalse(got.Status.Conditions, nasv1alpha1.ConditionReconciling) && skipped == 1,
			fmt.Sprintf("updated %d, skipped gauge %v, conditions %+v", got.Status.UpdatedNumberScheduled, skipped, got.Status.Conditions)
	})
	if pods := byNode(f.pods(set))[nodes[0]]; len(pods) != 1 || pods[0].UID != oldPod {
		t.Errorf("the cordoned node's agent was replaced: %v", podNames(pods))
	}
	f.patchNode(nodes[0], func(n *corev1.Node) { n.Spec.Unschedulable = false })
	eventually(t, "the uncordoned node's agent replaced", func() (bool, string) {
		f.markAllReady(set)
		got := f.get(set)
		return got.Status.UpdatedNumberScheduled == 3 && got.Status.UnhealthyNodes == 0,
			fmt.Sprintf("updated %d, unhealthy %d", got.Status.UpdatedNumberScheduled, got.Status.UnhealthyNodes)
	})
}
