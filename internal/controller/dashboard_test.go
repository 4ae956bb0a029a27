package controller_test

import (
	"fmt"
	"regexp"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/test/monitoring"
)

// Every metric the chart's dashboard and alerts query is one the manager
// exports, as its registry shows after a set rolled out and a pod create
// was refused (counters and histograms appear only once they count);
// metrics other issues promise (monitoring.Promised) may be absent. A
// misspelt name is caught.
func TestDashboardAndAlertsNameExportedMetrics(t *testing.T) {
	f := newFixture(t, "dashboard")
	nodes := f.nodes(1)
	set := f.set()
	eventually(t, "one pod per node", f.onePerNode(set, nodes))
	f.markAllReady(set)
	f.update(set, image("registry.example/agent:2"))
	eventually(t, "a rollout timed", func() (bool, string) {
		f.markAllReady(set)
		n, _ := metricValue(t, "nodeagentset_rollout_duration_seconds", f.ns, set.Name)
		return n >= 1, fmt.Sprintf("%v rollouts timed", n)
	})
	refused := f.newSet(func(s *nasv1alpha1.NodeAgentSet) {
		s.Name = "refused"
		s.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "missing", MountPath: "/data"}}
	})
	f.create(refused)
	eventually(t, "a refused create counted", func() (bool, string) {
		n, _ := metricValue(t, "nodeagentset_pod_write_failures_total", f.ns, refused.Name)
		return n >= 1, fmt.Sprint(n)
	})

	exposed := exposedSeries(t)
	dashboard, err := monitoring.DashboardExprs()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := monitoring.RenderRules()
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := monitoring.RuleExprs(rules)
	if err != nil {
		t.Fatal(err)
	}
	if len(dashboard) < 10 || len(alerts) != 5 {
		t.Fatalf("%d dashboard queries, %d alerts: the files were not read whole", len(dashboard), len(alerts))
	}
	if missing := monitoring.Missing(append(dashboard, alerts...), exposed, monitoring.Promised); len(missing) > 0 {
		t.Errorf("queries name metrics the manager does not export: %q", missing)
	}
	// The check can fail: a misspelt name in a query is reported.
	misspelt := `nodeagentset_desired_nodes - nodeagentset_availabel_nodes`
	if got := monitoring.Missing([]string{misspelt}, exposed, monitoring.Promised); !slices.Equal(got, []string{"nodeagentset_availabel_nodes"}) {
		t.Errorf("a misspelt metric was not caught: %q", got)
	}
	// Promised metrics are still absent: when one ships, drop it from
	// monitoring.Promised so a later misspelling of it is caught.
	for _, p := range monitoring.Promised {
		for _, suffix := range []string{"", "_bucket"} {
			if slices.Contains(exposed, p+suffix) {
				t.Errorf("%s is exported now: remove it from monitoring.Promised", p)
			}
		}
	}
}

// exposedSeries are the series names the manager's registry serves, as a
// scrape would show them: a histogram as name_bucket, name_sum and
// name_count.
func exposedSeries(t *testing.T) []string {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names = append(names, f.GetName()+"_bucket", f.GetName()+"_sum", f.GetName()+"_count")
		case dto.MetricType_SUMMARY:
			names = append(names, f.GetName(), f.GetName()+"_sum", f.GetName()+"_count")
		default:
			names = append(names, f.GetName())
		}
	}
	// A vector with no series yet (the staged-rollout metrics, before any
	// staged rollout) is absent from Gather but registered: its name comes
	// from its descriptor.
	descs := make(chan *prometheus.Desc, 1024)
	go func() { metrics.Registry.(*prometheus.Registry).Describe(descs); close(descs) }()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		if m := fq.FindStringSubmatch(d.String()); m != nil && !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	return names
}
