package controller

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/execute"
	"github.com/nodeagentset/nodeagentset/internal/status"
)

// Metrics of staged rollouts (canary, waves, health).
var (
	rolloutPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nodeagentset_rollout_phase",
		Help: "1 for the set's current status.rollout.phase, 0 for the others (staged rollouts only).",
	}, []string{"namespace", "name", "phase"})
	healthCheckFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nodeagentset_health_check_failures_total",
		Help: "Health checks of a staged rollout that failed, by typed cause (CrashLoopBackOff, OOMKilled, NodeNotReady, ...).",
	}, []string{"namespace", "name", "cause"})
	phases = []nasv1alpha1.RolloutPhase{nasv1alpha1.PhaseCanary, nasv1alpha1.PhaseSoaking, nasv1alpha1.PhaseAwaitingPromotion,
		nasv1alpha1.PhaseWaves, nasv1alpha1.PhasePaused, nasv1alpha1.PhaseFailed, nasv1alpha1.PhaseAborted, nasv1alpha1.PhaseComplete}
)

func init() { metrics.Registry.MustRegister(rolloutPhase, healthCheckFailures) }

// recordStage sets the phase gauge and, for a failure this process has
// not reported yet (neither the cached set nor its last status write
// holds it), raises the Warning event and counts it by cause.
func (r *Reconciler) recordStage(set *nasv1alpha1.NodeAgentSet, st nasv1alpha1.NodeAgentSetStatus) {
	if st.Rollout == nil {
		// Stages removed from the spec (or never there): no phase stays
		// set, or a stale Failed would fire its alert for ever.
		for _, ph := range phases {
			rolloutPhase.DeleteLabelValues(set.Namespace, set.Name, string(ph))
		}
		return
	}
	for _, ph := range phases {
		v := 0.0
		if ph == st.Rollout.Phase {
			v = 1
		}
		rolloutPhase.WithLabelValues(set.Namespace, set.Name, string(ph)).Set(v)
	}
	f := st.Rollout.Failure
	if f == nil || sameFailure(set.Status.Rollout, f) {
		return
	}
	if rec := r.statusRecordOf(client.ObjectKeyFromObject(set)); rec != nil && sameFailure(rec.status.Rollout, f) {
		return
	}
	healthCheckFailures.WithLabelValues(set.Namespace, set.Name, f.Reason).Inc()
	r.warn(execute.EventTarget(set), nil, status.ReasonHealthCheckFailed, "Rollout", fmt.Sprintf(
		"rollout of %s stopped (%s): %s on node %s, pod %s: %s", st.Rollout.Revision, st.Rollout.Phase, f.Reason, f.Node, f.Pod, f.Message))
}

func sameFailure(r *nasv1alpha1.RolloutStatus, f *nasv1alpha1.RolloutFailure) bool {
	return r != nil && equality.Semantic.DeepEqual(r.Failure, f)
}

// forgetStageMetrics drops the staged-rollout metrics of a deleted set.
func forgetStageMetrics(namespace, name string) {
	for _, ph := range phases {
		rolloutPhase.DeleteLabelValues(namespace, name, string(ph))
	}
	healthCheckFailures.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "name": name})
}

// withOwnRollout is set as the stage machine must read it: with this
// process's last status.rollout write when the cache does not hold it yet.
// The stored rollout is the stage machine's memory (canary nodes, when a
// stage began); a pass started by a pod event right after a write reads
// the older cached copy, and would start the stage's clock again (seen in
// TestStagedRolloutRecovery: Canary's phaseSince moved by a second within
// one process). While this process leads it is the only writer of the
// status, so its last write is what the API server holds; after a restart
// there is no record and the freshly listed cache is right.
func (r *Reconciler) withOwnRollout(set *nasv1alpha1.NodeAgentSet) *nasv1alpha1.NodeAgentSet {
	rec := r.statusRecordOf(client.ObjectKeyFromObject(set))
	// A cached copy with no status yet is a set created since (deleted and
	// created again before a pass saw it gone): the record is not its.
	if rec == nil || rec.status.Rollout == nil || set.Status.ObservedGeneration == 0 ||
		equality.Semantic.DeepEqual(set.Status.Rollout, rec.status.Rollout) {
		return set
	}
	own := *set // shallow: only the status.rollout pointer differs
	own.Status.Rollout = rec.status.Rollout
	return &own
}
