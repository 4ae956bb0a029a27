package bench

import (
	"bytes"
	"image/png"
	"math"
	"strings"
	"testing"
	"time"
)

func sample(nodes int, mode string, who Contender, create, update float64, rss int64, writesUpdate int) Sample {
	s := Sample{
		Nodes: nodes, Mode: mode, Who: who,
		Create:       time.Duration(create * float64(time.Second)),
		WritesCreate: map[string]int{"create/pods": nodes},
	}
	if who != Floor {
		s.Update = time.Duration(update * float64(time.Second))
		s.Joins = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 900 * time.Millisecond}
		s.WritesUpdate = map[string]int{"create/pods": nodes, "delete/pods": nodes, "patch/status": writesUpdate}
		s.CPUUpdate = time.Duration(float64(nodes) * float64(time.Millisecond))
		s.PeakRSS = rss << 20
	}
	return s
}

func testResults() *Results {
	cfg := Config{Rounds: 3, Joins: 3, JoinInterval: time.Second, EqualQPS: 100, EqualBurst: 200, UnrelatedPods: 50}
	res := &Results{Config: cfg}
	for _, n := range []int{100, 1000} {
		for round := range 3 {
			d := float64(round) // spread, so the median is the middle round
			res.Samples = append(res.Samples,
				sample(n, "equal", DaemonSet, 10+d, 20+d, 110, 10),
				sample(n, "equal", NodeAgentSet, 8+d, 21+d, 60, 5),
				sample(n, "equal", Floor, 7+d, 0, 0, 0),
				sample(n, "shipped", DaemonSet, 50+d, 100+d, 110, 10),
				sample(n, "shipped", NodeAgentSet, 8+d, 21+d, 60, 5),
			)
		}
	}
	busy := sample(1000, "shipped", NodeAgentSet, 8, 21, 120, 5)
	busy.Busy = true
	res.Samples = append(res.Samples, busy)
	return res
}

func TestStatsTakeMedianAndRange(t *testing.T) {
	st := stat(pick(testResults().Samples, 100, "equal", DaemonSet), figCreate)
	if st.Median != 11 || st.Min != 10 || st.Max != 12 || st.N != 3 {
		t.Errorf("stat = %+v, want median 11 over 10–12", st)
	}
	if got := percentile([]time.Duration{4, 1, 3, 2}, 50); got != 2 {
		t.Errorf("p50 of 1..4 = %v, want 2 (nearest rank)", got)
	}
	if got := percentile([]time.Duration{4, 1, 3, 2}, 99); got != 4 {
		t.Errorf("p99 of 1..4 = %v, want 4", got)
	}
}

func TestExponentOfLinearGrowthIsOne(t *testing.T) {
	// CPUUpdate is nodes milliseconds in the test samples.
	k, ok := testResults().exponent(NodeAgentSet, figCPUUpdate)
	if !ok || math.Abs(k-1) > 1e-9 {
		t.Errorf("exponent = %v (ok %v), want 1", k, ok)
	}
}

func TestTargetsReportMissesAndHits(t *testing.T) {
	met := map[string]bool{}
	for _, tg := range testResults().Targets() {
		met[tg.Name] = tg.Met
	}
	want := map[string]bool{
		"1000 nodes, equal: create → all Ready (s) no slower than the DaemonSet controller":                 true,
		"1000 nodes, equal: rolling update, maxUnavailable 10% (s) no slower than the DaemonSet controller": false,
		"1000 nodes, shipped defaults: create → all Ready (s) at least 2× faster":                           true,
		"1000 nodes, shipped defaults: rolling update, maxUnavailable 10% (s) at least 2× faster":           true,
		"1000 nodes, equal: API writes per pod, update ≤ the DaemonSet controller's":                        true,
		"1000 nodes, equal limits: create within 1.25× of the floor":                                        true,
		"manager peak RSS ≤ 100 MiB with 1000 nodes and 50 unrelated pods":                                  false,
		"CPU of a full rolling update grows no faster than linearly in nodes":                               true,
	}
	for name, w := range want {
		got, ok := met[name]
		if !ok {
			t.Errorf("no target %q", name)
			continue
		}
		if got != w {
			t.Errorf("target %q met = %v, want %v", name, got, w)
		}
	}
}

func TestMarkdownHasATablePerSizeAndMode(t *testing.T) {
	md := testResults().Markdown()
	for _, want := range []string{
		"## 100 nodes, equal client limits (both 100 QPS, burst 200)",
		"## 1000 nodes, shipped defaults",
		"| create → all Ready (s) | 11.0 (10.0–12.0) | 9.00 (8.00–10.0) | 0.82 |",
		"NodeAgentSet / floor = 1.12",
		"## Busy cluster: 1000 nodes and 50 unrelated Running pods",
		"| 1000 | 11.0 | 9.00 | 21.0 | 22.0 |",
		"**MISSED** — manager peak RSS",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestChartIsAPNGWithAPanelPerMode(t *testing.T) {
	var buf bytes.Buffer
	if err := testResults().Chart(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 2*620 || b.Dy() != 460 {
		t.Errorf("chart is %v, want two 620×460 panels", b)
	}
	// Some pixel of each panel has a contender's colour: bars were drawn.
	for panel := range 2 {
		found := false
		for x := panel * 620; x < (panel+1)*620 && !found; x++ {
			for y := 60; y < 400 && !found; y++ {
				r, g, b, _ := img.At(x, y).RGBA()
				found = uint8(r>>8) == 46 && uint8(g>>8) == 110 && uint8(b>>8) == 200
			}
		}
		if !found {
			t.Errorf("panel %d has no NodeAgentSet bar", panel)
		}
	}
}
