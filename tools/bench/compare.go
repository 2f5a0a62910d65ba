package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Goals of the comparison with Asterisk-native WebRTC (issue "A media path leaner than Asterisk's own WebRTC").
const (
	GoalCPUVsNative     = 0.8                   // (Asterisk+Patchbay) ÷ native CPU per call-minute, at most
	GoalMemVsNative     = 0.5                   // (Asterisk+Patchbay) ÷ native memory per call, at most
	GoalCapacityRatio   = 1.3                   // clean calls per core, Patchbay ÷ native, at least
	GoalPacketOpMicros  = 12.0                  // Patchbay CPU per packet operation, at most
	GoalAddedRTTAt100   = time.Millisecond      // added RTT p99 against plain RTP, at N=100
	CleanRTTP99         = 10 * time.Millisecond // a "clean" run: echo RTT p99 at most this, no loss, no failure
	GoalServerAnswerP50 = 15 * time.Millisecond // server offer→answer p50 at N=150
)

// WriteJSON stores a run's result for Compare.
func WriteJSON(path string, r *Result) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return fmt.Errorf("encode bench result: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write bench result: %w", err)
	}
	return nil
}

// ReadResults reads every *.json result in dir.
func ReadResults(dir string) ([]*Result, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	var out []*Result
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("read bench result: %w", err)
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("bench result %s: %w", n, err)
		}
		if r.Mode == "" {
			r.Mode = "patchbay"
		}
		out = append(out, &r)
	}
	return out, nil
}

// serverCPU is the server's CPU-s per call-minute: Asterisk plus, for Patchbay runs, Patchbay.
func serverCPU(r *Result) (float64, bool) {
	a, ok := r.CPUPerCallMin["asterisk"]
	if !ok {
		return 0, false
	}
	if r.Mode == "native" {
		return a, true
	}
	p, ok := r.CPUPerCallMin["patchbay"]
	return a + p, ok
}

func serverMem(r *Result) (int64, bool) {
	a, ok := r.RSSPerCall["asterisk"]
	if !ok {
		return 0, false
	}
	if r.Mode == "native" {
		return a, true
	}
	p, ok := r.RSSPerCall["patchbay"]
	return a + p, ok
}

// serverAnswer is offer→answer as the server sees it: Patchbay's call records (offer received → answer SDP sent) for
// Patchbay runs; for native runs the client's INVITE→200 OK (there is nothing server-side to read), which slightly
// overstates it.
func serverAnswer(r *Result) Dist {
	if r.Mode != "native" && r.ServerAnswer.N > 0 {
		return r.ServerAnswer
	}
	return r.Answer
}

// clean says whether a run carried its calls within the quality bar: every call up for the whole steady window
// (none failed, none still setting up), echo RTT p99 ≤ 10 ms and no frame lost over that window, and a load
// generator that kept up. Frames lost at setup or hang-up are in "frames not echoed" (whole calls) but do not make
// a run unclean.
func clean(r *Result) bool {
	return r.RTT.N > 0 && r.RTT.P99 <= CleanRTTP99 && r.WindowSent > 0 && r.WindowUnechoed == 0 && r.Failed == 0 &&
		r.InWindow == r.Calls && r.LoadBusy < SaturatedBusy
}

// Compare writes native and Patchbay runs side by side per N, with the ratio of their means to native, the goals,
// and the calls one server core carried cleanly in each mode (the sweep over N). Modes other than "native" and
// "patchbay" (e.g. "patchbay-pion") get columns of their own.
func Compare(w io.Writer, rs []*Result) error {
	byN := map[int]map[string][]*Result{}
	modeSet := map[string]bool{}
	for _, r := range rs {
		if r.ABRun != "" {
			continue // half of a side-by-side run: CompareMetrics
		}
		if byN[r.Calls] == nil {
			byN[r.Calls] = map[string][]*Result{}
		}
		byN[r.Calls][r.Mode] = append(byN[r.Calls][r.Mode], r)
		modeSet[r.Mode] = true
	}
	if len(byN) == 0 {
		return nil
	}
	modes := []string{}
	for _, m := range []string{"native", "patchbay"} {
		if modeSet[m] {
			modes = append(modes, m)
			delete(modeSet, m)
		}
	}
	extra := make([]string, 0, len(modeSet))
	for m := range modeSet {
		extra = append(extra, m)
	}
	slices.Sort(extra)
	modes = append(modes, extra...)
	others := slices.DeleteFunc(slices.Clone(modes), func(m string) bool { return m == "native" })

	ns := make([]int, 0, len(byN))
	for n := range byN {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t") }
	header := func() {
		cols := append([]string{"metric"}, modes...)
		for _, m := range others {
			cols = append(cols, m+" ÷ native")
		}
		row(append(cols, "goal (for patchbay)")...)
	}
	// line prints one metric: a value list per mode, the ratio of each non-native mode's mean to native's, a goal.
	line := func(n int, name string, cell func([]*Result) string, mean func(*Result) (float64, bool), goal func(pb, nat float64) string) {
		cols := []string{name}
		for _, m := range modes {
			cols = append(cols, cell(byN[n][m]))
		}
		nat := 0.0
		if mean != nil {
			nat = meanF(byN[n]["native"], mean)
		}
		for _, m := range others {
			if mean == nil {
				cols = append(cols, "")
				continue
			}
			cols = append(cols, ratio(meanF(byN[n][m], mean), nat))
		}
		g := ""
		if goal != nil {
			pb := 0.0
			if mean != nil {
				pb = meanF(byN[n]["patchbay"], mean)
			}
			g = goal(pb, nat)
		}
		row(append(cols, g)...)
	}
	for _, n := range ns {
		runs := []string{}
		for _, m := range modes {
			runs = append(runs, fmt.Sprintf("%s %d", m, len(byN[n][m])))
		}
		fmt.Fprintf(tw, "\nN=%d (runs: %s), same pinning and window\n", n, strings.Join(runs, ", "))
		header()
		line(n, "server CPU-s per call-minute (Asterisk+Patchbay)", cellF(serverCPU, "%.3f"), serverCPU,
			func(pb, nat float64) string { return goalRatio(pb, nat, GoalCPUVsNative, "≤") })
		line(n, "  of which Patchbay", cellF(func(r *Result) (float64, bool) {
			v, ok := r.CPUPerCallMin["patchbay"]
			return v, ok && r.Mode != "native"
		}, "%.3f"), nil, nil)
		line(n, "memory per call (Asterisk+Patchbay)", cellF(memKiB, "%.0f KiB"), memF,
			func(pb, nat float64) string { return goalRatio(pb, nat, GoalMemVsNative, "≤") })
		line(n, "  of which Patchbay", cellF(func(r *Result) (float64, bool) {
			v, ok := r.RSSPerCall["patchbay"]
			return float64(v) / kib, ok && r.Mode != "native"
		}, "%.0f KiB"), nil, nil)
		line(n, "echo RTT p50 / p99 (ratio: p99)", cellS(func(r *Result) string { return pq(r.RTT) }), rttP99, nil)
		line(n, "frames not echoed (whole calls)", cellS(func(r *Result) string { return lossStr(r.Unechoed, r.Sent) }), nil, nil)
		line(n, "frames not echoed (steady window)", cellS(func(r *Result) string { return lossStr(r.WindowUnechoed, r.WindowSent) }), nil,
			func(float64, float64) string { return "0" })
		line(n, "failed calls", cellS(func(r *Result) string { return fmt.Sprint(r.Failed) }), nil,
			func(float64, float64) string { return "0" })
		// A call still setting up in the window spends setup's CPU there: per-call figures of such a run are not
		// a steady state's (lower RATE).
		line(n, "calls up for the whole window", cellS(func(r *Result) string { return fmt.Sprintf("%d of %d", r.InWindow, r.Calls) }), nil,
			func(float64, float64) string { return "all" })
		line(n, "server offer→answer p50 / p99 (†)", cellS(func(r *Result) string { return pq(serverAnswer(r)) }), answerP50,
			func(pb, _ float64) string {
				if n != 150 || pb == 0 { // the goal is at N=150
					return ""
				}
				d := time.Duration(pb * float64(time.Second))
				return fmt.Sprintf("p50 ≤ %s at N=150 %s", fmtDur(GoalServerAnswerP50), verdict(d <= GoalServerAnswerP50, fmtDur(d-GoalServerAnswerP50)))
			})
		line(n, "Asterisk channels / bridges per call", cellS(resStr), nil, nil)
		pbRuns := byN[n]["patchbay"]
		line(n, "Patchbay µs CPU per packet operation", cellF(func(r *Result) (float64, bool) { return r.PacketOpMicros, r.PacketOpMicros > 0 }, "%.1f"), nil,
			func(float64, float64) string {
				return fmt.Sprintf("≤ %.0f %s", GoalPacketOpMicros, verdictIf(pbRuns, func(r *Result) bool { return r.PacketOpMicros <= GoalPacketOpMicros }))
			})
		line(n, "added RTT p99 vs plain RTP (same run)", cellS(addedStr), nil, func(float64, float64) string {
			if n != 100 {
				return ""
			}
			return "≤ 1 ms at N=100 " + verdictIf(pbRuns, func(r *Result) bool { return r.RTT.P99-r.BaselineRTT.P99 <= GoalAddedRTTAt100 })
		})
		line(n, "busy: server core / load core", cellS(busyStr), nil, func(float64, float64) string { return "load core < 85 %" })
		line(n, "clean (all up, in the window RTT p99 ≤ 10 ms and 0 lost, load kept up)", cellS(cleanStr), nil, nil)
		line(n, "CPU-s of other processes in window (noise)", cellS(otherStr), nil, nil)
	}
	fmt.Fprintf(tw, "\nCalls one server core carried cleanly (largest N tried whose every run was clean)\n")
	header()
	capN := capacity(byN, "native")
	cols := []string{"calls"}
	for _, m := range modes {
		cols = append(cols, capStr(capacity(byN, m)))
	}
	for _, m := range others {
		c := capacity(byN, m)
		if capN > 0 && c > 0 {
			cols = append(cols, fmt.Sprintf("%.2f×", float64(c)/float64(capN)))
		} else {
			cols = append(cols, notMeasured)
		}
	}
	capGoal := fmt.Sprintf("≥ %.1f×", GoalCapacityRatio)
	if c := capacity(byN, "patchbay"); capN > 0 && c > 0 {
		if float64(c)/float64(capN) >= GoalCapacityRatio {
			capGoal += " " + goalOK
		} else {
			capGoal += " " + goalMiss + " (or the N tried are too coarse: sweep finer near the knee)"
		}
	}
	row(append(cols, capGoal)...)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "† Patchbay: offer received → answer SDP sent, from its call records (the client's offer → answer when there are none);\n"+
		"  native: INVITE sent → 200 OK (with the answer SDP) received, measured by the caller.\n"+
		"A load core at 85 % or more is marked LOAD SATURATED: part of that run's latency and loss is the generator's own.")
	return err
}

func cellF(f func(*Result) (float64, bool), format string) func([]*Result) string {
	return func(rs []*Result) string { return listF(rs, f, format) }
}

func cellS(f func(*Result) string) func([]*Result) string {
	return func(rs []*Result) string { return listS(rs, f) }
}

func memF(r *Result) (float64, bool) { v, ok := serverMem(r); return float64(v), ok }
func memKiB(r *Result) (float64, bool) {
	v, ok := serverMem(r)
	return float64(v) / kib, ok
}
func rttP99(r *Result) (float64, bool)    { return r.RTT.P99.Seconds(), r.RTT.N > 0 }
func answerP50(r *Result) (float64, bool) { d := serverAnswer(r); return d.P50.Seconds(), d.N > 0 }

func resStr(r *Result) string {
	if r.ChannelsPerCall < 0 {
		return notMeasured
	}
	return fmt.Sprintf("%.2f / %.2f", r.ChannelsPerCall, r.BridgesPerCall)
}

func addedStr(r *Result) string {
	if r.RTT.N == 0 || r.BaselineRTT.N == 0 {
		return notMeasured
	}
	return signed(r.RTT.P99 - r.BaselineRTT.P99)
}

func busyStr(r *Result) string {
	s := fmt.Sprintf("%.0f %% / %.0f %%", 100*r.ServerBusy, 100*r.LoadBusy)
	if r.LoadBusy >= SaturatedBusy {
		s += " LOAD SATURATED"
	} else if r.ServerBusy >= SaturatedBusy {
		s += " SERVER SATURATED"
	}
	return s
}

func cleanStr(r *Result) string {
	if clean(r) {
		return "yes"
	}
	return "no"
}

func otherStr(r *Result) string { return fmt.Sprintf("%.1f", r.OtherCPU.Seconds()) }

func capStr(n int) string {
	if n == 0 {
		return "none clean"
	}
	return fmt.Sprint(n)
}

// capacity is the largest N whose every run in mode was clean.
func capacity(byN map[int]map[string][]*Result, mode string) int {
	best := 0
	for n, m := range byN {
		rs := m[mode]
		if len(rs) == 0 {
			continue
		}
		ok := true
		for _, r := range rs {
			ok = ok && clean(r)
		}
		if ok && n > best {
			best = n
		}
	}
	return best
}

func meanF(rs []*Result, f func(*Result) (float64, bool)) float64 {
	var sum float64
	n := 0
	for _, r := range rs {
		if v, ok := f(r); ok {
			sum += v
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

func listF(rs []*Result, f func(*Result) (float64, bool), format string) string {
	return listS(rs, func(r *Result) string {
		v, ok := f(r)
		if !ok {
			return notMeasured
		}
		return fmt.Sprintf(format, v)
	})
}

func listS(rs []*Result, f func(*Result) string) string {
	if len(rs) == 0 {
		return notMeasured
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = f(r)
	}
	return strings.Join(parts, " ; ")
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return notMeasured
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func goalRatio(a, b, limit float64, op string) string {
	if a == 0 || b == 0 {
		return fmt.Sprintf("%s %.1f×", op, limit)
	}
	return fmt.Sprintf("%s %.1f× %s", op, limit, verdict(a/b <= limit, fmt.Sprintf("%.2f×", a/b-limit)))
}

func verdictIf(rs []*Result, ok func(*Result) bool) string {
	if len(rs) == 0 {
		return ""
	}
	for _, r := range rs {
		if !ok(r) {
			return goalMiss
		}
	}
	return goalOK
}
