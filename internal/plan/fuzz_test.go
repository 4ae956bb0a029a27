package plan

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// FuzzRollout runs the rollout simulation with a fuzzer-chosen seed and
// configuration and fails on any broken invariant or a rollout that does
// not converge. Run it with `go test ./internal/plan -fuzz FuzzRollout`;
// the corpus under testdata/fuzz/FuzzRollout runs with every go test.
func FuzzRollout(f *testing.F) {
	f.Add(uint64(1), uint32(0x00000001))
	f.Add(uint64(2), uint32(0x00010100))
	f.Add(uint64(3), uint32(0x00a35a11))
	f.Add(uint64(4), uint32(0x000c1011)) // unhealthyNodes Wait
	f.Add(uint64(5), uint32(0x0f12d011)) // 12 nodes; canary 1, soak 2s, Manual, waves, health Pause
	f.Add(uint64(6), uint32(0x1cf2d011)) // 12 nodes; canary 3 spread, soak 1s, waves, health Abort
	f.Fuzz(func(t *testing.T, seed uint64, knobs uint32) {
		c := decodeConfig(knobs)
		if err := newSim(seed, c).run(200); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
	})
}

// decodeConfig turns 32 fuzzed bits into a valid configuration:
// 3 bits maxUnavailable, 1 percent flag, 3 bits maxSurge, 1 percent flag,
// 2 bits partition, 1 canary, 1 OnDelete, 2 bits minReady, 5 bits nodes,
// 1 unhealthyNodes Wait, then 9 bits of stages (decodeStages).
func decodeConfig(k uint32) simConfig {
	take := func(bits uint) int {
		v := int(k & (1<<bits - 1))
		k >>= bits
		return v
	}
	budget := func() intstr.IntOrString {
		n, pct := take(3), take(1) == 1
		if pct {
			return intstr.FromString(fmt.Sprintf("%d%%", n*15))
		}
		return intstr.FromInt(n)
	}
	c := simConfig{maxUnavailable: budget(), maxSurge: budget(), partition: intstr.FromInt(take(2))}
	c.canary, c.onDelete = take(1) == 1, take(1) == 1
	c.minReady, c.nodes = int32(take(2)), 1+take(5)
	c.wait = take(1) == 1
	c.stages = decodeStages(take)
	if isZero(c.maxUnavailable) && isZero(c.maxSurge) {
		c.maxUnavailable = intstr.FromInt(1)
	}
	return c
}
