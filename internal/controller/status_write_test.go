package controller

import (
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	nasv1alpha1 "github.com/nodeagentset/nodeagentset/api/v1alpha1"
)

// The lost-count defect: a pass writes S1, the cache still shows the
// status before it (S0), and the next pass computes S0 again. Compared
// with the stale cache nothing changed, yet the server holds S1: the
// write must go out.
func TestStatusIsWrittenWhenTheCacheHasNotSeenTheLastWrite(t *testing.T) {
	s0 := nasv1alpha1.NodeAgentSetStatus{DesiredNumberScheduled: 20, NumberReady: 20, NumberAvailable: 20}
	s1 := nasv1alpha1.NodeAgentSetStatus{DesiredNumberScheduled: 20, NumberReady: 19, NumberAvailable: 19, NumberUnavailable: 1}
	stale := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9"}, Status: s0}
	rec := &statusRecord{status: s1, rvs: []string{"10"}}
	if !rec.differs(stale, s0) {
		t.Fatal("not written: the cache (rv 9) lags behind this process's write (rv 10) of other counts")
	}
	// The cache has caught up with the write: nothing to do.
	current := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "10"}, Status: s1}
	if rec.differs(current, s1) {
		t.Error("written again although the cache shows this process's own latest write")
	}
	// The cache shows this process's write but it lags: the last write
	// is what counts.
	if !rec.differs(current, s0) {
		t.Error("not written although the last write differs")
	}
	// Someone else overwrote the status: restore it.
	foreign := &nasv1alpha1.NodeAgentSet{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "11"}, Status: nasv1alpha1.NodeAgentSetStatus{NumberReady: 99}}
	if !rec.differs(foreign, s1) {
		t.Error("a foreign overwrite is left in place")
	}
}

// The record keeps the newest resourceVersions of this process's writes:
// the cache lags by the latest ones, not the oldest.
func TestStatusRecordKeepsTheNewestVersions(t *testing.T) {
	var rec *statusRecord
	for i := 1; i <= 20; i++ {
		rec = rec.next(nasv1alpha1.NodeAgentSetStatus{}, time.Time{}, strconv.Itoa(i))
	}
	for i := 13; i <= 20; i++ {
		if !rec.wrote(strconv.Itoa(i)) {
			t.Errorf("write %d of 20 forgotten: %v", i, rec.rvs)
		}
	}
	if rec.wrote("1") || len(rec.rvs) != keptVersions {
		t.Errorf("versions kept: %v, want the newest %d", rec.rvs, keptVersions)
	}
}
