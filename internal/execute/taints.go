package execute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// TaintOutcome is what lifting the startup taint did in one pass.
type TaintOutcome struct {
	Lifted int
	// Forbidden: the API server refused the patch for want of permission
	// (RBAC: nodes patch); the message is the server's.
	Forbidden error
	// Err joins the other failures.
	Err error
}

// LiftStartupTaint removes set's startup taint from nodes (the cache's
// copies, not modified). Each patch is a JSON patch that first tests the
// node's whole taint list against the cached one: if anyone changed the
// taints since (added one, removed ours), the API server refuses it and
// nothing of theirs is lost; the node's update event brings the next pass.
// A patch is never sent to a node without the taint.
func (x *Executor) LiftStartupTaint(ctx context.Context, set *nasv1alpha1.NodeAgentSet, nodes []*corev1.Node) TaintOutcome {
	var out TaintOutcome
	want := set.Spec.StartupTaint
	if want == nil {
		return out
	}
	log := logr.FromContextOrDiscard(ctx)
	var errs []error
	for _, node := range nodes {
		patch, ok, err := liftPatch(node, want)
		if err != nil || !ok {
			errs = append(errs, err)
			continue
		}
		err = x.Client.Patch(ctx, nodeRef(node.Name), client.RawPatch(types.JSONPatchType, patch))
		switch {
		case err == nil:
			out.Lifted++
			log.V(4).Info("Removed startup taint", "node", klog.KObj(node), "taint", want.Key)
		case apierrors.IsForbidden(err):
			// Every other node would be refused alike.
			out.Forbidden = err
			return out
		case apierrors.IsNotFound(err), apierrors.IsInvalid(err):
			// Gone, or its taints changed since the cache saw them (a
			// failed test answers 422 Invalid): the watch event that shows
			// the change brings the next pass.
			log.V(1).Info("Startup taint not removed; node changed", "node", klog.KObj(node), "err", err.Error())
		default:
			errs = append(errs, fmt.Errorf("removing taint %s from Node %q: %w", want.Key, node.Name, err))
		}
	}
	out.Err = errors.Join(errs...)
	return out
}

// liftPatch is the JSON patch that removes every taint of want's key and
// effect from node, guarded by a test of the whole list; false when the
// node has none.
func liftPatch(node *corev1.Node, want *nasv1alpha1.StartupTaint) ([]byte, bool, error) {
	kept := make([]corev1.Taint, 0, len(node.Spec.Taints))
	for _, t := range node.Spec.Taints {
		if t.Key != want.Key || t.Effect != want.Effect {
			kept = append(kept, t)
		}
	}
	if len(kept) == len(node.Spec.Taints) {
		return nil, false, nil
	}
	type op struct {
		Op    string         `json:"op"`
		Path  string         `json:"path"`
		Value []corev1.Taint `json:"value"`
	}
	patch, err := json.Marshal([]op{
		{Op: "test", Path: "/spec/taints", Value: node.Spec.Taints},
		{Op: "replace", Path: "/spec/taints", Value: kept},
	})
	return patch, err == nil, err
}
