package bench

import (
	"fmt"
	"io"
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

// CompareMetrics writes the cost of metrics: Patchbay runs with /metrics served and scraped (mode
// patchbay-metrics) against runs with metrics off (mode patchbay), per N and over every N, as the ratio of the
// means with its standard error. Run-to-run spread on a shared VM is a few per cent and drifts within a pass (the
// second run of a pass tends to cost more), so bench.sh reverses the mode order on every other pass (ABBA): over
// an even number of passes the drift falls equally on both modes. It writes nothing without both modes.
func CompareMetrics(w io.Writer, rs []*Result) error {
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
