// Package controller wires the NodeAgentSet controller into
// controller-runtime: what it watches and caches, and Reconcile, which
// observes a snapshot, asks the pure planner for a plan, hands the plan to
// the executor and writes status once.
package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/execute"
	"github.com/nodeagentset/nodeagentset/internal/inplace"
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
// +kubebuilder:rbac:groups="",resources=pods/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// (Removing startup taints needs nodes patch, granted apart, only where the
// feature is wanted: config/rbac/startup_taint_role.yaml; no marker here.)
// +kubebuilder:rbac:groups=apps,resources=controllerrevisions,verbs=get;list;watch;create;update;patch;delete
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
	// statusWrites holds what this process last wrote to each set's
	// status (a *statusRecord), by namespaced name.
	statusWrites sync.Map
	// costs holds what each set's last pass took to compute (observe, plan
	// and status, not the API calls), by namespaced name: passes are paced
	// by it (see PassSpacing).
	costs sync.Map
	// canonicalRevisions holds, by namespaced name, the UIDs of the set's
	// revisions known to store their data canonically (see claimHistory).
	canonicalRevisions sync.Map
	// paced is the wrapper pacing these passes (see newPaced), told to
	// forget a set that went.
	paced *paced
	// podMetadata watches the pods of namespaces with sets (see
	// unlabelled.go); nil without SetupWithManager.
	podMetadata *podMetadataWatches
}

// Reconcile runs one pass for one NodeAgentSet.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	set, err := r.getSet(ctx, req.NamespacedName)
	if bad, ok := asInvalid(err); ok {
		return ctrl.Result{}, r.reportInvalid(ctx, bad)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName) // see forget.go
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if set.DeletionTimestamp != nil {
		// The garbage collector removes the pods and revisions, or, with
		// --cascade=orphan, releases them (which needs unblockOrphaning).
		return ctrl.Result{}, r.unblockOrphaning(ctx, set)
	}
	selector, err := metav1.LabelSelectorAsSelector(set.Spec.Selector.AsMeta())
	if err != nil {
		return ctrl.Result{}, r.reportInvalid(ctx, &invalidObject{obj: set, err: fmt.Errorf("spec.selector: %w", err)})
	}
	if err := podtemplate.CheckOverrides(&set.Spec); err != nil {
		return ctrl.Result{}, r.reportInvalid(ctx, &invalidObject{obj: set, err: err})
	}
	revs, err := r.syncRevision(ctx, set, selector)
	if err != nil {
		return ctrl.Result{}, r.reportFailure(ctx, set, "RevisionSyncFailed", err)
	}
	updateHash := revision.HashOf(revs.update)

	started := time.Now()
	snap, err := r.observe(ctx, set, updateHash)
	if err != nil {
		return ctrl.Result{}, r.reportFailure(ctx, set, "ReadFailed", err)
	}
	snap.Selector = selector
	snap.Set = r.withOwnRollout(set)
	p := plan.Compute(snap)
	templates := newPodTemplates(set, revs, updateHash, snap.Nodes)
	inplace.Convert(&p, set, updateHash, templates.forNode)
	cost := time.Since(started)
	r.warnTrouble(set, p)
	claimErr := r.claimPods(ctx, set, selector, snap.Pods, &p)
	out, execErr := r.Executor.Execute(ctx, set, p, templates.build, updateHash)
	execErr = errors.Join(claimErr, execErr)
	taint := r.Executor.LiftStartupTaint(ctx, set, p.StartupTaint.Lift)

	started = time.Now()
	st, wake := status.Compute(status.Input{
		Set: set, Plan: p, UpdateHash: updateHash, UpdateRevision: revs.update.Name,
		CollisionCount: revs.collisionCount, Now: snap.Now, PodFailure: execErr,
		StartupTaint: status.TaintResult{Waiting: p.StartupTaint.Waiting, Forbidden: taint.Forbidden, Err: taint.Err},
	})
	cost += time.Since(started)
	r.costs.Store(req.NamespacedName, cost)
	passCompute.Observe(cost.Seconds())
	r.rollouts.record(set, st, skipped(p), snap.Now)
	r.recordStage(set, st)
	pruneErr := r.pruneHistory(ctx, set, revs, liveRevisions(snap.Pods, revs.update.Name, st.CurrentRevision))
	statusDue, statusErr := r.writeStatus(ctx, set, st, snap.Now)
	if err := errors.Join(execErr, taint.Err, pruneErr, statusErr); err != nil {
		return ctrl.Result{}, err
	}
	if !statusDue.IsZero() && (wake.IsZero() || statusDue.Before(wake)) {
		wake = statusDue
	}
	if taint.Forbidden != nil {
		// Reported on the set, not returned: no event says when the
		// permission is granted, so look again after a while, without
		// the error backoff (the set is otherwise served as usual).
		if retry := snap.Now.Add(StartupTaintRetry); wake.IsZero() || retry.Before(wake) {
			wake = retry
		}
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

// StartupTaintRetry is how soon a startup taint the manager may not lift
// (no permission to patch nodes) is tried again.
const StartupTaintRetry = 30 * time.Second

// StatusInterval is the least time between two status writes of one set
// that change only counts and messages (see status.Significant); other
// changes are written at once.
const StatusInterval = time.Second

// statusRecord is what this process last wrote to one set's status: the
// status, when, and the resourceVersions its writes produced (the latest
// few), by which the cache's copy of the set is known to be ours.
type statusRecord struct {
	status nasv1alpha1.NodeAgentSetStatus
	at     time.Time
	rvs    []string
}

// keptVersions bounds the resourceVersions remembered per set: the cache
// lags by a write or two, rarely more; an older version found in it only
// costs a redundant write.
const keptVersions = 8

func (rec *statusRecord) wrote(rv string) bool { return rec != nil && slices.Contains(rec.rvs, rv) }

// next is the record after a write of st that produced rv: rv first, then
// the newest of the versions before it.
func (rec *statusRecord) next(st nasv1alpha1.NodeAgentSetStatus, now time.Time, rv string) *statusRecord {
	n := &statusRecord{status: st, at: now, rvs: []string{rv}}
	if rec != nil {
		n.rvs = append(n.rvs, rec.rvs[:min(len(rec.rvs), keptVersions-1)]...)
	}
	return n
}

// differs reports whether st may differ from the status the API server
// holds for set, cached as given. When the cached copy is one of this
// process's writes, the latest write is what the server holds (the cache
// may lag behind it). Otherwise the cached copy is someone else's write,
// or older than this process's writes: st is written unless it equals
// both.
func (rec *statusRecord) differs(cached *nasv1alpha1.NodeAgentSet, st nasv1alpha1.NodeAgentSetStatus) bool {
	if rec == nil {
		return !equality.Semantic.DeepEqual(cached.Status, st)
	}
	ours := !equality.Semantic.DeepEqual(rec.status, st)
	if rec.wrote(cached.ResourceVersion) {
		return ours
	}
	return ours || !equality.Semantic.DeepEqual(cached.Status, st)
}

func (r *Reconciler) statusRecordOf(key types.NamespacedName) *statusRecord {
	if v, ok := r.statusWrites.Load(key); ok {
		return v.(*statusRecord)
	}
	return nil
}

// ownStatusWrite reports whether set, as an event shows it, is only a
// status write of this process; such events start no pass.
func (r *Reconciler) ownStatusWrite(set client.Object) bool {
	return r.statusRecordOf(client.ObjectKeyFromObject(set)).wrote(set.GetResourceVersion())
}

// writeStatus writes the status when it differs from what the API server
// holds as far as this process can tell: from what it last wrote, and
// from the cached copy unless that copy is one of its own writes (the
// cache may lag behind them; someone else may have overwritten them). A
// change of counts alone waits until StatusInterval after the last write;
// the moment it is due is returned, so the pass can come back for it.
//
// The patch carries the whole status, not a difference: a difference
// against a copy that has not seen the previous write leaves out what
// "did not change", and the server keeps the previous write's value for
// it with no event to repair it.
func (r *Reconciler) writeStatus(ctx context.Context, set *nasv1alpha1.NodeAgentSet, st nasv1alpha1.NodeAgentSetStatus, now time.Time) (due time.Time, err error) {
	key := client.ObjectKeyFromObject(set)
	rec := r.statusRecordOf(key)
	if !rec.differs(set, st) {
		return time.Time{}, nil
	}
	if rec != nil && !status.Significant(rec.status, st) {
		if due := rec.at.Add(StatusInterval); now.Before(due) {
			return due, nil
		}
	}
	patch, err := status.MergePatch(st)
	if err != nil {
		return time.Time{}, err
	}
	// The answer, decoded into updated, gives the new resourceVersion.
	updated := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{Namespace: set.Namespace, Name: set.Name}}
	if err := r.Client.Status().Patch(ctx, updated, client.RawPatch(types.MergePatchType, patch)); err != nil {
		if apierrors.IsNotFound(err) {
			return time.Time{}, nil
		}
		return time.Time{}, fmt.Errorf("writing status: %w", err)
	}
	r.statusWrites.Store(key, rec.next(st, now, updated.ResourceVersion))
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
