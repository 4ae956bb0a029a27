// Package controller wires the NodeAgentSet controller into
// controller-runtime: what it watches and caches, and Reconcile, which
// observes a snapshot, asks the pure planner for a plan, hands the plan to
// the executor and writes status once.
package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/execute"
	"github.com/nodeagentset/nodeagentset/internal/plan"
	"github.com/nodeagentset/nodeagentset/internal/podtemplate"
	"github.com/nodeagentset/nodeagentset/internal/revision"
	"github.com/nodeagentset/nodeagentset/internal/status"
)

// RBAC: exactly what this controller calls, no more (config/rbac/README.md
// says why each rule exists). Reads of sets, pods and nodes are served by
// the informer cache, hence list and watch without get.
// +kubebuilder:rbac:groups=nodeagentset.io,resources=nodeagentsets,verbs=list;watch
// +kubebuilder:rbac:groups=nodeagentset.io,resources=nodeagentsets/status,verbs=patch
// +kubebuilder:rbac:groups=nodeagentset.io,resources=nodeagentsets/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch;create;delete;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=list;watch
// +kubebuilder:rbac:groups=apps,resources=controllerrevisions,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconciler reconciles NodeAgentSets.
type Reconciler struct {
	Client client.Client
	// APIReader reads around the cache, for the rare read that must be fresh.
	APIReader client.Reader
	Executor  *execute.Executor
	// Clock returns now; time.Now when nil.
	Clock func() time.Time

	rollouts rollouts
	// stores, set up by SetupWithManager, serve a pass's nodes and pods
	// without copies (the planner, status and executor only read them; the
	// executor copies a pod before a call that writes into it). Nil:
	// Client's lists.
	stores *stores
	// statusWrites holds when each set's status was last written, by
	// namespaced name.
	statusWrites sync.Map
	// costs holds what each set's last pass took to compute (observe, plan
	// and status, not the API calls), by namespaced name: passes are paced
	// by it (see PassSpacing).
	costs sync.Map
	// paced is the wrapper pacing these passes (see newPaced), told to
	// forget a set that went.
	paced *paced
}

// Reconcile runs one pass for one NodeAgentSet.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	set := &nasv1alpha1.NodeAgentSet{}
	if err := r.Client.Get(ctx, req.NamespacedName, set); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName) // see forget.go
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if set.DeletionTimestamp != nil {
		// The garbage collector removes the pods and revisions.
		return ctrl.Result{}, nil
	}
	selector, err := metav1.LabelSelectorAsSelector(set.Spec.Selector.AsMeta())
	if err != nil {
		return ctrl.Result{}, reconcile.TerminalError(fmt.Errorf("parsing spec.selector: %w", err))
	}
	revs, err := r.syncRevision(ctx, set)
	if err != nil {
		return ctrl.Result{}, err
	}
	updateHash := revision.HashOf(revs.update)

	started := time.Now()
	snap, err := r.observe(ctx, set, updateHash)
	if err != nil {
		return ctrl.Result{}, err
	}
	snap.Selector = selector
	p := plan.Compute(snap)
	cost := time.Since(started)
	out, execErr := r.Executor.Execute(ctx, set, p, &set.Spec.Template, updateHash)

	started = time.Now()
	st, wake := status.Compute(status.Input{
		Set: set, Plan: p, UpdateHash: updateHash, UpdateRevision: revs.update.Name,
		CollisionCount: revs.collisionCount, Now: snap.Now, PodFailure: execErr,
	})
	cost += time.Since(started)
	r.costs.Store(req.NamespacedName, cost)
	passCompute.Observe(cost.Seconds())
	r.rollouts.record(set, st, snap.Now)
	pruneErr := r.pruneHistory(ctx, set, revs, liveRevisions(snap.Pods, revs.update.Name, st.CurrentRevision))
	statusDue, statusErr := r.writeStatus(ctx, set, st, snap.Now)
	if err := errors.Join(execErr, pruneErr, statusErr); err != nil {
		return ctrl.Result{}, err
	}
	if !statusDue.IsZero() && (wake.IsZero() || statusDue.Before(wake)) {
		wake = statusDue
	}
	return ctrl.Result{RequeueAfter: requeueAfter(p, out, wake, snap.Now)}, nil
}

// observe reads the snapshot a plan is computed from: every node, the pods
// carrying the set's name (with this process's unreflected writes laid
// over them) and the failed-pod backoffs.
func (r *Reconciler) observe(ctx context.Context, set *nasv1alpha1.NodeAgentSet, updateHash string) (plan.Snapshot, error) {
	now := r.now()
	nodes, pods, err := r.read(ctx, set)
	if err != nil {
		return plan.Snapshot{}, err
	}
	snap := plan.Snapshot{
		Set:        set,
		Nodes:      nodes,
		UpdateHash: updateHash,
		Now:        now,
		Backoff:    r.Executor.Backoff.Until(set.UID, now),
	}
	snap.Pods = r.Executor.Expectations.Overlay(set.UID, pods, now)
	return snap, nil
}

// read lists every node and the set's pods: from the informers' stores when
// the reconciler has them (see stores), else through Client (tests that
// give it a client of their own).
func (r *Reconciler) read(ctx context.Context, set *nasv1alpha1.NodeAgentSet) ([]*corev1.Node, []*corev1.Pod, error) {
	if r.stores != nil {
		pods, err := r.stores.listPods(set.Namespace, set.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("listing Pods: %w", err)
		}
		return r.stores.listNodes(), pods, nil
	}
	var nodeList corev1.NodeList
	if err := r.Client.List(ctx, &nodeList); err != nil {
		return nil, nil, fmt.Errorf("listing Nodes: %w", err)
	}
	var podList corev1.PodList
	if err := r.Client.List(ctx, &podList, client.InNamespace(set.Namespace),
		client.MatchingLabels{nasv1alpha1.LabelSetName: set.Name}); err != nil {
		return nil, nil, fmt.Errorf("listing Pods: %w", err)
	}
	nodes := make([]*corev1.Node, len(nodeList.Items))
	for i := range nodeList.Items {
		nodes[i] = &nodeList.Items[i]
	}
	pods := make([]*corev1.Pod, len(podList.Items))
	for i := range podList.Items {
		pods[i] = &podList.Items[i]
	}
	return nodes, pods, nil
}

// StatusInterval is the least time between two status writes of one set
// that change only counts and messages (see status.Significant); other
// changes are written at once.
const StatusInterval = time.Second

// writeStatus patches the status subresource when it changed. A change of
// counts alone waits until StatusInterval after this set's last write; the
// moment it is due is returned, so the pass can come back for it.
func (r *Reconciler) writeStatus(ctx context.Context, set *nasv1alpha1.NodeAgentSet, st nasv1alpha1.NodeAgentSetStatus, now time.Time) (due time.Time, err error) {
	if equality.Semantic.DeepEqual(set.Status, st) {
		return time.Time{}, nil
	}
	if !status.Significant(set.Status, st) {
		if last, ok := r.statusWrites.Load(client.ObjectKeyFromObject(set)); ok {
			if due := last.(time.Time).Add(StatusInterval); now.Before(due) {
				return due, nil
			}
		}
	}
	updated := set.DeepCopy()
	updated.Status = st
	// A merge patch from the status we read: only this controller writes
	// status, so there is no one to conflict with, and a stale read only
	// costs one more pass.
	if err := r.Client.Status().Patch(ctx, updated, client.MergeFrom(set)); err != nil {
		if apierrors.IsNotFound(err) {
			return time.Time{}, nil
		}
		return time.Time{}, fmt.Errorf("writing status: %w", err)
	}
	r.statusWrites.Store(client.ObjectKeyFromObject(set), now)
	return time.Time{}, nil
}

// passCost is what the last pass of key took to compute; zero when none
// ran yet.
func (r *Reconciler) passCost(key types.NamespacedName) time.Duration {
	if d, ok := r.costs.Load(key); ok {
		return d.(time.Duration)
	}
	return 0
}

// requeueAfter is when to look again without an event: at once after a
// capped pass, when a backoff ends, when a Ready pod becomes available
// (minReadySeconds), or when the progress deadline falls (wake, from
// status.Compute).
func requeueAfter(p plan.Plan, out execute.Outcome, wake, now time.Time) time.Duration {
	if out.Capped {
		return time.Millisecond
	}
	after := p.RequeueAfter
	if !wake.IsZero() {
		if d := wake.Sub(now) + 10*time.Millisecond; after == 0 || d < after {
			after = max(d, time.Millisecond)
		}
	}
	return after
}

func (r *Reconciler) now() time.Time {
	if r.Clock != nil {
		return r.Clock()
	}
	return time.Now()
}

// liveRevisions names the revisions history must keep: the ones pods run,
// the update revision and the current one.
func liveRevisions(pods []*corev1.Pod, names ...string) map[string]bool {
	live := map[string]bool{}
	for _, n := range names {
		live[n] = true
	}
	for _, pod := range pods {
		live[podtemplate.Hash(pod)] = true
	}
	return live
}
