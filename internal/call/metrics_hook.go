package call

// METRICS-HOOK: this whole file is the temporary bridge from today's call code to cdr.Observer, so the metrics
// branch's end-to-end tests run. The lead drops it at merge and wires the new call package to the same interface
// (see the metrics branch's report for where each call belongs in a call's life).

import (
	"time"

	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/relay"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// callObs is a call's share of observing: its record, the one-way detector and the last counters reported.
type callObs struct {
	on    bool
	rec   cdr.Record
	ow    *cdr.OneWayDetector
	last  relay.Stats
	ticks int
}

func (m *Manager) observer() cdr.Observer {
	if m.o.Observer == nil {
		return cdr.Nop{}
	}
	return m.o.Observer
}

// obsRefused reports a call refused before it started, with its record.
func (m *Manager) obsRefused(dir, code, from, to, user string) {
	obs := m.observer()
	obs.CallRefused(dir, code)
	cause := wire.CauseCallRejected
	switch code {
	case wire.CodeInvalidNumber:
		cause = wire.CauseUnallocatedNumber
	case wire.CodeUnavailable, wire.CodeInternal:
		cause = wire.CauseTemporaryFailure
	}
	r := cdr.Record{Direction: dir, From: from, To: to, User: user, Refusal: code, Cause: cause, OfferAt: time.Now()}
	r.Finish(time.Now())
	obs.CallEnded(r)
}

// obsStart opens the call's record and reports it started.
func (c *Call) obsStart(dir, from, to, user string) {
	c.obs = callObs{on: true, rec: cdr.Record{CallID: c.id, Direction: dir, From: from, To: to, User: user, OfferAt: c.started}}
	c.m.observer().CallStarted(dir)
}

// obsTick runs twice a second on the call's goroutine: the one-way check once answered (so a 4 s silence is seen
// within 4.5 s), and media deltas every other tick.
func (c *Call) obsTick(now time.Time) {
	if !c.obs.on || c.rl == nil {
		return
	}
	st := c.rl.Stats()
	if c.obs.ticks++; c.obs.ticks%2 == 0 {
		c.obsMedia(st)
	}
	if !c.answered {
		return
	}
	if c.obs.ow == nil {
		c.obs.ow = cdr.NewOneWayDetector(c.m.o.OneWayAfter, now)
	}
	if f, ok := c.obs.ow.Observe(now, st.ToBrowser.Packets, st.ToAsterisk.Packets); ok {
		c.log.Warn("media quality: "+f.Issue, "silent", f.Towards, "to_browser_pkts", st.ToBrowser.Packets,
			"to_asterisk_pkts", st.ToAsterisk.Packets, "hint", f.Hint)
		c.m.observer().Quality(c.obs.rec.Direction, f.Issue, f.Towards)
		c.send(c.browser, signal.QualityMessage(c.clientID, f.Issue, f.Towards))
	}
}

func (c *Call) obsMedia(st relay.Stats) {
	d := func(now, before relay.DirStats) cdr.MediaDelta {
		return cdr.MediaDelta{Packets: now.Packets - before.Packets, Bytes: now.Bytes - before.Bytes, Drops: now.Drops - before.Drops}
	}
	tb, ta := d(st.ToBrowser, c.obs.last.ToBrowser), d(st.ToAsterisk, c.obs.last.ToAsterisk)
	c.obs.last = st
	if tb.Packets+ta.Packets+tb.Drops+ta.Drops > 0 {
		c.m.observer().Media(c.obs.rec.Direction, tb, ta)
	}
}

// obsEnd closes the record and reports the call ended; it runs once, at the end of teardown.
func (c *Call) obsEnd(reason string) {
	if !c.obs.on {
		return
	}
	c.obs.on = false
	r := &c.obs.rec
	if r.Cause == "" {
		r.Cause = wire.CauseNormalClearing
		if reason == "failure" {
			r.Cause = wire.CauseTemporaryFailure
		}
	}
	if c.rl != nil {
		st := c.rl.Stats()
		c.obsMedia(st)
		r.ToBrowser = cdr.MediaTotals{Packets: st.ToBrowser.Packets, Bytes: st.ToBrowser.Bytes, Drops: st.ToBrowser.Drops}
		r.ToAsterisk = cdr.MediaTotals{Packets: st.ToAsterisk.Packets, Bytes: st.ToAsterisk.Bytes, Drops: st.ToAsterisk.Drops}
	}
	if c.peer != nil {
		r.Codec = c.peer.Law().Codec().MimeType[len("audio/"):] + "/8000"
		if q := c.peer.Quality(); q.Reports > 0 {
			lq := &cdr.LegQuality{JitterMS: float64(q.Jitter.Microseconds()) / 1000, RTTMS: float64(q.RTT.Microseconds()) / 1000}
			if sent := r.ToBrowser.Packets; sent > 0 {
				lq.Loss = min(float64(q.TotalLost)/float64(sent), 1)
			}
			r.Browser = lq
		}
	}
	if ns := c.firstMedia.Load(); ns != 0 {
		r.FirstMediaAt = time.Unix(0, ns)
	}
	if c.obs.ow != nil {
		c.obs.ow.Flag(r)
	}
	r.Finish(time.Now())
	c.m.observer().CallEnded(*r)
}
