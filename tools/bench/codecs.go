package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// CompareCodecs writes the browser ⇄ browser runs (Options.Pairs) side by side by codec, G.711 against Opus, per
// N: what HD voice costs the server per call-minute, and the mouth-to-ear delay it adds. The added delay is half
// the difference of the median echo round trips (the echo crosses the path twice) plus the Opus encoder's
// lookahead, which a round trip through a passthrough path does not include (the frames are encoded once, by the
// caller, before they are timed). It writes nothing when there are no such runs.
func CompareCodecs(w io.Writer, rs []*Result) error {
	byN := map[int]map[string][]*Result{}
	for _, r := range rs {
		if !r.Pairs {
			continue
		}
		if byN[r.Calls] == nil {
			byN[r.Calls] = map[string][]*Result{}
		}
		byN[r.Calls][r.Codec] = append(byN[r.Calls][r.Codec], r)
	}
	if len(byN) == 0 {
		return nil
	}
	ns := make([]int, 0, len(byN))
	for n := range byN {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t") }
	fmt.Fprintf(tw, "\nBrowser ⇄ browser calls: G.711 (PCMU over RTP) against Opus (over media WebSockets), runs of the same bench\n")
	for _, n := range ns {
		g, o := byN[n]["pcmu"], byN[n]["opus"]
		fmt.Fprintf(tw, "\nN=%d calls (2 browser legs each; runs: g711 %d, opus %d)\n", n, len(g), len(o))
		row("metric", "g711", "opus", "opus ÷ g711")
		line := func(name string, f func(*Result) (float64, bool), format string) {
			row(name, listF(g, f, format), listF(o, f, format), ratio(meanF(o, f), meanF(g, f)))
		}
		line("server CPU-s per call-minute (Asterisk+Patchbay)", serverCPU, "%.3f")
		line("  of which Asterisk", procCPU("asterisk"), "%.3f")
		line("  of which Patchbay", procCPU("patchbay"), "%.3f")
		line("memory per call (Asterisk+Patchbay)", memKiB, "%.0f KiB")
		row("echo RTT p50 / p99 (through both legs, there and back)", listS(g, func(r *Result) string { return pq(r.RTT) }),
			listS(o, func(r *Result) string { return pq(r.RTT) }), ratio(meanF(o, rttP50), meanF(g, rttP50)))
		added := notMeasured
		if gm, om := meanF(g, rttP50), meanF(o, rttP50); gm > 0 && om > 0 {
			path := time.Duration((om - gm) / 2 * float64(time.Second))
			codec := time.Duration(meanF(o, func(r *Result) (float64, bool) { return r.CodecDelay.Seconds(), r.CodecDelay > 0 }) * float64(time.Second))
			added = fmt.Sprintf("%s (path %s + encoder lookahead %s)", signed(path+codec), signed(path), fmtDur(codec))
		}
		row("added mouth-to-ear delay, one way", "", added, "")
		row("frames not echoed", listS(g, func(r *Result) string { return lossStr(r.Unechoed, r.Sent) }),
			listS(o, func(r *Result) string { return lossStr(r.Unechoed, r.Sent) }), "")
		row("failed calls", listS(g, func(r *Result) string { return fmt.Sprint(r.Failed) }),
			listS(o, func(r *Result) string { return fmt.Sprint(r.Failed) }), "")
		row("Asterisk channels / bridges per call", listS(g, resStr), listS(o, resStr), "")
		row("busy: server core / load core", listS(g, busyStr), listS(o, busyStr), "")
		row("CPU-s of other processes in window (noise)", listS(g, otherStr), listS(o, otherStr), "")
	}
	return tw.Flush()
}

func procCPU(name string) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		v, ok := r.CPUPerCallMin[name]
		return v, ok
	}
}

func rttP50(r *Result) (float64, bool) { return r.RTT.P50.Seconds(), r.RTT.N > 0 }
