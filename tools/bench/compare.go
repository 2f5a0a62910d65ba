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

// serverAnswer is offer→answer as the server sees it: Patchbay's log for Patchbay runs; for native runs the
// client's INVITE→200 OK (there is no server log to read), which slightly overstates it.
func serverAnswer(r *Result) Dist {
	if r.Mode == "patchbay" && r.ServerAnswer.N > 0 {
		return r.ServerAnswer
	}
	return r.Answer
}

// clean says whether a run carried its calls within the quality bar: echo RTT p99 ≤ 10 ms, nothing lost,
// nothing failed, and a load generator that kept up.
func clean(r *Result) bool {
	return r.RTT.N > 0 && r.RTT.P99 <= CleanRTTP99 && r.Unechoed == 0 && r.Failed == 0 && r.LoadBusy < SaturatedBusy
}

// Compare writes native and Patchbay runs side by side per N, with the ratio of their means, the goals, and the
// calls one server core carried cleanly in each mode (the sweep over N).
func Compare(w io.Writer, rs []*Result) error {
	byN := map[int]map[string][]*Result{}
	for _, r := range rs {
		if byN[r.Calls] == nil {
			byN[r.Calls] = map[string][]*Result{}
		}
		byN[r.Calls][r.Mode] = append(byN[r.Calls][r.Mode], r)
	}
	ns := make([]int, 0, len(byN))
	for n := range byN {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t") }
	for _, n := range ns {
		nat, pb := byN[n]["native"], byN[n]["patchbay"]
		fmt.Fprintf(tw, "\nN=%d: Asterisk-native WebRTC (%d run(s)) vs through Patchbay (%d run(s)), same pinning and window\n", n, len(nat), len(pb))
		row("metric", "native", "Patchbay", "Patchbay ÷ native", "goal")
		cpuN, cpuP := meanF(nat, serverCPU), meanF(pb, serverCPU)
		row("server CPU-s per call-minute (Asterisk+Patchbay)", listF(nat, serverCPU, "%.3f"), listF(pb, serverCPU, "%.3f"),
			ratio(cpuP, cpuN), goalRatio(cpuP, cpuN, GoalCPUVsNative, "≤"))
		row("  of which Patchbay", "", listF(pb, func(r *Result) (float64, bool) { v, ok := r.CPUPerCallMin["patchbay"]; return v, ok }, "%.3f"), "", "")
		memN, memP := meanF(nat, memF), meanF(pb, memF)
		row("memory per call (Asterisk+Patchbay)", listF(nat, memKiB, "%.0f KiB"), listF(pb, memKiB, "%.0f KiB"),
			ratio(memP, memN), goalRatio(memP, memN, GoalMemVsNative, "≤"))
		row("  of which Patchbay", "", listF(pb, func(r *Result) (float64, bool) {
			v, ok := r.RSSPerCall["patchbay"]
			return float64(v) / kib, ok
		}, "%.0f KiB"), "", "")
		row("echo RTT p50 / p99", listS(nat, func(r *Result) string { return pq(r.RTT) }), listS(pb, func(r *Result) string { return pq(r.RTT) }),
			ratio(meanF(pb, rttP99), meanF(nat, rttP99))+" (p99)", "")
		row("frames not echoed", listS(nat, func(r *Result) string { return lossStr(r.Unechoed, r.Sent) }),
			listS(pb, func(r *Result) string { return lossStr(r.Unechoed, r.Sent) }), "", "0")
		row("failed calls", listS(nat, func(r *Result) string { return fmt.Sprint(r.Failed) }),
			listS(pb, func(r *Result) string { return fmt.Sprint(r.Failed) }), "", "0")
		ansGoal := ""
		if n >= 150 {
			ansGoal = fmt.Sprintf("Patchbay p50 ≤ %s %s", fmtDur(GoalServerAnswerP50), verdict(meanF(pb, answerP50) <= GoalServerAnswerP50.Seconds(),
				fmtDur(time.Duration(meanF(pb, answerP50)*float64(time.Second))-GoalServerAnswerP50)))
		}
		row("server offer→answer p50 / p99 (†)", listS(nat, func(r *Result) string { return pq(serverAnswer(r)) }),
			listS(pb, func(r *Result) string { return pq(serverAnswer(r)) }), "", ansGoal)
		row("Asterisk channels / bridges per call", listS(nat, resStr), listS(pb, resStr), "", "")
		row("Patchbay µs CPU per packet operation", "", listF(pb, func(r *Result) (float64, bool) { return r.PacketOpMicros, r.PacketOpMicros > 0 }, "%.1f"),
			"", fmt.Sprintf("≤ %.0f %s", GoalPacketOpMicros, verdictIf(pb, func(r *Result) bool { return r.PacketOpMicros <= GoalPacketOpMicros })))
		addGoal := ""
		if n == 100 {
			addGoal = "≤ 1 ms at N=100 " + verdictIf(pb, func(r *Result) bool { return r.RTT.P99-r.BaselineRTT.P99 <= GoalAddedRTTAt100 })
		}
		row("added RTT p99 vs plain RTP (same run)", listS(nat, addedStr), listS(pb, addedStr), "", addGoal)
		row("busy: server core / load core", listS(nat, busyStr), listS(pb, busyStr), "", "load core < 85 %")
		row("clean (RTT p99 ≤ 10 ms, 0 lost, 0 failed, load kept up)", listS(nat, cleanStr), listS(pb, cleanStr), "", "")
		row("CPU-s of other processes in window (noise)", listS(nat, otherStr), listS(pb, otherStr), "", "")
	}
	capN, capP := capacity(byN, "native"), capacity(byN, "patchbay")
	fmt.Fprintf(tw, "\nCalls one server core carried cleanly (largest N tried whose every run was clean)\n")
	row("", "native", "Patchbay", "Patchbay ÷ native", "goal")
	capRatio := ""
	if capN > 0 {
		capRatio = fmt.Sprintf("%.2f", float64(capP)/float64(capN))
	}
	capGoal := fmt.Sprintf("≥ %.1f", GoalCapacityRatio)
	if capN > 0 && capP > 0 {
		capGoal += " " + goalOK
		if float64(capP)/float64(capN) < GoalCapacityRatio {
			capGoal = fmt.Sprintf("≥ %.1f %s (N tried is coarse: sweep finer near the knee)", GoalCapacityRatio, goalMiss)
		}
	}
	row("calls", capStr(capN), capStr(capP), capRatio, capGoal)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "† Patchbay: offer received → far end answered, from its log; native: INVITE sent → 200 OK received, measured by the caller.\n"+
		"Runs whose load core is at 85 % or more are marked SATURATED in their own tables: their latency is partly the generator's.")
	return err
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
