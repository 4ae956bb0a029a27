package controller

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/nodeagentset/nodeagentset/internal/plan"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/execute"
)

// Per-set gauges mirror the status counts; the histogram times rollouts
// from the first pass that saw a new revision to the pass that found it
// complete. All are served on the manager's metrics endpoint next to
// controller-runtime's own.
var (
	setLabels = []string{"namespace", "name"}
	gauges    = map[string]*prometheus.GaugeVec{}
	gaugeHelp = map[string]string{
		"desired":      "Nodes that should run the set's agent (status.desiredNumberScheduled).",
		"current":      "Desired nodes running at least one agent (status.currentNumberScheduled).",
		"ready":        "Desired nodes with a Ready agent (status.numberReady).",
		"available":    "Desired nodes with an available agent (status.numberAvailable).",
		"updated":      "Nodes running an agent of the update revision (status.updatedNumberScheduled).",
		"misscheduled": "Nodes running an agent they should not (status.numberMisscheduled).",
		"unhealthy":    "Desired nodes that are unhealthy: Ready not True, cordoned, tainted for removal, or being deleted (status.unhealthyNodes).",
		"unhealthy_skipped": "Unhealthy desired nodes the rollout passes by for now (rollingUpdate.unhealthyNodes Skip); " +
			"their agents are replaced once the nodes recover.",
	}
	rolloutDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "nodeagentset_rollout_duration_seconds",
		Help:    "Time from a new revision to the rollout's completion, per set (only rollouts seen whole by one manager process).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1s to about 2h
	}, setLabels)
	// passCompute is what passes pace themselves by (see PassSpacing).
	passCompute = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "nodeagentset_pass_compute_seconds",
		Help:    "CPU-bound part of a pass (reading the snapshot, planning, computing status; no API calls).",
		Buckets: prometheus.ExponentialBuckets(10e-6, 2, 14), // 10µs to about 80ms
	})
)

func init() {
	for kind, help := range gaugeHelp {
		gauges[kind] = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "nodeagentset_" + kind + "_nodes", Help: help}, setLabels)
		metrics.Registry.MustRegister(gauges[kind])
	}
	metrics.Registry.MustRegister(rolloutDuration, passCompute)
}

// rollouts remembers when each set's current rollout began, and which set
// (UID) each name holds: what a pass sees of a set is keyed by its UID
// (rollouts, execute.Expectations, execute.Backoff), while a pass for a
// set that is gone only has its name. See forget.
type rollouts struct {
	mu    sync.Mutex
	start map[types.UID]rolloutStart
	uids  map[types.NamespacedName]types.UID
	// replaced is told the UID a name held before a set re-created under
	// the same name was first seen (no pass saw the old one gone).
	replaced func(types.UID)
}

type rolloutStart struct {
	revision string
	at       time.Time
}

// record updates the gauges from a new status and times the rollout.
func (r *rollouts) record(set *nasv1alpha1.NodeAgentSet, st nasv1alpha1.NodeAgentSetStatus, skipped int, now time.Time) {
	lv := []string{set.Namespace, set.Name}
	gauges["desired"].WithLabelValues(lv...).Set(float64(st.DesiredNumberScheduled))
	gauges["current"].WithLabelValues(lv...).Set(float64(st.CurrentNumberScheduled))
	gauges["ready"].WithLabelValues(lv...).Set(float64(st.NumberReady))
	gauges["available"].WithLabelValues(lv...).Set(float64(st.NumberAvailable))
	gauges["updated"].WithLabelValues(lv...).Set(float64(st.UpdatedNumberScheduled))
	gauges["misscheduled"].WithLabelValues(lv...).Set(float64(st.NumberMisscheduled))
	gauges["unhealthy"].WithLabelValues(lv...).Set(float64(st.UnhealthyNodes))
	gauges["unhealthy_skipped"].WithLabelValues(lv...).Set(float64(skipped))

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.start == nil {
		r.start = map[types.UID]rolloutStart{}
		r.uids = map[types.NamespacedName]types.UID{}
	}
	// Every pass that can leave something keyed by set.UID (the executor
	// writes expectations and backoffs) ends here, so the name's UID is
	// known whenever there is something to forget.
	key := types.NamespacedName{Namespace: set.Namespace, Name: set.Name}
	if old, ok := r.uids[key]; ok && old != set.UID {
		delete(r.start, old)
		if r.replaced != nil {
			r.replaced(old)
		}
	}
	r.uids[key] = set.UID
	if prev := set.Status.UpdateRevision; prev != "" && prev != st.UpdateRevision {
		r.start[set.UID] = rolloutStart{revision: st.UpdateRevision, at: now}
	}
	began, ok := r.start[set.UID]
	reconciling := meta.FindStatusCondition(st.Conditions, nasv1alpha1.ConditionReconciling)
	if ok && began.revision == st.UpdateRevision && reconciling != nil && reconciling.Reason == "Complete" {
		rolloutDuration.WithLabelValues(lv...).Observe(now.Sub(began.at).Seconds())
		delete(r.start, set.UID)
	}
}

// forget drops what is remembered of the set that held key and returns its
// UID (false when no pass recorded one).
func (r *rollouts) forget(key types.NamespacedName) (types.UID, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	uid, ok := r.uids[key]
	if ok {
		delete(r.uids, key)
		delete(r.start, uid)
	}
	return uid, ok
}

// sizes is how many sets' rollout starts and UIDs are remembered.
func (r *rollouts) sizes() (starts, uids int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.start), len(r.uids)
}

// forgetMetrics drops the metrics of a deleted set.
func forgetMetrics(namespace, name string) {
	for _, g := range gauges {
		g.DeleteLabelValues(namespace, name)
	}
	rolloutDuration.DeleteLabelValues(namespace, name)
	forgetStageMetrics(namespace, name)
	execute.ForgetMetrics(namespace, name)
}

// skipped counts the nodes a plan's rollout passes by as unhealthy.
func skipped(p plan.Plan) int {
	n := 0
	for _, st := range p.Nodes {
		if st.Skipped != "" && st.Eligibility.ShouldRun {
			n++
		}
	}
	return n
}
