package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// A single run's table judges only the goals one run can (compare.go defines them all); the ratios to native
// need a native run of the same N, so only --compare prints them.
const (
	// SaturatedBusy is the CPU share above which a side counts as saturated (the kernel's softirq work for our
	// packets is not in the processes' CPU time, so a saturated core shows less than 100 %); OverloadLoss is the
	// fraction of frames not echoed that tells the same from the other end.
	SaturatedBusy     = 0.85
	OverloadLoss      = 0.01
	mib, kib          = 1 << 20, 1 << 10
	notMeasured       = "–"
	goalOK, goalMiss  = "met", "MISSED"
	cpuPerCallMinUnit = "CPU-s/call-min"
)

// FormatTable writes the result as an aligned table, with each goal met or missed.
func FormatTable(w io.Writer, r *Result) error {
	what := "through Patchbay"
	if r.Mode == "native" {
		what = "Asterisk-native WebRTC (SIP/WSS + DTLS-SRTP with Asterisk; Patchbay not involved)"
	}
	if r.Pairs {
		what += ", browser ⇄ browser (each call two browser legs, the far one sending back what it hears)"
	}
	if r.Codec == "opus" {
		what += ", callers offering Opus then PCMU"
		if r.CodecDelay > 0 {
			what += fmt.Sprintf(" (Opus encoder lookahead %s)", fmtDur(r.CodecDelay))
		}
	}
	fmt.Fprintf(w, "patchbay bench, %s: %d calls (+%d baseline plain-RTP calls), ramp %.0f calls/s, steady window %v\n",
		what, r.Calls, r.BaselineCalls, r.Rate, r.Steady)
	fmt.Fprintf(w, "calls up for the whole window: %d of %d (baseline %d of %d); failed: %d\n",
		r.InWindow, r.Calls, r.BaselineInWindow, r.BaselineCalls, r.Failed)
	if r.Scrapes > 0 || r.ScrapeErrors > 0 {
		fmt.Fprintf(w, "metrics: /metrics scraped %d times (%d failed)\n", r.Scrapes, r.ScrapeErrors)
	}
	if r.ServerBusy > 0 || r.LoadBusy > 0 {
		fmt.Fprintf(w, "busy over the window: Patchbay+Asterisk %.0f %% of their CPUs, load generator %.0f %% of its CPUs\n",
			100*r.ServerBusy, 100*r.LoadBusy)
	}
	if r.LoadBusy >= SaturatedBusy {
		fmt.Fprintln(w, "LOAD GENERATOR SATURATED: its core was busy ≥ 85 %, so part of the latency and loss is the generator's own; use fewer calls or a bigger load host")
	}
	if r.Overloaded() {
		fmt.Fprintln(w, "SATURATED: work was queued or dropped, so latency and loss show overload and the per-call CPU and memory figures understate the cost")
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t") }
	row("metric", "Patchbay", "baseline", "vs baseline", "goal")
	row("setup offer→answer (client)", pq(r.Answer), "", "", "")
	srv, srvGoal := notMeasured, "p50 ≤ 15 ms at 150 calls (server side)"
	if r.ServerAnswer.N > 0 {
		srv = pq(r.ServerAnswer)
		srvGoal += " " + atN(r, 150, r.ServerAnswer.P50 <= GoalServerAnswerP50, fmtDur(r.ServerAnswer.P50-GoalServerAnswerP50))
	} else if r.Answer.N > 0 {
		srvGoal += " (client-side: " + atN(r, 150, r.Answer.P50 <= GoalServerAnswerP50, fmtDur(r.Answer.P50-GoalServerAnswerP50)) + ")"
	}
	row("setup offer→answer sent (call records)", srv, "", "", srvGoal)
	far := notMeasured
	if r.ServerFarAnswered.N > 0 {
		far = pq(r.ServerFarAnswered)
	}
	row("setup offer→far answered (server log)", far, "", "", "")
	row("setup offer→first echo (client)", pq(r.FirstEcho), "", "", "")
	added := r.RTT.P99 - r.BaselineRTT.P99
	rttGoal := "added p99 ≤ 1 ms at 100 calls"
	if r.RTT.N > 0 && r.BaselineRTT.N > 0 {
		rttGoal += " " + atN(r, 100, added <= GoalAddedRTTAt100, fmtDur(added-GoalAddedRTTAt100))
	}
	row("echo RTT (steady window)", pq(r.RTT), pq(r.BaselineRTT), vsRTT(r.RTT, r.BaselineRTT), rttGoal)
	row("frames not echoed (whole calls, †)", lossStr(r.Unechoed, r.Sent), lossStr(r.BaselineUnechoed, r.BaselineSent), "", "")
	row("frames not echoed (steady window)", lossStr(r.WindowUnechoed, r.WindowSent), "", "",
		"0 in a clean run "+verdict(r.WindowUnechoed == 0, fmt.Sprint(r.WindowUnechoed, " frames")))
	row("RTP sequence gaps Asterisk→client", fmt.Sprint(r.SeqLost), "", "", "")
	row(cpuPerCallMinUnit+" Patchbay", cpuStr(r, "patchbay"), "", "", "")
	row(cpuPerCallMinUnit+" Asterisk", cpuStr(r, "asterisk"), "", "", "")
	bothStr := notMeasured
	if hasBoth(r) {
		bothStr = fmt.Sprintf("%.3f", r.CPUPerCallMin["patchbay"]+r.CPUPerCallMin["asterisk"])
	}
	row(cpuPerCallMinUnit+" Patchbay+Asterisk", bothStr, "", "", fmt.Sprintf("≤ %.1f× native: --compare", GoalCPUVsNative))
	row(cpuPerCallMinUnit+" load generator", cpuStr(r, "load"), "", "", "")
	row("Asterisk channels / bridges per call (steady)", resStr(r), "", "", "")
	if r.PacketOpMicros > 0 {
		row("Patchbay µs CPU per packet operation", fmt.Sprintf("%.1f", r.PacketOpMicros), "", "",
			fmt.Sprintf("≤ %.0f %s", GoalPacketOpMicros, verdict(r.PacketOpMicros <= GoalPacketOpMicros, fmt.Sprintf("%.1f", r.PacketOpMicros-GoalPacketOpMicros))))
	}
	row("memory/call Patchbay", rssStr(r, "patchbay"), "", "", "")
	row("memory/call Asterisk", rssStr(r, "asterisk"), "", "", "")
	memBoth := notMeasured
	if pb, ok := r.RSSPerCall["patchbay"]; ok {
		memBoth = fmtBytes(pb + r.RSSPerCall["asterisk"])
	}
	row("memory/call Patchbay+Asterisk", memBoth, "", "", fmt.Sprintf("≤ %.1f× native: --compare", GoalMemVsNative))
	row("memory/call load generator", rssStr(r, "load"), "", "", "")
	row("CPU-s in window (Patchbay / Asterisk / load)", fmt.Sprintf("%.1f / %.1f / %.1f",
		r.CPU["patchbay"].Seconds(), r.CPU["asterisk"].Seconds(), r.CPU["load"].Seconds()), "", "", "")
	row("CPU-s in window, other processes (noise)", fmt.Sprintf("%.1f", r.OtherCPU.Seconds()), "", "", "")
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "† Patchbay calls: the last frame of each call is not counted (it may be in flight at hang-up).")
	return err
}

func hasBoth(r *Result) bool {
	_, a := r.CPUPerCallMin["patchbay"]
	_, b := r.CPUPerCallMin["asterisk"]
	return a && b
}

func verdict(ok bool, over string) string {
	if ok {
		return goalOK
	}
	return goalMiss + " by " + over
}

// atN judges a goal set for n calls only in a run of n calls.
func atN(r *Result, n int, ok bool, over string) string {
	if r.Calls != n {
		return "(judged at " + fmt.Sprint(n) + ")"
	}
	return verdict(ok, over)
}

func pq(d Dist) string {
	if d.N == 0 {
		return notMeasured
	}
	return fmt.Sprintf("p50 %s p99 %s", fmtDur(d.P50), fmtDur(d.P99))
}

func vsRTT(pb, base Dist) string {
	if pb.N == 0 || base.N == 0 || base.P50 == 0 || base.P99 == 0 {
		return ""
	}
	return fmt.Sprintf("p50 %s (×%.1f) p99 %s (×%.1f)", signed(pb.P50-base.P50), float64(pb.P50)/float64(base.P50),
		signed(pb.P99-base.P99), float64(pb.P99)/float64(base.P99))
}

func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + fmtDur(d)
	}
	return "-" + fmtDur(-d)
}

// fmtDur prints milliseconds with a precision that suits the size.
func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 0:
		return "-" + fmtDur(-d)
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.0f ms", ms)
	}
}

func lossStr(lost, sent uint64) string {
	if sent == 0 {
		return notMeasured
	}
	return fmt.Sprintf("%.3f %% (%d of %d)", 100*float64(lost)/float64(sent), lost, sent)
}

func cpuStr(r *Result, name string) string {
	v, ok := r.CPUPerCallMin[name]
	if !ok {
		return notMeasured
	}
	return fmt.Sprintf("%.3f", v)
}

func rssStr(r *Result, name string) string {
	v, ok := r.RSSPerCall[name]
	if !ok {
		return notMeasured
	}
	return fmtBytes(v)
}

func fmtBytes(b int64) string {
	switch {
	case b < 0:
		return "-" + fmtBytes(-b)
	case b >= 10*mib:
		return fmt.Sprintf("%.1f MiB", float64(b)/mib)
	default:
		return fmt.Sprintf("%.0f KiB", float64(b)/kib)
	}
}

// Overloaded reports whether a side was saturated or so many frames were lost that the figures show overload.
func (r *Result) Overloaded() bool {
	lossy := r.Sent > 0 && float64(r.Unechoed) > OverloadLoss*float64(r.Sent)
	return r.ServerBusy >= SaturatedBusy || r.LoadBusy >= SaturatedBusy || lossy
}
