package controller

import (
	"errors"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// Memory gives the external tests (package controller_test, which share
// the suite's API server) a view of what a reconciler and its pacing keep
// per set.
type Memory struct {
	r *Reconciler
	p *paced
}

// Paced wraps r as SetupWithManager does and returns the wrapper with a
// view of their memory.
func Paced(r *Reconciler) (reconcile.Reconciler, *Memory) {
	p := newPaced(r, PassInterval, PassBurst, r.passCost, PassSpacing, r.now)
	return p, &Memory{r: r, p: p}
}

// Sizes counts the entries of every per-set map.
func (m *Memory) Sizes() map[string]int {
	count := func(s *sync.Map) int {
		n := 0
		s.Range(func(any, any) bool { n++; return true })
		return n
	}
	starts, uids := m.r.rollouts.sizes()
	m.p.mu.Lock()
	defer m.p.mu.Unlock()
	return map[string]int{
		"statusWrites":  count(&m.r.statusWrites),
		"costs":         count(&m.r.costs),
		"canonical":     count(&m.r.canonicalRevisions),
		"rolloutStarts": starts,
		"setUIDs":       uids,
		"expectations":  m.r.Executor.Expectations.Len(),
		"backoffs":      m.r.Executor.Backoff.Len(),
		"buckets":       len(m.p.buckets),
		"failures":      len(m.p.failures),
	}
}

// LeaveTraces leaves in memory what a pass of set could have left besides
// what the test's passes leave on their own (a set without nodes creates
// no pod and times no rollout): a pod create the cache has not shown, two
// nodes in backoff, a rollout under way and a failed pass. Call it right
// after a pass of set: only the executor and the pass write these, and
// every pass records the set's UID.
func (m *Memory) LeaveTraces(set *nasv1alpha1.NodeAgentSet, now time.Time) {
	uid := set.UID
	m.r.Executor.Expectations.Created(uid, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace: set.Namespace, Name: set.Name + "-unseen", UID: uid + "-pod"}}, now)
	m.r.Executor.Backoff.Next(uid, "node-a", now)
	m.r.Executor.Backoff.Next(uid, "node-b", now)
	m.r.rollouts.mu.Lock()
	m.r.rollouts.start[uid] = rolloutStart{revision: "next", at: now}
	m.r.rollouts.mu.Unlock()
	m.p.settle(types.NamespacedName{Namespace: set.Namespace, Name: set.Name}, errors.New("a failed pass"))
}

// Holds tells, of each UID-keyed memory, whether it holds something of the
// set with uid.
func (m *Memory) Holds(uid types.UID, now time.Time) map[string]bool {
	m.r.rollouts.mu.Lock()
	_, started := m.r.rollouts.start[uid]
	m.r.rollouts.mu.Unlock()
	return map[string]bool{
		"expectations": len(m.r.Executor.Expectations.Overlay(uid, nil, now)) > 0,
		"backoffs":     len(m.r.Executor.Backoff.Until(uid, now)) > 0,
		"rolloutStart": started,
	}
}

// WatchesPodsOf reports whether r runs a pod metadata watch for ns.
func (r *Reconciler) WatchesPodsOf(ns string) bool {
	if r.podMetadata == nil {
		return false
	}
	r.podMetadata.mu.Lock()
	defer r.podMetadata.mu.Unlock()
	_, ok := r.podMetadata.byNS[ns]
	return ok
}
