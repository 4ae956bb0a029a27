package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plan"
)

// The full pod cache holds only pods carrying the set-name label, so that
// the manager does not keep every pod of the cluster. Pods without the
// label are seen through a second, metadata-only watch of every pod, kept
// in its own cache (the manager's cache would apply the label filter to
// it too): orphans a set's selector matches, which DaemonSet adopts, and a
// set's own pods whose label someone removed. Of every other pod it keeps
// only the name and versions.

// indexUnlabelled indexes, by namespace, the pods a set may have to claim.
const indexUnlabelled = "nodeagentset.io/unlabelled"

var podMetadata = &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}}

// claimable: no set-name label, and no controller or a NodeAgentSet one.
func claimable(m *metav1.PartialObjectMetadata) bool {
	if _, labelled := m.Labels[nasv1alpha1.LabelSetName]; labelled {
		return false
	}
	ref := metav1.GetControllerOfNoCopy(m)
	return ref == nil || plan.ControlledBySetKind(ref)
}

// leanPodMetadata keeps what claiming needs of a claimable pod, and only
// identity of the rest (most of a busy cluster's pods).
func leanPodMetadata(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	lean := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
	}}
	if claimable(m) {
		lean.Labels, lean.OwnerReferences, lean.DeletionTimestamp = m.Labels, m.OwnerReferences, m.DeletionTimestamp
	}
	return lean, nil
}

// setupUnlabelled starts the metadata cache with the manager, and returns
// its indexed store and the source of its events.
func (r *Reconciler) setupUnlabelled(ctx context.Context, mgr ctrl.Manager) (toolscache.Indexer, source.Source, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{podMetadata: {Transform: leanPodMetadata}}})
	if err != nil {
		return nil, nil, err
	}
	if err := mgr.Add(c); err != nil {
		return nil, nil, err
	}
	inf, err := c.GetInformer(ctx, podMetadata)
	if err != nil {
		return nil, nil, err
	}
	shared, ok := inf.(toolscache.SharedIndexInformer)
	if !ok {
		return nil, nil, fmt.Errorf("pod metadata informer has no store (%T)", inf)
	}
	err = shared.AddIndexers(toolscache.Indexers{indexUnlabelled: func(obj any) ([]string, error) {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok && claimable(m) {
			return []string{m.Namespace}, nil
		}
		return nil, nil
	}})
	if err != nil {
		return nil, nil, err
	}
	if err := mgr.AddReadyzCheck("pod-metadata-cache", func(req *http.Request) error {
		wait, cancel := context.WithTimeout(req.Context(), 500*time.Millisecond)
		defer cancel()
		if !c.WaitForCacheSync(wait) {
			return errors.New("pod metadata cache not synced yet")
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	src := source.Kind(c, podMetadata, handler.TypedEnqueueRequestsFromMapFunc(r.unlabelledToSets))
	return shared.GetIndexer(), src, nil
}

// unlabelledToSets maps a claimable pod to the set controlling it, or an
// orphan to every set of its namespace whose selector matches it.
func (r *Reconciler) unlabelledToSets(_ context.Context, m *metav1.PartialObjectMetadata) []reconcile.Request {
	if !claimable(m) {
		return nil
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: ref.Name}}}
	}
	objs, err := r.stores.sets.ByIndex(toolscache.NamespaceIndex, m.Namespace)
	if err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if sel := selectorOf(u); ok && sel != nil && sel.Matches(labels.Set(m.Labels)) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: u.GetNamespace(), Name: u.GetName()}})
		}
	}
	return reqs
}

// selectorOf parses a cached set's selector alone (decoding the whole set
// for every orphan's event would cost more); nil when it does not parse.
func selectorOf(u *unstructured.Unstructured) labels.Selector {
	if u == nil {
		return nil
	}
	raw, found, err := unstructured.NestedFieldNoCopy(u.Object, "spec", "selector")
	if err != nil || !found {
		return nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil
	}
	var sel nasv1alpha1.LabelSelector
	if json.Unmarshal(b, &sel) != nil {
		return nil
	}
	parsed, err := metav1.LabelSelectorAsSelector(sel.AsMeta())
	if err != nil || parsed.Empty() {
		return nil
	}
	return parsed
}

// unlabelledPods are the claimable pods of a namespace.
func (s *stores) unlabelledPods(ns string) []*metav1.PartialObjectMetadata {
	if s == nil || s.unlabelled == nil {
		return nil
	}
	objs, err := s.unlabelled.ByIndex(indexUnlabelled, ns)
	if err != nil {
		return nil
	}
	out := make([]*metav1.PartialObjectMetadata, 0, len(objs))
	for _, o := range objs {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok {
			out = append(out, m)
		}
	}
	return out
}
