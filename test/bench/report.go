package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Figure is one number a round yields; lower is better for every figure.
type Figure struct {
	Name string
	// Time figures are compared against the targets on speed.
	Time bool
	of   func(Sample) (float64, bool)
}

// Figures are the rows of each table.
var Figures = []Figure{
	{"create → all Ready (s)", true, func(s Sample) (float64, bool) { return s.Create.Seconds(), s.Create > 0 }},
	{"rolling update, maxUnavailable 10% (s)", true, func(s Sample) (float64, bool) { return s.Update.Seconds(), s.Update > 0 }},
	{"node join → agent Ready, p50 (ms)", true, func(s Sample) (float64, bool) { return ms(percentile(s.Joins, 50)), len(s.Joins) > 0 }},
	{"node join → agent Ready, p99 (ms)", true, func(s Sample) (float64, bool) { return ms(percentile(s.Joins, 99)), len(s.Joins) > 0 }},
	{"API writes per pod, create", false, func(s Sample) (float64, bool) { return perPod(s.WritesCreate, s.Nodes), s.WritesCreate != nil }},
	{"API writes per pod, update", false, func(s Sample) (float64, bool) { return perPod(s.WritesUpdate, s.Nodes), s.WritesUpdate != nil }},
	{"CPU s, create", false, func(s Sample) (float64, bool) { return s.CPUCreate.Seconds(), s.PeakRSS > 0 }},
	{"CPU s, rolling update", false, func(s Sample) (float64, bool) { return s.CPUUpdate.Seconds(), s.PeakRSS > 0 }},
	{"peak RSS (MiB)", false, func(s Sample) (float64, bool) { return float64(s.PeakRSS) / (1 << 20), s.PeakRSS > 0 }},
}

var (
	figCreate       = Figures[0]
	figUpdate       = Figures[1]
	figWritesCreate = Figures[4]
	figWritesUpdate = Figures[5]
	figCPUUpdate    = Figures[7]
	figRSS          = Figures[8]
)

// percentile is the nearest-rank percentile p of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func perPod(writes map[string]int, pods int) float64 {
	total := 0
	for _, n := range writes {
		total += n
	}
	return float64(total) / float64(pods)
}

// Stat is the median and range of a figure over rounds.
type Stat struct {
	Median, Min, Max float64
	N                int
}

// stat summarises f over the samples that have it.
func stat(samples []Sample, f Figure) Stat {
	var vs []float64
	for _, s := range samples {
		if v, ok := f.of(s); ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return Stat{}
	}
	slices.Sort(vs)
	med := vs[len(vs)/2]
	if len(vs)%2 == 0 {
		med = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
	}
	return Stat{Median: med, Min: vs[0], Max: vs[len(vs)-1], N: len(vs)}
}

func (s Stat) String() string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 {
		return num(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.Median), num(s.Min), num(s.Max))
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// ratio is b/a of two medians, "–" when either is missing.
func ratio(a, b Stat) string {
	if a.N == 0 || b.N == 0 || a.Median == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", b.Median/a.Median)
}

// pick filters the samples of the regular (not busy) rounds.
func pick(samples []Sample, nodes int, mode string, who Contender) []Sample {
	var out []Sample
	for _, s := range samples {
		if s.Nodes == nodes && s.Mode == mode && s.Who == who && !s.Busy {
			out = append(out, s)
		}
	}
	return out
}

// sizes lists the node counts measured, ascending.
func sizes(samples []Sample) []int {
	var out []int
	for _, s := range samples {
		if !s.Busy && !slices.Contains(out, s.Nodes) {
			out = append(out, s.Nodes)
		}
	}
	slices.Sort(out)
	return out
}

func (s Sample) summary() string {
	line := fmt.Sprintf("%d nodes, %s, %s round %d: create %.2fs", s.Nodes, s.Mode, s.Who, s.Round, s.Create.Seconds())
	if s.Busy {
		line = "busy cluster, " + line
	}
	if s.Who != Floor {
		line += fmt.Sprintf(", update %.2fs, join p50 %.1fms p99 %.1fms, writes/pod %.2f/%.2f, CPU %.2fs/%.2fs, peak RSS %.1f MiB",
			s.Update.Seconds(), ms(percentile(s.Joins, 50)), ms(percentile(s.Joins, 99)),
			perPod(s.WritesCreate, s.Nodes), perPod(s.WritesUpdate, s.Nodes),
			s.CPUCreate.Seconds(), s.CPUUpdate.Seconds(), float64(s.PeakRSS)/(1<<20))
	} else {
		line += fmt.Sprintf(", writes/pod %.2f", perPod(s.WritesCreate, s.Nodes))
	}
	return line
}

// Markdown renders the results: a table per size and mode, the busy
// cluster, scaling, and each target with whether it was met.
func (res *Results) Markdown() string {
	var b strings.Builder
	cfg := res.Config
	fmt.Fprintf(&b, "# NodeAgentSet vs the DaemonSet controller\n\n")
	fmt.Fprintf(&b, "Run of %s, %s, on %d CPUs: %d rounds per contender, size and mode, alternating "+
		"DaemonSet (A), NodeAgentSet (B), floor (F) in the equal mode; %d node joins per round, one every %v. "+
		"Each cell is the median (min–max) over rounds; B/A is the ratio of medians (below 1: B is lower).\n\n",
		res.Started.Format("2006-01-02 15:04"), res.Duration.Round(time.Second), res.CPUs, cfg.Rounds,
		cfg.Joins, cfg.JoinInterval)
	for _, n := range sizes(res.Samples) {
		for _, m := range cfg.Modes() {
			a, bb := pick(res.Samples, n, m.Name, DaemonSet), pick(res.Samples, n, m.Name, NodeAgentSet)
			if len(a)+len(bb) == 0 {
				continue
			}
			fmt.Fprintf(&b, "## %d nodes, %s\n\n", n, m.Title)
			writeTable(&b, a, bb)
			if f := pick(res.Samples, n, m.Name, Floor); len(f) > 0 {
				fs, bs := stat(f, figCreate), stat(bb, figCreate)
				fmt.Fprintf(&b, "\nFloor (a bare client creating %d node-pinned pods on %d workers, no client limit): "+
					"create → all Ready %s s; NodeAgentSet / floor = %s.\n", n, floorWorkers, fs, ratio(fs, bs))
			}
			b.WriteString("\n")
		}
	}
	res.writeBusy(&b)
	res.writeScaling(&b)
	b.WriteString("## Targets\n\n")
	for _, t := range res.Targets() {
		mark := "met"
		if !t.Met {
			mark = "**MISSED**"
		}
		fmt.Fprintf(&b, "- %s — %s: %s\n", mark, t.Name, t.Detail)
	}
	return b.String()
}

func writeTable(b *strings.Builder, a, bb []Sample) {
	b.WriteString("| figure | DaemonSet (A) | NodeAgentSet (B) | B/A |\n|---|---|---|---|\n")
	for _, f := range Figures {
		sa, sb := stat(a, f), stat(bb, f)
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", f.Name, sa, sb, ratio(sa, sb))
	}
}

func (res *Results) writeBusy(b *strings.Builder) {
	var a, bb []Sample
	for _, s := range res.Samples {
		if s.Busy && s.Who == DaemonSet {
			a = append(a, s)
		}
		if s.Busy && s.Who == NodeAgentSet {
			bb = append(bb, s)
		}
	}
	if len(a)+len(bb) == 0 {
		return
	}
	fmt.Fprintf(b, "## Busy cluster: %d nodes and %d unrelated Running pods, shipped defaults\n\n", bb[0].Nodes, res.Config.UnrelatedPods)
	writeTable(b, a, bb)
	b.WriteString("\n")
}

func (res *Results) writeScaling(b *strings.Builder) {
	ns := sizes(res.Samples)
	if len(ns) < 2 {
		return
	}
	b.WriteString("## Scaling, equal client limits (medians)\n\n| nodes | create A | create B | update A | update B | CPU update A | CPU update B | peak RSS A | peak RSS B |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, n := range ns {
		a, bb := pick(res.Samples, n, "equal", DaemonSet), pick(res.Samples, n, "equal", NodeAgentSet)
		fmt.Fprintf(b, "| %d |", n)
		for _, f := range []Figure{figCreate, figUpdate, figCPUUpdate, figRSS} {
			fmt.Fprintf(b, " %s | %s |", num(stat(a, f).Median), num(stat(bb, f).Median))
		}
		b.WriteString("\n")
	}
	for _, who := range []Contender{DaemonSet, NodeAgentSet} {
		k, ok := res.exponent(who, figCPUUpdate)
		if ok {
			fmt.Fprintf(b, "\nCPU of a full rolling update grows as nodes^%.2f for %s (least-squares fit of log CPU on log nodes over %v).", k, who, ns)
		}
	}
	b.WriteString("\n\n")
}

// exponent fits median(f) ~ c·nodes^k over the sizes in the equal mode.
func (res *Results) exponent(who Contender, f Figure) (float64, bool) {
	var xs, ys []float64
	for _, n := range sizes(res.Samples) {
		st := stat(pick(res.Samples, n, "equal", who), f)
		if st.N == 0 || st.Median <= 0 {
			continue
		}
		xs, ys = append(xs, math.Log(float64(n))), append(ys, math.Log(st.Median))
	}
	if len(xs) < 2 {
		return 0, false
	}
	return slope(xs, ys), true
}

func slope(xs, ys []float64) float64 {
	var mx, my float64
	for i := range xs {
		mx, my = mx+xs[i], my+ys[i]
	}
	mx, my = mx/float64(len(xs)), my/float64(len(ys))
	var num, den float64
	for i := range xs {
		num += (xs[i] - mx) * (ys[i] - my)
		den += (xs[i] - mx) * (xs[i] - mx)
	}
	return num / den
}

// WriteFiles writes README.md (the tables), chart.png and samples.json (every
// sample, for another look) into dir.
func (res *Results) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte(res.Markdown()), 0o644); err != nil {
		return err
	}
	samples, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "samples.json"), append(samples, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "chart.png"))
	if err != nil {
		return err
	}
	if err := res.Chart(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
