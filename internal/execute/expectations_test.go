package execute

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func pod(uid string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: uid, UID: types.UID(uid)}}
}

func uids(pods []*corev1.Pod) map[types.UID]bool {
	m := map[types.UID]bool{}
	for _, p := range pods {
		m[p.UID] = true
	}
	return m
}

func TestOverlayShowsWritesTheCacheHasNotSeen(t *testing.T) {
	e := NewExpectations()
	now := time.Now()
	e.Created("set", pod("new"), now)
	e.Deleted("set", "old", now)

	// A stale cache: has the deleted pod, lacks the created one.
	overlaid := e.Overlay("set", []*corev1.Pod{pod("old"), pod("other")}, now)
	got := uids(overlaid)
	if !got["new"] || !got["old"] || !got["other"] || len(got) != 3 {
		t.Fatalf("stale cache overlaid = %v, want new, old and other", got)
	}
	for _, p := range overlaid {
		if (p.UID == "old") != (p.DeletionTimestamp != nil) {
			t.Errorf("pod %s terminating = %t; only the deleted pod should show as terminating", p.UID, p.DeletionTimestamp != nil)
		}
	}
	// The cache catches up: the overlay adds nothing and forgets both.
	got = uids(e.Overlay("set", []*corev1.Pod{pod("new"), pod("other")}, now))
	if len(got) != 2 || !got["new"] || !got["other"] {
		t.Fatalf("fresh cache overlaid = %v", got)
	}
	if len(e.sets) != 0 {
		t.Errorf("expectations kept after the cache reflected them: %+v", e.sets["set"])
	}
}

func TestOverlayTrustsTheCacheAfterTTL(t *testing.T) {
	e := NewExpectations()
	now := time.Now()
	e.Created("set", pod("lost"), now)
	got := e.Overlay("set", nil, now.Add(ExpectationTTL))
	if len(got) != 0 {
		t.Errorf("overlay after TTL = %v, want the cache as is", got)
	}
}

func TestOverlayKeepsSetsApart(t *testing.T) {
	e := NewExpectations()
	e.Created("a", pod("p"), time.Now())
	if got := e.Overlay("b", nil, time.Now()); len(got) != 0 {
		t.Errorf("set b sees set a's pod: %v", got)
	}
}

func TestBackoffDoublesAndResets(t *testing.T) {
	b := NewBackoff()
	now := time.Now()
	var waits []time.Duration
	for range 5 {
		b.Next("set", "n1", now)
		waits = append(waits, b.Until("set", now)["n1"].Sub(now))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits = %v, want %v", waits, want)
		}
	}
	if _, ok := b.Until("set", now.Add(time.Minute))["n1"]; ok {
		t.Error("node still in backoff after it ended")
	}
	later := now.Add(31 * time.Minute)
	b.Next("set", "n1", later)
	if got := b.Until("set", later)["n1"].Sub(later); got != time.Second {
		t.Errorf("after a quiet spell the backoff is %v, want it reset to 1s", got)
	}
}

func TestShowsOnlyWritesTheOverlayAlreadyHas(t *testing.T) {
	e := NewExpectations()
	now := time.Now()
	created := pod("new")
	created.ResourceVersion = "5"
	e.Created("set", created, now)
	e.Deleted("set", "old", now)

	if !e.Shows("set", created.DeepCopy()) {
		t.Error("the created pod as the API server returned it: not recognised as our own write")
	}
	later := created.DeepCopy()
	later.ResourceVersion = "6" // e.g. bound and Ready before the watch delivered it
	if e.Shows("set", later) {
		t.Error("a later version of the created pod counted as our write; the pass would miss its change")
	}
	gone := pod("old")
	if e.Shows("set", gone) {
		t.Error("the deleted pod, not yet terminating, counted as our write")
	}
	gone.DeletionTimestamp = &metav1.Time{Time: now}
	if !e.Shows("set", gone) {
		t.Error("the pod we deleted, now terminating: not recognised as our own write")
	}
	if e.Shows("set", pod("other")) || e.Shows("other-set", created) {
		t.Error("a pod this process never wrote counted as its write")
	}
}

func TestForgetDropsOnlyTheDeletedSet(t *testing.T) {
	e, b := NewExpectations(), NewBackoff()
	now := time.Now()
	for _, set := range []types.UID{"gone", "kept"} {
		e.Created(set, pod(string(set)+"-pod"), now)
		b.Next(set, "node-a", now)
		b.Next(set, "node-b", now)
	}
	e.Forget("gone")
	b.Forget("gone")
	if e.Len() != 1 || b.Len() != 2 {
		t.Fatalf("after forgetting one of two sets: %d sets of expectations, %d backoffs; want 1 and 2", e.Len(), b.Len())
	}
	if got := uids(e.Overlay("kept", nil, now)); !got["kept-pod"] {
		t.Errorf("the other set's expectations went too: %v", got)
	}
	if got := b.Until("kept", now); len(got) != 2 {
		t.Errorf("the other set's backoffs went too: %v", got)
	}
}
