package controller

import (
	"context"
	"errors"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/plan"
)

// The full pod cache holds only pods carrying the set-name label, so that
// the manager does not keep every pod of the cluster. Pods without the
// label are seen through metadata-only watches of the pods of namespaces
// that hold a set, in informers of their own (the manager's cache would apply
// the label filter to them too): orphans a set's selector matches, which
// DaemonSet adopts, and a set's own pods whose label someone removed. Of
// every other pod they keep only the name and versions.

// indexUnlabelled indexes, by namespace, the pods a set may have to claim.
const indexUnlabelled = "nodeagentset.io/unlabelled"

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
	switch {
	case claimable(m):
		lean.Labels, lean.OwnerReferences, lean.DeletionTimestamp = m.Labels, m.OwnerReferences, m.DeletionTimestamp
	case plan.ControlledBySetKind(metav1.GetControllerOfNoCopy(m)):
		// A set's own pods (see missing). The labels stay too: the index
		// and the event handler judge the lean copy by claimable.
		lean.Labels, lean.OwnerReferences, lean.DeletionTimestamp = m.Labels, m.OwnerReferences, m.DeletionTimestamp
	}
	return lean, nil
}

// indexController indexes pods by the UID of the set controlling them.
const indexController = "nodeagentset.io/controller"

// podMetadataWatches runs, per namespace that holds a set, a
// metadata-only watch of its pods, in a cache of its own: adoption never
// crosses namespaces, so pods elsewhere (most of a busy cluster's) are
// not watched at all. Events reach the controller through one channel,
// so a namespace's watch can stop and be forgotten with its last set.
type podMetadataWatches struct {
	client metadata.Interface
	ctx    context.Context
	events chan event.GenericEvent

	mu   sync.Mutex
	byNS map[string]*namespaceWatch
}

type namespaceWatch struct {
	cancel context.CancelFunc
	store  toolscache.Indexer
	synced toolscache.InformerSynced
}

func newPodMetadataWatches(ctx context.Context, mgr ctrl.Manager) (*podMetadataWatches, error) {
	c, err := metadata.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, err
	}
	return &podMetadataWatches{client: c, ctx: ctx, events: make(chan event.GenericEvent, 1024),
		byNS: map[string]*namespaceWatch{}}, nil
}

// source is where the watches' events enter the controller.
func (w *podMetadataWatches) source(r *Reconciler) source.Source {
	return source.Channel(w.events, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		m, ok := o.(*metav1.PartialObjectMetadata)
		if !ok {
			return nil
		}
		return r.unlabelledToSets(ctx, m)
	}))
}

// ensure starts the watch of ns unless it runs, and returns it.
func (w *podMetadataWatches) ensure(ns string) (*namespaceWatch, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if nw, ok := w.byNS[ns]; ok {
		return nw, nil
	}
	inf := metadatainformer.NewFilteredMetadataInformer(w.client, corev1.SchemeGroupVersion.WithResource("pods"), ns, 0,
		toolscache.Indexers{indexUnlabelled: func(obj any) ([]string, error) {
			if m, ok := obj.(*metav1.PartialObjectMetadata); ok && claimable(m) {
				return []string{m.Namespace}, nil
			}
			return nil, nil
		}, indexController: func(obj any) ([]string, error) {
			if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
				if ref := metav1.GetControllerOfNoCopy(m); plan.ControlledBySetKind(ref) {
					return []string{string(ref.UID)}, nil
				}
			}
			return nil, nil
		}}, nil).Informer()
	if err := inf.SetTransform(leanPodMetadata); err != nil {
		return nil, err
	}
	_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    w.send,
		UpdateFunc: func(_, cur any) { w.send(cur) },
		DeleteFunc: w.send,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(w.ctx)
	go inf.RunWithContext(ctx)
	nw := &namespaceWatch{cancel: cancel, store: inf.GetIndexer(), synced: inf.HasSynced}
	w.byNS[ns] = nw
	return nw, nil
}

// send passes on an event of a claimable pod; the others concern no set.
func (w *podMetadataWatches) send(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok && claimable(m) {
		select {
		case w.events <- event.GenericEvent{Object: m}:
		case <-w.ctx.Done():
		}
	}
}

// stop ends the watch of ns (its last set went) and forgets it.
func (w *podMetadataWatches) stop(ns string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if nw, ok := w.byNS[ns]; ok {
		nw.cancel()
		delete(w.byNS, ns)
	}
}

// metadataView is what a namespace's pod watch shows a pass of one set.
type metadataView struct {
	// claimable pods of the namespace (see claimable).
	claimable []*metav1.PartialObjectMetadata
	// owned pods controlled by the set, labelled or not.
	owned []*metav1.PartialObjectMetadata
	// listed: the watch has listed the namespace's pods. Until then a
	// pass must not place agents: an orphan there may hold a node.
	listed bool
}

// view returns what the watch of ns knows for the set with uid.
func (w *podMetadataWatches) view(ns string, uid types.UID) (metadataView, error) {
	nw, err := w.ensure(ns)
	if err != nil || !nw.synced() {
		return metadataView{}, err
	}
	v := metadataView{listed: true}
	if v.claimable, err = byIndex(nw.store, indexUnlabelled, ns); err != nil {
		return metadataView{}, err
	}
	if v.owned, err = byIndex(nw.store, indexController, string(uid)); err != nil {
		return metadataView{}, err
	}
	return v, nil
}

func byIndex(store toolscache.Indexer, index, key string) ([]*metav1.PartialObjectMetadata, error) {
	objs, err := store.ByIndex(index, key)
	if err != nil {
		return nil, err
	}
	out := make([]*metav1.PartialObjectMetadata, 0, len(objs))
	for _, o := range objs {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok {
			out = append(out, m)
		}
	}
	return out, nil
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
	sel, ok := decodeField[nasv1alpha1.LabelSelector](u, "spec", "selector")
	if !ok {
		return nil
	}
	parsed, err := metav1.LabelSelectorAsSelector(sel.AsMeta())
	if err != nil || parsed.Empty() {
		return nil
	}
	return parsed
}

// unlabelled is what set must do with the unlabelled pods of its
// namespace, and how long a pass must hold back its creates: while the
// namespace is not listed yet, or a pod the set controls is in the
// metadata watch but not among pods (the pass's pod cache view). The
// latter is a pod whose label was just removed, seen gone by the pod
// cache before the metadata watch shows it unlabelled; its node is not
// empty.
func (r *Reconciler) unlabelled(set *nasv1alpha1.NodeAgentSet, selector labels.Selector, pods []*corev1.Pod) (u plan.Unlabelled, hold time.Duration, err error) {
	if r.podMetadata == nil {
		return plan.Unlabelled{}, 0, nil
	}
	v, err := r.podMetadata.view(set.Namespace, set.UID)
	if err != nil {
		return plan.Unlabelled{}, time.Second, err
	}
	if !v.listed {
		// A namespace's first list takes milliseconds, and brings no
		// event when nothing in it is claimable: look again soon.
		return plan.Unlabelled{}, 20 * time.Millisecond, nil
	}
	u = plan.ClaimUnlabelled(set, selector, v.claimable)
	if u.Claims() || missing(v.owned, pods) {
		// The watch's next event brings the next pass; the requeue is a
		// safety net.
		hold = time.Second
	}
	return u, hold, nil
}

// missing: a live pod of owned is not among pods.
func missing(owned []*metav1.PartialObjectMetadata, pods []*corev1.Pod) bool {
	seen := make(map[types.UID]bool, len(pods))
	for _, p := range pods {
		seen[p.UID] = true
	}
	for _, m := range owned {
		if m.DeletionTimestamp == nil && !seen[m.UID] {
			return true
		}
	}
	return false
}

// claimPods adopts, relabels and releases the pods whose ownership this
// pass changes, and holds back p's creates while pods that may occupy
// nodes are still to enter the pod cache. Adoption waits for a read
// around the cache showing the set still live: a pod adopted by a set
// already deleted would be deleted by the garbage collector.
func (r *Reconciler) claimPods(ctx context.Context, set *nasv1alpha1.NodeAgentSet, selector labels.Selector, pods []*corev1.Pod, p *plan.Plan) error {
	unlabelled, hold, err := r.unlabelled(set, selector, pods)
	if hold > 0 {
		p.Creates = nil
		if p.RequeueAfter == 0 || p.RequeueAfter > hold {
			p.RequeueAfter = hold
		}
	}
	if len(p.Adopt)+len(unlabelled.Adopt) > 0 && r.APIReader != nil {
		if adoptErr := r.canAdopt(ctx, set); adoptErr != nil {
			p.Adopt, unlabelled.Adopt = nil, nil
			err = errors.Join(err, adoptErr)
		}
	}
	return errors.Join(err, r.Executor.ClaimUnlabelled(ctx, set, unlabelled))
}
