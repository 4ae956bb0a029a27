package controller

import (
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
)

// Anything kept in a map is forgotten when its object goes. What the
// controller keeps per set:
//   - by namespace: the pod metadata watch (stopped with the last set);
//   - by namespaced name: the reconciler's statusWrites, costs and
//     canonicalRevisions, the
//     pacing buckets and failure backoffs (paced), the per-set metrics;
//   - by UID: rollout starts (rollouts), the executor's Expectations and
//     Backoff.
//
// A pass that finds its set gone calls forget with the name; rollouts
// keeps which UID each name holds (every pass that may leave something
// under a UID records it), so the UID-keyed memory goes too. A set deleted
// and re-created under the same name before any pass saw it gone is caught
// when a pass first records the new UID: the old UID is forgotten then
// (see rollouts.record), and the new one's state is left alone.

// wire lets r forget, when a set goes, what p keeps of it, and forget the
// UID a re-created set replaced. newPaced calls it; a Reconciler driven
// without it (some tests) forgets only its own maps and the UID-keyed
// memory of the set a pass finds gone.
func (r *Reconciler) wire(p *paced) {
	r.paced = p
	r.rollouts.mu.Lock()
	defer r.rollouts.mu.Unlock()
	r.rollouts.replaced = r.forgetUID
}

// forget drops everything kept of the set that was named key.
func (r *Reconciler) forget(key types.NamespacedName) {
	forgetMetrics(key.Namespace, key.Name)
	r.statusWrites.Delete(key)
	r.costs.Delete(key)
	r.canonicalRevisions.Delete(key)
	if uid, ok := r.rollouts.forget(key); ok {
		r.forgetUID(uid)
	}
	if r.paced != nil {
		r.paced.forget(key)
	}
	if r.podMetadata != nil && r.stores != nil {
		if left, err := r.stores.sets.ByIndex(toolscache.NamespaceIndex, key.Namespace); err == nil && len(left) == 0 {
			r.podMetadata.stop(key.Namespace)
		}
	}
}

// forgetUID drops what the executor keeps of the set with uid.
func (r *Reconciler) forgetUID(uid types.UID) {
	if r.Executor == nil {
		return
	}
	if r.Executor.Expectations != nil {
		r.Executor.Expectations.Forget(uid)
	}
	if r.Executor.Backoff != nil {
		r.Executor.Backoff.Forget(uid)
	}
}
