package controller

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// scriptedReconciler notes when each pass ran and returns err.
type scriptedReconciler struct {
	now    *time.Time
	err    error
	passes []time.Time
}

func (s *scriptedReconciler) Reconcile(context.Context, ctrl.Request) (ctrl.Result, error) {
	s.passes = append(s.passes, *s.now)
	return ctrl.Result{}, s.err
}

// A failing set's passes stay exponentially spaced however many events
// come: a pass every millisecond of virtual time is asked for (an event
// flood, plus the queue's retries), and the passes that run must follow
// FailureDelay doubling, not the pacing tokens (a paced requeue makes
// controller-runtime forget the queue's own backoff).
func TestFailingSetBacksOffDuringAnEventFlood(t *testing.T) {
	start := time.Unix(1000, 0)
	now := start
	inner := &scriptedReconciler{now: &now, err: errors.New("the API server said no")}
	p := newPaced(inner, PassInterval, PassBurst, nil, 0, func() time.Time { return now })
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "failing"}}
	other := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "other"}}

	const window = 20 * time.Second
	for ; now.Sub(start) <= window; now = now.Add(time.Millisecond) {
		res, err := p.Reconcile(t.Context(), req)
		if err == nil && res.RequeueAfter <= 0 {
			t.Fatalf("at %v: neither an error nor a requeue: the set would be dropped", now.Sub(start))
		}
	}

	// The schedule: 0, 5ms, 15ms, 35ms, ... (each gap twice the one before).
	var want []time.Duration
	for at, gap := time.Duration(0), FailureDelay; at <= window; at, gap = at+gap, 2*gap {
		want = append(want, at)
	}
	if len(inner.passes) != len(want) {
		t.Fatalf("%d passes of a failing set in %v of events every millisecond, want %d (exponential backoff from %v)",
			len(inner.passes), window, len(want), FailureDelay)
	}
	for i, at := range inner.passes {
		if got := at.Sub(start); got != want[i] {
			t.Errorf("pass %d at %v, want %v", i+1, got, want[i])
		}
	}

	// Another set is not held back by this one's failures.
	inner.err = nil
	n := len(inner.passes)
	if res, err := p.Reconcile(t.Context(), other); err != nil || res.RequeueAfter != 0 || len(inner.passes) != n+1 {
		t.Errorf("another set's pass: %v, %v; it waited for the failing set's backoff", res, err)
	}

	// Once a pass succeeds, the backoff is over: the next event runs a
	// pass at once (tokens allowing).
	now = start.Add(want[len(want)-1] + FailureDelay<<(len(want)-1))
	for i := range 2 {
		n := len(inner.passes)
		if res, err := p.Reconcile(t.Context(), req); err != nil || res.RequeueAfter != 0 || len(inner.passes) != n+1 {
			t.Fatalf("event %d after the backoff, the set now healthy: %v, %v; want a pass at once", i+1, res, err)
		}
	}

	// A terminal error is not retried, so it arms no backoff: the event
	// that fixes the set (a spec change) runs at once.
	inner.err = reconcile.TerminalError(errors.New("bad selector"))
	now = now.Add(time.Second)
	_, _ = p.Reconcile(t.Context(), req)
	inner.err = nil
	n = len(inner.passes)
	if res, _ := p.Reconcile(t.Context(), req); res.RequeueAfter != 0 || len(inner.passes) != n+1 {
		t.Errorf("after a terminal error, the next event waited %v", res.RequeueAfter)
	}
}

// A spec change may be the fix: it ends the failure backoff at once rather
// than leaving the set to wait up to FailureDelayMax.
func TestASpecChangeEndsTheFailureBackoff(t *testing.T) {
	now := time.Unix(1000, 0)
	r := &Reconciler{Clock: func() time.Time { return now }}
	p := newPaced(r, PassInterval, PassBurst, nil, 0, func() time.Time { return now })
	key := types.NamespacedName{Namespace: "ns", Name: "failing"}
	for range 20 {
		p.settle(key, errors.New("refused"))
	}
	if p.wait(key) < time.Minute {
		t.Fatalf("after 20 failures the set waits only %v", p.wait(key))
	}
	old, cur := newSetObject(), newSetObject()
	old.SetNamespace("ns")
	old.SetName("failing")
	old.SetGeneration(1)
	old.DeepCopyInto(cur)
	cur.SetGeneration(2)
	if !r.notOwnStatusWrite().Update(event.UpdateEvent{ObjectOld: old, ObjectNew: cur}) {
		t.Fatal("a spec change was dropped")
	}
	if w := p.wait(key); w != 0 {
		t.Fatalf("after a spec change the set still waits %v", w)
	}
}
