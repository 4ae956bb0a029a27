// Package execute carries out a plan against the API server: it owns every
// side effect of the controller (pod creates and deletes in slow-start
// batches under a burst cap, adoption and release, events) and the memory
// of writes the cache has not shown yet.
package execute

import (
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ExpectationTTL bounds how long a write the cache has not reflected is
// trusted over the cache; past it the cache wins, as in the upstream
// controllers, so a lost watch event cannot wedge a set.
const ExpectationTTL = 2 * time.Minute

// Expectations remembers this process's pod writes until the informer cache
// reflects them, and overlays them on what the cache shows. A pass that
// follows a create before the cache has the new pod therefore still sees it
// and creates no second pod on that node; a pass that follows a delete does
// not count the deleted pod. This is what keeps a stale cache from causing
// duplicates.
type Expectations struct {
	mu   sync.Mutex
	sets map[types.UID]*pending
}

type pending struct {
	created map[types.UID]createdPod
	deleted map[types.UID]time.Time
	// patched holds pods as the server answered a patch of this process
	// (in place, or their readiness gate), until the cache shows them at
	// that version or later.
	patched map[types.UID]createdPod
}

type createdPod struct {
	pod *corev1.Pod
	at  time.Time
}

// NewExpectations returns an empty memory.
func NewExpectations() *Expectations {
	return &Expectations{sets: map[types.UID]*pending{}}
}

func (e *Expectations) forSet(set types.UID) *pending {
	p := e.sets[set]
	if p == nil {
		p = &pending{created: map[types.UID]createdPod{}, deleted: map[types.UID]time.Time{}, patched: map[types.UID]createdPod{}}
		e.sets[set] = p
	}
	return p
}

// Created records a pod the API server accepted.
func (e *Expectations) Created(set types.UID, pod *corev1.Pod, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.forSet(set).created[pod.UID] = createdPod{pod: pod, at: now}
}

// Deleted records a pod the API server accepted to delete.
func (e *Expectations) Deleted(set types.UID, pod types.UID, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.forSet(set).deleted[pod] = now
}

// Patched records a pod as the API server answered a patch of it. Until
// the cache shows that version, a pass sees the answer: a pod patched in
// place shown with its old revision would be patched again, and worse,
// counted as available while its containers restart.
func (e *Expectations) Patched(set types.UID, pod *corev1.Pod, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.forSet(set).patched[pod.UID] = createdPod{pod: pod, at: now}
}

// newer tells whether resourceVersion a is later than b. Versions are
// opaque to clients in general, but the API server's are etcd revisions,
// integers that only grow; anything else counts as not newer, and the
// cache wins.
func newer(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x > y
}

// Overlay returns cached with this process's unreflected writes applied,
// and forgets the writes the cache now reflects or that outlived the TTL.
func (e *Expectations) Overlay(set types.UID, cached []*corev1.Pod, now time.Time) []*corev1.Pod {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.sets[set]
	if p == nil {
		return cached
	}
	inCache := make(map[types.UID]bool, len(cached))
	out := make([]*corev1.Pod, 0, len(cached)+len(p.created))
	terminating := map[types.UID]bool{}
	for _, pod := range cached {
		inCache[pod.UID] = true
		if pod.DeletionTimestamp != nil {
			terminating[pod.UID] = true
		}
		if c, ok := p.patched[pod.UID]; ok {
			if newer(c.pod.ResourceVersion, pod.ResourceVersion) && now.Sub(c.at) < ExpectationTTL {
				pod = c.pod
			} else {
				delete(p.patched, pod.UID)
			}
		}
		if at, ok := p.deleted[pod.UID]; ok && pod.DeletionTimestamp == nil && now.Sub(at) < ExpectationTTL {
			// Deleted, but the cache does not know yet: show it terminating,
			// so it neither counts as an agent nor frees its place early.
			pod = pod.DeepCopy()
			pod.DeletionTimestamp = &metav1.Time{Time: at}
		}
		out = append(out, pod)
	}
	for uid := range p.deleted {
		if !inCache[uid] || terminating[uid] || now.Sub(p.deleted[uid]) >= ExpectationTTL {
			delete(p.deleted, uid)
		}
	}
	for uid, c := range p.created {
		switch {
		case inCache[uid] || now.Sub(c.at) >= ExpectationTTL:
			delete(p.created, uid)
		case p.patched[uid].pod != nil:
			out = append(out, p.patched[uid].pod)
		default:
			out = append(out, c.pod)
		}
	}
	for uid := range p.patched {
		if !inCache[uid] && p.created[uid].pod == nil {
			delete(p.patched, uid)
		}
	}
	if len(p.created) == 0 && len(p.deleted) == 0 && len(p.patched) == 0 {
		delete(e.sets, set)
	}
	return out
}

// Shows reports whether pod, as a watch event shows it, is only a write of
// this process that Overlay already lays over the cache: a pod it created,
// as the API server returned it, or one it deleted, now terminating. A
// pass for such an event would see what the pass that made the write saw.
func (e *Expectations) Shows(set types.UID, pod *corev1.Pod) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.sets[set]
	if p == nil {
		return false
	}
	if c, ok := p.created[pod.UID]; ok {
		return c.pod.ResourceVersion == pod.ResourceVersion
	}
	_, ok := p.deleted[pod.UID]
	return ok && pod.DeletionTimestamp != nil
}

// Forget drops everything remembered for a set (it was deleted). The
// controller calls it when a set goes: anything kept in a map is forgotten
// when its object goes.
func (e *Expectations) Forget(set types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.sets, set)
}

// Len is how many sets have writes remembered.
func (e *Expectations) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sets)
}

// Backoff spaces out the replacement of agents that keep failing on a node:
// 1s after the first failure, doubling up to 15 minutes, reset after a
// quiet spell of twice the maximum.
type Backoff struct {
	mu      sync.Mutex
	initial time.Duration
	max     time.Duration
	nodes   map[backoffKey]backoffEntry
}

type backoffKey struct {
	set  types.UID
	node string
}

type backoffEntry struct {
	delay time.Duration
	last  time.Time
}

// NewBackoff returns a backoff with the DaemonSet controller's durations.
func NewBackoff() *Backoff {
	return &Backoff{initial: time.Second, max: 15 * time.Minute, nodes: map[backoffKey]backoffEntry{}}
}

// Next records a replacement on node now and lengthens its backoff.
func (b *Backoff) Next(set types.UID, node string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := backoffKey{set, node}
	e, ok := b.nodes[k]
	if !ok || now.Sub(e.last) > 2*b.max {
		e.delay = b.initial
	} else {
		e.delay = min(2*e.delay, b.max)
	}
	e.last = now
	b.nodes[k] = e
}

// Until maps each node of set still in backoff to when it ends, and drops
// entries that have gone quiet.
func (b *Backoff) Until(set types.UID, now time.Time) map[string]time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]time.Time{}
	for k, e := range b.nodes {
		if now.Sub(e.last) > 2*b.max {
			delete(b.nodes, k)
			continue
		}
		if k.set == set && now.Before(e.last.Add(e.delay)) {
			out[k.node] = e.last.Add(e.delay)
		}
	}
	return out
}

// Forget drops the backoffs of a set's nodes (the set was deleted; Until
// would only drop them after a quiet spell, and only while other sets run).
func (b *Backoff) Forget(set types.UID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.nodes {
		if k.set == set {
			delete(b.nodes, k)
		}
	}
}

// Len is how many nodes of all sets are remembered.
func (b *Backoff) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.nodes)
}
