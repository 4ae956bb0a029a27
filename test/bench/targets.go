package bench

import "fmt"

// Target is one claim of the benchmark and whether this run bore it out.
type Target struct {
	Name   string
	Detail string
	Met    bool
}

// rssLimit is the most memory the manager may hold in the busy cluster.
const rssLimit = 100 << 20

// Targets checks the claims against the medians of this run.
func (res *Results) Targets() []Target {
	var ts []Target
	for _, n := range sizes(res.Samples) {
		ts = append(ts, res.sizeTargets(n)...)
	}
	ts = append(ts, res.busyTarget()...)
	if k, ok := res.exponent(NodeAgentSet, figCPUUpdate); ok {
		ts = append(ts, Target{
			Name:   "CPU of a full rolling update grows no faster than linearly in nodes",
			Detail: fmt.Sprintf("exponent %.2f over %v nodes", k, sizes(res.Samples)),
			// Judged as printed, to two decimals: a fit of three sizes
			// says no more.
			Met: k < 1.005,
		})
	}
	return ts
}

func (res *Results) sizeTargets(n int) []Target {
	var ts []Target
	for _, m := range res.Config.Modes() {
		a, b := pick(res.Samples, n, m.Name, DaemonSet), pick(res.Samples, n, m.Name, NodeAgentSet)
		if len(a) == 0 || len(b) == 0 {
			continue
		}
		for _, f := range Figures {
			sa, sb := stat(a, f), stat(b, f)
			if sa.N == 0 || sb.N == 0 {
				continue
			}
			detail := fmt.Sprintf("A %s, B %s", num(sa.Median), num(sb.Median))
			bulk := f.Name == figCreate.Name || f.Name == figUpdate.Name
			switch {
			case f.Time && m.Name == "shipped" && bulk:
				ts = append(ts, Target{fmt.Sprintf("%d nodes, shipped defaults: %s at least 2× faster", n, f.Name),
					fmt.Sprintf("%s, A/B %.2f", detail, sa.Median/sb.Median), sa.Median >= 2*sb.Median})
			case f.Time:
				// One node's join is a handful of requests, under either
				// client limit: no slower is the claim in both modes.
				ts = append(ts, Target{fmt.Sprintf("%d nodes, %s: %s no slower than the DaemonSet controller", n, m.Name, f.Name), detail, sb.Median <= sa.Median})
			case f.Name == figWritesCreate.Name || f.Name == figWritesUpdate.Name:
				ts = append(ts, Target{fmt.Sprintf("%d nodes, %s: %s ≤ the DaemonSet controller's", n, m.Name, f.Name), detail, sb.Median <= sa.Median})
			}
		}
		if floor := pick(res.Samples, n, m.Name, Floor); len(floor) > 0 {
			sf, sb := stat(floor, figCreate), stat(b, figCreate)
			ts = append(ts, Target{fmt.Sprintf("%d nodes, equal limits: create within 1.25× of the floor", n),
				fmt.Sprintf("floor %s, B %s, B/floor %.2f", num(sf.Median), num(sb.Median), sb.Median/sf.Median),
				sb.Median <= 1.25*sf.Median})
		}
	}
	return ts
}

func (res *Results) busyTarget() []Target {
	for _, s := range res.Samples {
		if s.Busy && s.Who == NodeAgentSet {
			return []Target{{
				Name:   fmt.Sprintf("manager peak RSS ≤ 100 MiB with %d nodes and %d unrelated pods", s.Nodes, res.Config.UnrelatedPods),
				Detail: fmt.Sprintf("%.1f MiB", float64(s.PeakRSS)/(1<<20)),
				Met:    s.PeakRSS <= rssLimit,
			}}
		}
	}
	return nil
}
