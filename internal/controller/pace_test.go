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
	p := newPaced(inner, 25*time.Millisecond, 2, func() time.Time { return now })
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
