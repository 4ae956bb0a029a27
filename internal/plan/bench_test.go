package plan

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// BenchmarkComputeThousandNodes is one pass's planning for a set settled on
// 1000 nodes, the work every event of a large rollout pays for.
func BenchmarkComputeThousandNodes(b *testing.B) {
	s := newSim(1, simConfig{nodes: 1000, maxUnavailable: intstr.FromString("10%"), maxSurge: intstr.FromInt32(0), partition: intstr.FromInt32(0)})
	for range 50 {
		if err := s.pass(); err != nil {
			b.Fatal(err)
		}
		s.advance(10 * time.Second)
	}
	snap := s.snapshot()
	b.ReportAllocs()
	for b.Loop() {
		Compute(snap)
	}
}
