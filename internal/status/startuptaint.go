package status

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// TaintResult is what became of the startup taint in one pass.
type TaintResult struct {
	// Waiting counts nodes that carry the taint until their agent is
	// available.
	Waiting int
	// Forbidden is the API server's refusal for want of permission.
	Forbidden error
	// Err is any other failure.
	Err error
}

// startupTaintCondition reports whether the startup taint can be lifted;
// absent without spec.startupTaint.
func startupTaintCondition(st *nasv1alpha1.NodeAgentSetStatus, set func(string, bool, string, string), nas *nasv1alpha1.NodeAgentSet, r TaintResult) {
	want := nas.Spec.StartupTaint
	if want == nil {
		meta.RemoveStatusCondition(&st.Conditions, nasv1alpha1.ConditionStartupTaintRemoved)
		return
	}
	taint := want.Key + ":" + string(want.Effect)
	switch {
	case r.Forbidden != nil:
		set(nasv1alpha1.ConditionStartupTaintRemoved, false, "Forbidden", Clip(fmt.Sprintf(
			"cannot remove taint %s from nodes whose agent is available: the manager lacks permission to patch nodes "+
				"(grant verb patch on nodes: Helm value startupTaints.enabled=true, or config/rbac/startup_taint_role.yaml): %v",
			taint, r.Forbidden), MaxMessage))
	case r.Err != nil:
		set(nasv1alpha1.ConditionStartupTaintRemoved, false, "PatchFailed", Clip(
			fmt.Sprintf("removing taint %s: %v", taint, r.Err), MaxMessage))
	default:
		set(nasv1alpha1.ConditionStartupTaintRemoved, true, "Lifting", fmt.Sprintf(
			"taint %s is removed from a node once its agent is available; %d nodes wait for their agent", taint, r.Waiting))
	}
}
