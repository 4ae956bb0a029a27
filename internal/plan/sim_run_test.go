package plan

import (
	"testing"
)

// TestRolloutSimulation runs the simulation for many seeds, each with a
// random configuration, hundreds of steps each.
func TestRolloutSimulation(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	for seed := range uint64(seeds) {
		cfgSim := newSim(seed, simConfig{})
		c := randomConfig(cfgSim.rng)
		s := newSim(seed, c)
		if err := s.run(400); err != nil {
			t.Fatalf("seed %d (%s): %v", seed, c, err)
		}
	}
}
