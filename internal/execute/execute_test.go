package execute

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/nodeagentset/nodeagentset/internal/status"
)

func TestSlowStartStopsAfterTheFirstFailingBatch(t *testing.T) {
	var calls atomic.Int32
	var done []int
	err := slowStart(100, func(i int) error {
		calls.Add(1)
		if i >= 3 { // batches: [0] [1 2] [3 4 5 6] ...
			return errors.New("quota exceeded")
		}
		return nil
	}, func(i int) { done = append(done, i) })
	if err == nil {
		t.Fatal("no error returned")
	}
	if calls.Load() != 7 || len(done) != 3 {
		t.Errorf("calls = %d, done = %v; want 7 calls (batches of 1, 2, 4) and 3 successes", calls.Load(), done)
	}
}

func TestSlowStartRunsEverythingWithoutErrors(t *testing.T) {
	var calls atomic.Int32
	if err := slowStart(100, func(int) error { calls.Add(1); return nil }, func(int) {}); err != nil || calls.Load() != 100 {
		t.Errorf("calls = %d, err = %v", calls.Load(), err)
	}
}

// Deletes go out as one batch: a failing one does not hold back the rest.
func TestOneBatchTriesEverything(t *testing.T) {
	var calls atomic.Int32
	err := inBatches(10, 10, func(i int) error {
		calls.Add(1)
		if i == 0 {
			return errors.New("refused")
		}
		return nil
	}, func(int) {})
	if err == nil || calls.Load() != 10 {
		t.Errorf("calls %d, err %v; want all 10 tried and the refusal returned", calls.Load(), err)
	}
}

// A batch of 250 refused deletes with long messages makes one error small
// enough for a condition message (the API server refuses a status whose
// message is over 32768 bytes) that still names the first cause.
func TestBatchFailuresAreSummarised(t *testing.T) {
	long := strings.Repeat("x", 500)
	err := inBatches(250, 250, func(i int) error { return fmt.Errorf("pod %d: %s", i, long) }, func(int) {})
	if err == nil {
		t.Fatal("no error")
	}
	if len(err.Error()) > 2000 {
		t.Fatalf("error of %d bytes for 250 failures: %.200s...", len(err.Error()), err.Error())
	}
	if !strings.Contains(err.Error(), "and 249 more failures") {
		t.Errorf("error does not count the rest: %.300s", err.Error())
	}
}

func TestClippedEventNotesFitTheAPIServersLimit(t *testing.T) {
	note := status.Clip(strings.Repeat("é", 2000), status.MaxEventNote)
	if len(note) > status.MaxEventNote || !utf8.ValidString(note) {
		t.Fatalf("note of %d bytes, valid UTF-8 %v", len(note), utf8.ValidString(note))
	}
}
