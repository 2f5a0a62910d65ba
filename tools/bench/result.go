package bench

import (
	"time"
)

type window struct{ from, to time.Time }

func (w window) contains(t time.Time) bool { return !t.Before(w.from) && t.Before(w.to) }

// Result is what one run measured.
type Result struct {
	// Mode is "patchbay" (browsers through Patchbay) or "native" (Asterisk's own WebRTC).
	Mode string
	// ABRun is Options.ABRun: this run is one half of a side-by-side run, whose Asterisk figures are the whole
	// Asterisk's (it served both halves).
	ABRun string `json:",omitempty"`
	// Codec the callers offered ("pcmu", or "opus": Opus then PCMU) and Pairs whether each call was browser ⇄
	// browser (two legs, the echo crossing both); CodecDelay is the encoder's algorithmic delay (Opus lookahead)
	// that a mouth-to-ear figure adds to the path's, beside the 20 ms frame both codecs have.
	Codec      string        `json:",omitempty"`
	Pairs      bool          `json:",omitempty"`
	CodecDelay time.Duration `json:",omitempty"`

	Calls, BaselineCalls int
	Rate                 float64
	Steady               time.Duration

	// Patchbay calls: how many lasted the whole steady window, how many failed (with the first errors).
	InWindow, Failed int
	Errors           []string
	// BaselineInWindow baseline calls were up for the whole window.
	BaselineInWindow int
	// UpAtStart calls were connected when the steady window began (when channels and bridges are counted).
	UpAtStart int

	// Setup times of the Patchbay calls, measured by the client from sending the offer: answer SDP received, and
	// first echoed packet. ServerAnswer is from Patchbay's call records (offer received → answer SDP sent),
	// ServerFarAnswered from its log (offer received → far end answered, after the caller's ICE and DTLS), if given.
	Answer, FirstEcho, ServerAnswer, ServerFarAnswered Dist

	// RTT of echoed packets arriving in the steady window, through Patchbay and on the baseline.
	RTT, BaselineRTT Dist
	// Frames sent and not echoed back, over whole calls. For Patchbay calls the last frame of each call is not
	// counted: it may be in flight when the synthetic caller hangs up.
	Sent, Unechoed                 uint64
	BaselineSent, BaselineUnechoed uint64
	// WindowSent and WindowUnechoed count only frames sent in the steady window, as RTT does: what the calls lost
	// while the server carried them all, free of setup and hang-up.
	WindowSent, WindowUnechoed uint64
	// SeqLost is packets missing from Asterisk's echo stream as the clients received it (RTP sequence gaps).
	SeqLost int64

	// Per process ("patchbay", "asterisk", "load"): CPU-seconds over the window and per call-minute, RSS growth
	// from idle to the end of the window, total and per call.
	CPU           map[string]time.Duration
	CPUPerCallMin map[string]float64
	RSSDelta      map[string]int64
	RSSPerCall    map[string]int64
	// ServerBusy and LoadBusy are the fraction of the CPUs they may use that Patchbay+Asterisk and the load
	// generator kept busy over the window; near 1 the host is saturated and the per-call figures understate the
	// cost, since work was dropped (see loss).
	ServerBusy, LoadBusy float64
	// OtherCPU is CPU time the host spent on other processes during the window: the noise in the figures.
	OtherCPU time.Duration
	// Scrapes of Patchbay's /metrics during the run (Options.MetricsURL), and how many failed.
	Scrapes, ScrapeErrors int

	// ChannelsPerCall and BridgesPerCall are Asterisk's channels and bridges at the start of the steady window,
	// less the baseline calls' (3 channels, 1 bridge each), per call; negative when not counted.
	ChannelsPerCall, BridgesPerCall float64
	// PacketOpMicros is Patchbay's CPU per packet operation: its CPU over the window divided by 200 operations a
	// second per call (50 packets a second each way, each read once and written once). 0 in native mode.
	PacketOpMicros float64
}

// countsPerCall fills ChannelsPerCall and BridgesPerCall.
func (r *Result) countsPerCall(c resourceCounts) {
	r.ChannelsPerCall, r.BridgesPerCall = -1, -1
	calls := r.UpAtStart
	if !c.ok || calls == 0 {
		return
	}
	r.ChannelsPerCall = float64(c.channels-3*c.baseline) / float64(calls)
	r.BridgesPerCall = float64(c.bridges-c.baseline) / float64(calls)
}

// summarize turns the calls' reports and the /proc samples into a Result.
func summarize(o Options, outs []callOutcome, plains []plainResult, w window, idle, start, end map[string]ProcSample) *Result {
	mode := "patchbay"
	if o.Native != nil {
		mode = "native"
	}
	if o.Label != "" {
		mode = o.Label
	}
	r := &Result{Mode: mode, ABRun: o.ABRun, Codec: o.Codec, Pairs: o.Pairs, Calls: o.Calls, BaselineCalls: o.BaselineCalls, Rate: o.Rate, Steady: o.Steady,
		CPU: map[string]time.Duration{}, CPUPerCallMin: map[string]float64{}, RSSDelta: map[string]int64{}, RSSPerCall: map[string]int64{}}
	var answer, echo, rtt, brtt []time.Duration
	for _, oc := range outs {
		if oc.err != nil {
			r.Failed++
			if len(r.Errors) < 5 {
				r.Errors = append(r.Errors, oc.err.Error())
			}
		}
		rep := oc.rep
		if rep == nil {
			continue
		}
		r.CodecDelay = max(r.CodecDelay, rep.Lookahead)
		if rep.AnswerAfter > 0 {
			answer = append(answer, rep.AnswerAfter)
		}
		if rep.FirstEchoAfter > 0 {
			echo = append(echo, rep.FirstEchoAfter)
			// Keep the RTTs of the echoes that arrived in the window.
			for i, d := range rep.RTTs {
				if i < len(rep.EchoAt) && w.contains(rep.Start.Add(rep.EchoAt[i])) {
					rtt = append(rtt, d)
				}
			}
		}
		r.Sent += rep.Sent
		for _, at := range rep.NotEchoed {
			if w.contains(at) {
				r.WindowUnechoed++
			}
		}
		// The frames a caller sent in the window: one per 20 ms while it was up (it sends from connected to end).
		from, to := w.from, w.to
		if up := rep.Start.Add(rep.ConnectedAfter); rep.ConnectedAfter > 0 && up.After(from) {
			from = up
		}
		if end := rep.Start.Add(rep.Duration); end.Before(to) {
			to = end
		}
		if rep.ConnectedAfter > 0 && to.After(from) {
			r.WindowSent += uint64(to.Sub(from) / frameInterval)
		}
		if rep.Sent > uint64(rep.RTT.Count)+1 {
			r.Unechoed += rep.Sent - uint64(rep.RTT.Count) - 1
		}
		r.SeqLost += rep.Lost
		if rep.ConnectedAfter > 0 && !rep.Start.Add(rep.ConnectedAfter).After(w.from) && rep.Start.Add(rep.Duration).After(w.from) {
			r.UpAtStart++
		}
		if oc.err == nil && rep.ConnectedAfter > 0 && !rep.Start.Add(rep.ConnectedAfter).After(w.from) &&
			!rep.Start.Add(rep.Duration).Before(w.to) {
			r.InWindow++
		}
	}
	for _, p := range plains {
		r.BaselineSent += p.Sent
		r.BaselineUnechoed += p.Sent - min(p.Sent, p.Echoed)
		if len(p.RTTs) > 0 && !p.RTTs[0].At.After(w.from) && !p.RTTs[len(p.RTTs)-1].At.Before(w.to.Add(-time.Second)) {
			r.BaselineInWindow++
		}
		for _, t := range p.RTTs {
			if w.contains(t.At) {
				brtt = append(brtt, t.RTT)
			}
		}
	}
	r.Answer, r.FirstEcho, r.RTT, r.BaselineRTT = Distribution(answer), Distribution(echo), Distribution(rtt), Distribution(brtt)

	minutes := w.to.Sub(w.from).Minutes()
	perProc := map[string]int{"patchbay": r.InWindow, "asterisk": r.InWindow + r.BaselineInWindow, "load": r.InWindow}
	for name, calls := range perProc {
		s, ok1 := start[name]
		e, ok2 := end[name]
		if !ok1 || !ok2 {
			continue
		}
		r.CPU[name] = e.CPU - s.CPU
		r.RSSDelta[name] = e.RSS - idle[name].RSS
		if calls > 0 {
			r.CPUPerCallMin[name] = r.CPU[name].Seconds() / (float64(calls) * minutes)
			r.RSSPerCall[name] = r.RSSDelta[name] / int64(calls)
		}
	}
	var ours time.Duration
	for _, name := range []string{"patchbay", "asterisk", "load"} {
		ours += r.CPU[name]
	}
	window := w.to.Sub(w.from)
	if n := max(end["patchbay"].CPUs, end["asterisk"].CPUs); n > 0 {
		r.ServerBusy = (r.CPU["patchbay"] + r.CPU["asterisk"]).Seconds() / (window.Seconds() * float64(n))
	}
	if n := end["load"].CPUs; n > 0 {
		r.LoadBusy = r.CPU["load"].Seconds() / (window.Seconds() * float64(n))
	}
	r.OtherCPU = max(end[hostKey].CPU-start[hostKey].CPU-ours, 0)
	if cpu, ok := r.CPU["patchbay"]; ok && r.InWindow > 0 && o.Native == nil {
		ops := 200.0 // per call a second: 50 packets each way, each read once and written once
		if o.Pairs {
			ops *= 2 // two browser legs
		}
		r.PacketOpMicros = float64(cpu.Microseconds()) / (float64(r.InWindow) * window.Seconds() * ops)
	}
	return r
}
