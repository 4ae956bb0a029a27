package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/status"
)

// The manager caches NodeAgentSets unstructured and decodes each one when
// its pass starts. A typed informer fails on the whole list when one
// object does not decode (an integer beyond int32 that an older schema let
// through, say), and then no set in the cluster is served; decoding one at
// a time confines the failure to that set, which reports it.

var setGVK = nasv1alpha1.GroupVersion.WithKind("NodeAgentSet")

// newSetObject is an empty unstructured NodeAgentSet, for watches and
// informers.
func newSetObject() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(setGVK)
	return u
}

// invalidObject is a set the controller cannot decode or make sense of.
type invalidObject struct {
	obj client.Object
	err error
}

func (e *invalidObject) Error() string { return e.err.Error() }

// decodeSet turns a cached unstructured set into the typed one, strictly:
// a number out of its field's range is an error, not a silent wrap (as
// the unstructured converter would do).
func decodeSet(u *unstructured.Unstructured) (*nasv1alpha1.NodeAgentSet, error) {
	raw, err := u.MarshalJSON()
	if err != nil {
		return nil, &invalidObject{obj: u, err: err}
	}
	set := &nasv1alpha1.NodeAgentSet{}
	if err := json.Unmarshal(raw, set); err != nil {
		return nil, &invalidObject{obj: u, err: fmt.Errorf("cannot decode the NodeAgentSet: %w", err)}
	}
	return set, nil
}

// getSet reads the set from the informer's store (no copy: a pass never
// writes into it), or through Client when the reconciler has no stores.
func (r *Reconciler) getSet(ctx context.Context, key types.NamespacedName) (*nasv1alpha1.NodeAgentSet, error) {
	if r.stores == nil || r.stores.sets == nil {
		set := &nasv1alpha1.NodeAgentSet{}
		return set, r.Client.Get(ctx, key, set)
	}
	obj, exists, err := r.stores.sets.GetByKey(key.String())
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: setGVK.Group, Resource: "nodeagentsets"}, key.Name)
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("cached NodeAgentSet %s is a %T", key, obj)
	}
	return decodeSet(u)
}

// ReasonInvalidSpec is the reason of the Stalled condition of a set the
// controller cannot act on as written.
const ReasonInvalidSpec = "InvalidSpec"

// reportInvalid tells the set's readers that it cannot be acted on: a
// Warning event, Stalled True and Reconciling False with the reason (so
// kstatus says Failed), for the generation it read. Nothing is retried: a
// new generation brings a new pass.
func (r *Reconciler) reportInvalid(ctx context.Context, bad *invalidObject) error {
	obj := bad.obj
	message := status.Clip(bad.err.Error(), status.MaxMessage)
	conds := conditionsOf(obj)
	if c := meta.FindStatusCondition(conds, nasv1alpha1.ConditionStalled); c != nil && c.Status == metav1.ConditionTrue &&
		c.Reason == ReasonInvalidSpec && c.Message == message && c.ObservedGeneration == obj.GetGeneration() {
		return nil
	}
	r.warn(obj, nil, ReasonInvalidSpec, "Reconcile", message)
	now := metav1.NewTime(r.now())
	for _, c := range []struct {
		kind   string
		status metav1.ConditionStatus
	}{{nasv1alpha1.ConditionStalled, metav1.ConditionTrue}, {nasv1alpha1.ConditionReconciling, metav1.ConditionFalse}} {
		meta.SetStatusCondition(&conds, metav1.Condition{Type: c.kind, Status: c.status, Reason: ReasonInvalidSpec,
			Message: message, ObservedGeneration: obj.GetGeneration(), LastTransitionTime: now})
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"observedGeneration": obj.GetGeneration(), "conditions": conds}})
	if err != nil {
		return err
	}
	target := newSetObject()
	target.SetNamespace(obj.GetNamespace())
	target.SetName(obj.GetName())
	if err := r.Client.Status().Patch(ctx, target, client.RawPatch(types.MergePatchType, patch)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reporting an invalid NodeAgentSet: %w", err)
	}
	return nil
}

// conditionsOf reads the status conditions of a typed or unstructured set;
// none when they do not decode either.
func conditionsOf(obj client.Object) []metav1.Condition {
	switch o := obj.(type) {
	case *nasv1alpha1.NodeAgentSet:
		return append([]metav1.Condition(nil), o.Status.Conditions...)
	case *unstructured.Unstructured:
		conds, _ := decodeField[[]metav1.Condition](o, "status", "conditions")
		return conds
	}
	return nil
}

// decodeField decodes one field of an unstructured set into its typed
// form, strictly as decodeSet does; false when it is absent or does not
// decode.
func decodeField[T any](u *unstructured.Unstructured, fields ...string) (T, bool) {
	var out T
	raw, found, err := unstructured.NestedFieldNoCopy(u.Object, fields...)
	if err != nil || !found {
		return out, false
	}
	b, err := json.Marshal(raw)
	if err != nil || json.Unmarshal(b, &out) != nil {
		return out, false
	}
	return out, true
}

// asInvalid says whether err is about the set itself rather than the API.
func asInvalid(err error) (*invalidObject, bool) {
	var bad *invalidObject
	return bad, errors.As(err, &bad)
}
