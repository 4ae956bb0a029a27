package controller

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
)

type countingReconciler map[types.NamespacedName]int

func (c countingReconciler) Reconcile(_ context.Context, req ctrl.Request) (ctrl.Result, error) {
	c[req.NamespacedName]++
	return ctrl.Result{}, nil
}

func TestPassesOfASetArePaced(t *testing.T) {
	now := time.Unix(1000, 0)
	inner := countingReconciler{}
	p := newPaced(inner, 25*time.Millisecond, 2, nil, 0, func() time.Time { return now })
	a, b := ctrl.Request{NamespacedName: types.NamespacedName{Name: "a"}}, ctrl.Request{NamespacedName: types.NamespacedName{Name: "b"}}
	pass := func(req ctrl.Request) time.Duration {
		t.Helper()
		res, err := p.Reconcile(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res.RequeueAfter
	}

	for i := range 2 {
		if after := pass(a); after != 0 {
			t.Fatalf("event %d of a burst of 2: requeued after %v, want a pass at once", i+1, after)
		}
	}
	now = now.Add(10 * time.Millisecond)
	if after := pass(a); after != 15*time.Millisecond {
		t.Errorf("third event 10ms later: requeue after %v, want 15ms", after)
	}
	if inner[a.NamespacedName] != 2 {
		t.Errorf("%d passes, want 2", inner[a.NamespacedName])
	}
	if after := pass(b); after != 0 || inner[b.NamespacedName] != 1 {
		t.Errorf("another set waited (%v) for the first one's bucket", after)
	}
	now = now.Add(15 * time.Millisecond)
	if after := pass(a); after != 0 || inner[a.NamespacedName] != 3 {
		t.Errorf("after the interval: requeue %v, %d passes; want the third pass", after, inner[a.NamespacedName])
	}
	// A quiet spell refills the bucket: a burst passes at once again.
	now = now.Add(time.Second)
	for range 2 {
		if after := pass(a); after != 0 {
			t.Errorf("after a quiet second: requeued after %v", after)
		}
	}
}

func TestCostlyPassesAreSpacedFurther(t *testing.T) {
	now := time.Unix(1000, 0)
	inner := countingReconciler{}
	cost := map[types.NamespacedName]time.Duration{}
	p := newPaced(inner, 10*time.Millisecond, 1, func(k types.NamespacedName) time.Duration { return cost[k] }, 20,
		func() time.Time { return now })
	big, small := types.NamespacedName{Name: "big"}, types.NamespacedName{Name: "small"}
	cost[big], cost[small] = 3*time.Millisecond, 100*time.Microsecond

	for _, key := range []types.NamespacedName{big, small} {
		if res, _ := p.Reconcile(t.Context(), ctrl.Request{NamespacedName: key}); res.RequeueAfter != 0 {
			t.Fatalf("%s: first pass waited %v", key.Name, res.RequeueAfter)
		}
	}
	now = now.Add(10 * time.Millisecond)
	// 20 × 3ms: the set whose passes cost 3ms gets one per 60ms.
	if res, _ := p.Reconcile(t.Context(), ctrl.Request{NamespacedName: big}); res.RequeueAfter != 50*time.Millisecond {
		t.Errorf("costly set 10ms after its pass: requeue after %v, want 50ms", res.RequeueAfter)
	}
	// 20 × 100µs is below the fixed interval, which holds.
	if res, _ := p.Reconcile(t.Context(), ctrl.Request{NamespacedName: small}); res.RequeueAfter != 0 {
		t.Errorf("cheap set 10ms after its pass: requeue after %v, want a pass at once", res.RequeueAfter)
	}
	if inner[big] != 1 || inner[small] != 2 {
		t.Errorf("passes: big %d, small %d; want 1 and 2", inner[big], inner[small])
	}
}
