package execute

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Pod write verbs counted by podWriteFailures.
const (
	verbCreate = "create"
	verbDelete = "delete"
	verbPatch  = "patch"
)

// podWriteFailures counts the agent pod writes the API server refused, so
// an alert can fire on a quota, an admission webhook or a policy that stops
// agents from being placed (the PodFailure condition says the same, but
// only while it lasts, and conditions are not scraped).
var podWriteFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "nodeagentset_pod_write_failures_total",
	Help: "Creates, deletes and patches of the set's agent pods that the API server refused, by verb.",
}, []string{"namespace", "name", "verb"})

func init() { metrics.Registry.MustRegister(podWriteFailures) }

func countFailure(namespace, name, verb string) {
	podWriteFailures.WithLabelValues(namespace, name, verb).Inc()
}

// ForgetMetrics drops the counters of a deleted set.
func ForgetMetrics(namespace, name string) {
	for _, verb := range []string{verbCreate, verbDelete, verbPatch} {
		podWriteFailures.DeleteLabelValues(namespace, name, verb)
	}
}
