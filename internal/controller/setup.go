package controller

import (
	"context"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/execute"
	"github.com/nodeagentset/nodeagentset/internal/health"
	"github.com/nodeagentset/nodeagentset/internal/inplace"
	"github.com/nodeagentset/nodeagentset/internal/nodehealth"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
)

// IndexPodNode indexes cached pods by the node they run on or are pinned to.
const IndexPodNode = "nodeagentset.io/node"

// CacheOptions keeps the informer caches lean: only pods and revisions that
// carry the set-name label (not every pod of the cluster), no managed
// fields anywhere, and of nodes only what eligibility reads.
func CacheOptions() cache.Options {
	ours, err := labels.NewRequirement(nasv1alpha1.LabelSetName, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant requirement; cannot fail
	}
	onlyOurs := labels.NewSelector().Add(*ours)
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                {Label: onlyOurs},
			&appsv1.ControllerRevision{}: {Label: onlyOurs},
			&corev1.Node{}:               {Transform: leanNode},
		},
	}
}

// leanNode keeps what eligibility and node health read (name, labels,
// taints, cordon, deletion, the Ready condition's status and transition
// time) and what node overrides read (allocatable), and drops the rest
// (images, heartbeats, the condition messages, annotations), which is most
// of a node's size. With heartbeats gone, a heartbeat-only update leaves
// the cached node equal but for its resourceVersion, which
// eligibilityChanged lets through as nothing.
func leanNode(obj any) (any, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	var conditions []corev1.NodeCondition
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime}}
		}
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:              node.Name,
			UID:               node.UID,
			ResourceVersion:   node.ResourceVersion,
			CreationTimestamp: node.CreationTimestamp,
			DeletionTimestamp: node.DeletionTimestamp,
			Labels:            node.Labels,
		},
		Spec:   corev1.NodeSpec{Taints: node.Spec.Taints, Unschedulable: node.Spec.Unschedulable},
		Status: corev1.NodeStatus{Conditions: conditions, Allocatable: node.Status.Allocatable},
	}, nil
}

// SetupWithManager registers the controller and its watches.
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, maxConcurrent int) error {
	err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, IndexPodNode, func(o client.Object) []string {
		if n := podtemplate.NodeOf(o.(*corev1.Pod)); n != "" {
			return []string{n}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Before the cache starts this only registers the informers; it does
	// not wait for them.
	if r.stores, err = newStores(ctx, mgr.GetCache()); err != nil {
		return err
	}
	if r.podMetadata, err = newPodMetadataWatches(ctx, mgr); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(newSetObject(), builder.WithPredicates(r.notOwnStatusWrite())).
		Owns(&appsv1.ControllerRevision{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(podToSet), builder.WithPredicates(podChanged(r.Executor.Expectations))).
		Watches(&corev1.Node{}, r.nodeHandler(), builder.WithPredicates(eligibilityChanged())).
		WatchesRawSource(r.podMetadata.source(r)).
		WithOptions(controller.Options{MaxConcurrentReconciles: maxConcurrent}).
		Named("nodeagentset").
		Complete(newPaced(r, PassInterval, PassBurst, r.passCost, PassSpacing, r.now))
}

// podToSet maps a pod to its controlling set, or an orphan to the set its
// name label names (which may adopt it).
func podToSet(_ context.Context, o client.Object) []reconcile.Request {
	if ref := metav1.GetControllerOfNoCopy(o); ref != nil {
		if !plan.ControlledBySetKind(ref) {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}}}
	}
	if name := o.GetLabels()[nasv1alpha1.LabelSetName]; name != "" {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
	}
	return nil
}

// nodeHandler queues every set when a node appears or changes in a way
// eligibility cares about (any set may now want it or let it go), and, when
// a node goes, the sets with pods on it.
func (r *Reconciler) nodeHandler() handler.EventHandler {
	all := func(context.Context, client.Object) []reconcile.Request {
		keys := r.stores.setKeys()
		reqs := make([]reconcile.Request, len(keys))
		for i, k := range keys {
			reqs[i] = reconcile.Request{NamespacedName: k}
		}
		return reqs
	}
	onNode := func(ctx context.Context, o client.Object) []reconcile.Request {
		var pods corev1.PodList
		if err := r.Client.List(ctx, &pods, client.MatchingFields{IndexPodNode: o.GetName()}); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		for i := range pods.Items {
			for _, req := range podToSet(ctx, &pods.Items[i]) {
				if !slices.Contains(reqs, req) {
					reqs = append(reqs, req)
				}
			}
		}
		return reqs
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			addAll(q, all(ctx, e.Object))
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			addAll(q, all(ctx, e.ObjectNew))
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			addAll(q, onNode(ctx, e.Object))
		},
	}
}

func addAll(q workqueue.TypedRateLimitingInterface[reconcile.Request], reqs []reconcile.Request) {
	for _, r := range reqs {
		q.Add(r)
	}
}

// notOwnStatusWrite lets through every change of a set but the status
// writes of this process: spec changes, and status written by anyone else,
// which the next pass puts right (with only generation changes let
// through, an overwritten status stayed wrong until an unrelated event).
func (r *Reconciler) notOwnStatusWrite() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		if e.ObjectNew.GetGeneration() != e.ObjectOld.GetGeneration() {
			if r.paced != nil {
				r.paced.retryNow(client.ObjectKeyFromObject(e.ObjectNew))
			}
			return true
		}
		return !r.ownStatusWrite(e.ObjectNew)
	}}
}

// eligibilityChanged lets through node updates that can change whether an
// agent may run there or whether the rollout skips the node: labels,
// taints, cordoning, readiness, deletion. Heartbeats and image lists do
// not.
func eligibilityChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(*corev1.Node)
		cur, okNew := e.ObjectNew.(*corev1.Node)
		if !okOld || !okNew {
			return true
		}
		return !equality.Semantic.DeepEqual(old.Labels, cur.Labels) ||
			!equality.Semantic.DeepEqual(old.Spec.Taints, cur.Spec.Taints) ||
			old.Spec.Unschedulable != cur.Spec.Unschedulable ||
			(old.DeletionTimestamp == nil) != (cur.DeletionTimestamp == nil) ||
			!nodehealth.Of(old).Equal(nodehealth.Of(cur))
	}}
}

// podChanged lets through pod events that can change a pass: of updates,
// what the planner and status read (labels, controller, node, phase,
// readiness and its time, deletion). Binding and the kubelet's other
// status updates do not; they were half the passes of a rollout. Events
// that only show this process's own create or delete, which the pass that
// wrote it already laid over the cache (see execute.Expectations), do not
// either: a third of the passes of a join.
func podChanged(own *execute.Expectations) predicate.Predicate {
	ours := func(pod *corev1.Pod) bool {
		ref := metav1.GetControllerOfNoCopy(pod)
		return ref != nil && own.Shows(ref.UID, pod)
	}
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool {
			pod, ok := e.Object.(*corev1.Pod)
			return !ok || !ours(pod)
		},
		UpdateFunc: func(e event.UpdateEvent) bool {
			old, okOld := e.ObjectOld.(*corev1.Pod)
			cur, okNew := e.ObjectNew.(*corev1.Pod)
			if !okOld || !okNew {
				return true
			}
			if old.DeletionTimestamp == nil && cur.DeletionTimestamp != nil {
				return !ours(cur)
			}
			oldSince, oldReady := plan.ReadySince(old)
			curSince, curReady := plan.ReadySince(cur)
			return !equality.Semantic.DeepEqual(old.Labels, cur.Labels) ||
				!equality.Semantic.DeepEqual(old.OwnerReferences, cur.OwnerReferences) ||
				podtemplate.NodeOf(old) != podtemplate.NodeOf(cur) ||
				(old.DeletionTimestamp == nil) != (cur.DeletionTimestamp == nil) ||
				old.Status.Phase != cur.Status.Phase ||
				oldReady != curReady || !oldSince.Equal(curSince) ||
				inplace.ShouldOpen(old) != inplace.ShouldOpen(cur) ||
				troubleChanged(old, cur) || restartCount(old) != restartCount(cur)
		},
	}
}

// troubleChanged: the reason the agent does not run (see health.Of)
// appeared, changed or went, which a pass reports as a Warning.
func troubleChanged(old, cur *corev1.Pod) bool {
	a, _ := health.Of(old)
	b, _ := health.Of(cur)
	return a != b
}

// NewReconciler builds the reconciler with its executor on mgr's clients.
func NewReconciler(mgr ctrl.Manager) *Reconciler {
	return &Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Executor: &execute.Executor{
			Client:       mgr.GetClient(),
			APIReader:    mgr.GetAPIReader(),
			Recorder:     mgr.GetEventRecorder("nodeagentset-controller"),
			Expectations: execute.NewExpectations(),
			Backoff:      execute.NewBackoff(),
		},
	}
}

// restartCount is what health.maxRestarts of a staged rollout judges.
func restartCount(pod *corev1.Pod) int32 {
	n, _ := podtemplate.Restarts(pod)
	return n
}
