package bench

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// GoalMetricsCost is what serving and scraping /metrics may add to the server's CPU per call-minute (issue 11):
// less than 3 %.
const GoalMetricsCost = 1.03

// metricsMode is the label bench.sh gives Patchbay runs with /metrics served and scraped.
const metricsMode = "patchbay-metrics"

// CompareMetrics writes the cost of metrics, from two kinds of runs, each part only when its runs are there.
//
// Apart: Patchbay runs with /metrics served and scraped (mode patchbay-metrics) against runs with metrics off
// (mode patchbay), per N and over every N, as the ratio of the means with its standard error. Run-to-run spread on
// a shared VM is several per cent and drifts within a pass (the second run of a pass tends to cost more), so
// bench.sh reverses the mode order on every other pass (ABBA); what the host does meanwhile still differs from run
// to run, which the standard error shows.
//
// Side by side (bench.sh mode metrics-ab): two Patchbays on one Asterisk and one core at the same time, half the
// calls each, one with metrics on; each pair's ratio of Patchbay CPU per call-minute (on ÷ off) is free of what
// the host did in that window, since it fell on both. The mean of the pairs' ratios, with its standard error, is
// the figure to hold against the goal.
func CompareMetrics(w io.Writer, rs []*Result) error {
	if err := compareMetricsApart(w, rs); err != nil {
		return err
	}
	return compareMetricsSideBySide(w, rs)
}

func compareMetricsApart(w io.Writer, rs []*Result) error {
	byN := map[int]map[string][]*Result{}
	var allOff, allOn []*Result
	for _, r := range rs {
		if r.Mode != "patchbay" && r.Mode != metricsMode {
			continue
		}
		if byN[r.Calls] == nil {
			byN[r.Calls] = map[string][]*Result{}
		}
		byN[r.Calls][r.Mode] = append(byN[r.Calls][r.Mode], r)
		if r.Mode == metricsMode {
			allOn = append(allOn, r)
		} else {
			allOff = append(allOff, r)
		}
	}
	if len(allOn) == 0 || len(allOff) == 0 {
		return nil
	}
	ns := make([]int, 0, len(byN))
	for n, m := range byN {
		if len(m["patchbay"]) > 0 && len(m[metricsMode]) > 0 {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t") }
	fmt.Fprintf(tw, "\nCost of metrics: /metrics served and scraped (%s) against metrics off (patchbay), same bench\n", metricsMode)
	row("N", "runs off / on", "metric", "metrics off", "metrics on", "on ÷ off (± std. error)", fmt.Sprintf("goal < %+.0f %%", 100*(GoalMetricsCost-1)))
	line := func(label string, off, on []*Result) {
		runs := fmt.Sprintf("%d / %d", len(off), len(on))
		for _, m := range []struct {
			name string
			f    func(*Result) (float64, bool)
		}{{"server CPU-s per call-minute (Asterisk+Patchbay)", serverCPU}, {"  Patchbay alone", procCPU("patchbay")}} {
			r, se, ok := meanRatio(on, off, m.f)
			cell, goal := notMeasured, ""
			if ok {
				cell = fmt.Sprintf("%.3f× ± %.3f", r, se)
				goal = verdict(r < GoalMetricsCost, fmt.Sprintf("%+.1f %%", 100*(r-GoalMetricsCost)))
			}
			row(label, runs, m.name, listF(off, m.f, "%.3f"), listF(on, m.f, "%.3f"), cell, goal)
			label, runs = "", ""
		}
	}
	for _, n := range ns {
		line(fmt.Sprint(n), byN[n]["patchbay"], byN[n][metricsMode])
	}
	if len(ns) > 1 {
		// Over every N: each run's figure relative to its N's metrics-off mean, so that the cheaper per-call figures
		// of a large N do not outweigh a small one.
		var offRel, onRel []*Result
		for _, n := range ns {
			offRel = append(offRel, relTo(byN[n]["patchbay"], byN[n]["patchbay"])...)
			onRel = append(onRel, relTo(byN[n][metricsMode], byN[n]["patchbay"])...)
		}
		line("all N, relative", offRel, onRel)
	}
	return tw.Flush()
}

// relTo scales each run's CPU figures by the mean of base's, so runs of different N can be pooled.
func relTo(rs, base []*Result) []*Result {
	srv, pb := meanF(base, serverCPU), meanF(base, procCPU("patchbay"))
	out := make([]*Result, 0, len(rs))
	for _, r := range rs {
		s, ok1 := serverCPU(r)
		p, ok2 := r.CPUPerCallMin["patchbay"]
		if !ok1 || !ok2 || srv == 0 || pb == 0 {
			continue
		}
		// serverCPU sums asterisk and patchbay: split s/srv so that the sum is it and patchbay alone is p/pb.
		out = append(out, &Result{Mode: r.Mode, Calls: r.Calls, CPUPerCallMin: map[string]float64{
			"patchbay": p / pb, "asterisk": s/srv - p/pb,
		}})
	}
	return out
}

// meanRatio is mean(on)/mean(off) of f with its standard error (first-order propagation of both means' standard
// errors); ok is false without at least one value on each side.
func meanRatio(on, off []*Result, f func(*Result) (float64, bool)) (ratio, stdErr float64, ok bool) {
	mOn, seOn, nOn := meanSE(on, f)
	mOff, seOff, nOff := meanSE(off, f)
	if nOn == 0 || nOff == 0 || mOn == 0 || mOff == 0 {
		return 0, 0, false
	}
	ratio = mOn / mOff
	return ratio, ratio * math.Hypot(seOn/mOn, seOff/mOff), true
}

// meanSE is the mean of f over rs, its standard error (0 with one value), and how many values there were.
func meanSE(rs []*Result, f func(*Result) (float64, bool)) (mean, stdErr float64, n int) {
	var vs []float64
	for _, r := range rs {
		if v, ok := f(r); ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, 0, 0
	}
	for _, v := range vs {
		mean += v
	}
	mean /= float64(len(vs))
	if len(vs) < 2 {
		return mean, 0, len(vs)
	}
	var ss float64
	for _, v := range vs {
		ss += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(ss/float64(len(vs)-1)) / math.Sqrt(float64(len(vs))), len(vs)
}

// compareMetricsSideBySide pairs the halves of each side-by-side run (patchbay-ab-off and patchbay-ab-on with one
// ABRun) and writes, per N and over every N, the mean of the pairs' on ÷ off ratios of Patchbay's own CPU per
// call-minute.
func compareMetricsSideBySide(w io.Writer, rs []*Result) error {
	type pair struct{ off, on *Result }
	pairs := map[string]*pair{}
	for _, r := range rs {
		if r.ABRun == "" {
			continue
		}
		p := pairs[r.ABRun]
		if p == nil {
			p = &pair{}
			pairs[r.ABRun] = p
		}
		switch r.Mode {
		case "patchbay-ab-off":
			p.off = r
		case "patchbay-ab-on":
			p.on = r
		}
	}
	byN := map[int][]*pair{}
	for _, id := range slices.Sorted(maps.Keys(pairs)) {
		p := pairs[id]
		if p.off == nil || p.on == nil || p.off.CPUPerCallMin["patchbay"] == 0 {
			continue
		}
		n := p.off.Calls + p.on.Calls
		byN[n] = append(byN[n], p)
	}
	if len(byN) == 0 {
		return nil
	}
	ns := slices.Sorted(maps.Keys(byN))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t") }
	fmt.Fprintf(tw, "\nCost of metrics side by side: two Patchbays on one Asterisk and one core at once, N/2 calls each, one with /metrics served and scraped\n")
	row("N", "pairs", "Patchbay CPU-s per call-minute, metrics off", "metrics on", "on ÷ off per pair", "mean on ÷ off (± std. error)",
		fmt.Sprintf("goal < %+.0f %%", 100*(GoalMetricsCost-1)))
	line := func(label string, ps []*pair) {
		ratios := make([]*Result, 0, len(ps))
		var offs, ons, each []string
		for _, p := range ps {
			off, on := p.off.CPUPerCallMin["patchbay"], p.on.CPUPerCallMin["patchbay"]
			offs, ons = append(offs, fmt.Sprintf("%.3f", off)), append(ons, fmt.Sprintf("%.3f", on))
			each = append(each, fmt.Sprintf("%.3f", on/off))
			ratios = append(ratios, &Result{CPUPerCallMin: map[string]float64{"patchbay": on / off}})
		}
		m, se, k := meanSE(ratios, procCPU("patchbay"))
		cell, goal := notMeasured, ""
		if k > 0 {
			cell = fmt.Sprintf("%.3f× ± %.3f", m, se)
			goal = verdict(m < GoalMetricsCost, fmt.Sprintf("%+.1f %%", 100*(m-GoalMetricsCost)))
		}
		row(label, fmt.Sprint(len(ps)), strings.Join(offs, " ; "), strings.Join(ons, " ; "), strings.Join(each, " ; "), cell, goal)
	}
	var all []*pair
	for _, n := range ns {
		line(fmt.Sprint(n), byN[n])
		all = append(all, byN[n]...)
	}
	if len(ns) > 1 {
		line("all N", all)
	}
	return tw.Flush()
}
