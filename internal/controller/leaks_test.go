package controller_test

import (
	"fmt"
	"maps"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
	"github.com/nodeagentset/nodeagentset/internal/controller"
	"github.com/nodeagentset/nodeagentset/internal/execute"
)

// Memory stays flat over many sets created and deleted: everything a
// reconciler, its pacing, its executor's expectations and backoffs and its
// rollout timer keep of a set is forgotten when the set goes, including a
// set deleted and re-created under the same name before any pass saw it
// gone (the old UID's memory goes, the new one's stays).
//
// A reconciler of the test's own, on the suite's API server, is driven by
// direct calls (through the pacing wrapper, as in production); the
// manager's controller works on the same sets meanwhile, as it would.
func TestMemoryIsFlatOverSetCreatesAndDeletes(t *testing.T) {
	f := newFixture(t, "leaks")
	ctx := f.ctx
	var clock atomic.Int64 // a fake clock, so that backoffs pass at once
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	r := &controller.Reconciler{
		Client:    k8s,
		APIReader: k8s,
		Executor: &execute.Executor{
			Client:       k8s,
			Expectations: execute.NewExpectations(),
			Backoff:      execute.NewBackoff(),
			Clock:        now,
		},
		Clock: now,
	}
	paced, mem := controller.Paced(r)
	pass := func(key types.NamespacedName) error {
		// Past the pacing and a first failure's backoff, well short of the
		// quiet spell after which a node's backoff lapses on its own.
		clock.Add(int64(100 * time.Millisecond))
		if _, err := paced.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
			return fmt.Errorf("pass of %s: %w", key, err)
		}
		return nil
	}
	live := func(name string) (*nasv1alpha1.NodeAgentSet, error) {
		set := f.newSet(func(s *nasv1alpha1.NodeAgentSet) { s.Name = name })
		if err := k8s.Create(ctx, set); err != nil {
			return nil, err
		}
		if err := pass(client.ObjectKeyFromObject(set)); err != nil {
			return nil, err
		}
		mem.LeaveTraces(set, now())
		return set, nil
	}
	none := map[string]bool{"expectations": false, "backoffs": false, "rolloutStart": false}
	all := map[string]bool{"expectations": true, "backoffs": true, "rolloutStart": true}
	// cycle creates a set, deletes it and creates another under the same
	// name with no pass in between (the first pass of the new set forgets
	// the old one), then deletes that one and runs a pass, which finds it
	// gone: two creates and deletes.
	cycle := func(name string) error {
		old, err := live(name)
		if err != nil {
			return err
		}
		if err := k8s.Delete(ctx, old); err != nil {
			return err
		}
		fresh, err := live(name)
		if err != nil {
			return err
		}
		if fresh.UID == old.UID {
			return fmt.Errorf("%s re-created with its old UID", name)
		}
		if got := mem.Holds(old.UID, now()); !maps.Equal(got, none) {
			return fmt.Errorf("%s re-created under its name: the old set's memory stayed: %v", name, got)
		}
		if got := mem.Holds(fresh.UID, now()); !maps.Equal(got, all) {
			return fmt.Errorf("%s re-created under its name: the new set's memory went: %v", name, got)
		}
		if err := k8s.Delete(ctx, fresh); err != nil {
			return err
		}
		if err := pass(client.ObjectKeyFromObject(fresh)); err != nil {
			return err
		}
		if got := mem.Holds(fresh.UID, now()); !maps.Equal(got, none) {
			return fmt.Errorf("%s went: its memory stayed: %v", name, got)
		}
		return nil
	}

	// One set lives through the test: its memory must stay.
	keep, err := live("kept")
	if err != nil {
		t.Fatal(err)
	}
	before := mem.Sizes()
	if before["expectations"] != 1 || before["failures"] != 1 || before["statusWrites"] != 1 {
		t.Fatalf("the kept set left no traces to keep, the test sees nothing: %v", before)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse

	// Four at a time, as the manager's workers would.
	const cycles, workers = 1000, 4
	started := time.Now()
	names := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for name := range names {
				if err := cycle(name); err != nil {
					t.Error(err)
					for range names { // drain: stop at the first failure
					}
				}
			}
		})
	}
	for i := range cycles / 2 {
		names <- fmt.Sprintf("cycle-%d", i)
	}
	close(names)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	elapsed := time.Since(started)

	runtime.GC()
	runtime.ReadMemStats(&ms)
	const bound = 64 << 20 // generous: the manager's caches and the API client churn too
	if grown := int64(ms.HeapInuse) - int64(heapBefore); grown > bound {
		t.Errorf("heap in use grew by %d MiB over %d creates and deletes, want at most %d MiB",
			grown>>20, cycles, bound>>20)
	}
	if got := mem.Sizes(); !maps.Equal(got, before) {
		t.Errorf("after %d creates and deletes: memory %v, want %v as before", cycles, got, before)
	}
	t.Logf("%d creates and deletes in %v; heap in use %d MiB before, %d MiB after", cycles, elapsed,
		heapBefore>>20, ms.HeapInuse>>20)

	// The set that stayed is still known: its pass goes on from its memory.
	if err := k8s.Delete(ctx, keep); err != nil {
		t.Fatal(err)
	}
	if err := pass(client.ObjectKeyFromObject(keep)); err != nil {
		t.Fatal(err)
	}
	if got := mem.Sizes(); got["expectations"] != 0 || got["setUIDs"] != 0 || got["buckets"] != 0 {
		t.Errorf("after the last set went: memory %v, want empty", got)
	}
}
