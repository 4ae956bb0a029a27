package controller

import (
	corev1 "k8s.io/api/core/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/execute"
	"github.com/nodeagentset/nodeagentset/internal/health"
	"github.com/nodeagentset/nodeagentset/internal/plan"
)

// maxTroubleEvents bounds the Warning events one pass raises about agents
// that do not run: enough to name the first nodes of a bad rollout, not a
// write per node of a thousand-node fleet.
const maxTroubleEvents = 5

// warnTrouble raises a Warning event on the set for agents that cannot be
// scheduled, crash-loop, cannot pull or start, or failed, naming pod, node
// and cause. The notes carry nothing that changes between passes, so the
// recorder folds repeats into one series.
func (r *Reconciler) warnTrouble(set *nasv1alpha1.NodeAgentSet, p plan.Plan) {
	if r.Executor == nil || r.Executor.Recorder == nil {
		return
	}
	raised := 0
	warn := func(node string, pods []*corev1.Pod) {
		for _, pod := range pods {
			if raised >= maxTroubleEvents {
				return
			}
			if c, ok := health.Of(pod); ok {
				r.warn(execute.EventTarget(set), pod, c.Reason, "Run", "agent "+pod.Name+" on node "+node+": "+c.Message)
				raised++
			}
		}
	}
	for _, st := range p.Nodes {
		warn(st.Name, st.Active)
		warn(st.Name, st.Finished)
	}
}
