package call

import (
	"time"

	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/relay"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// What a call tells its Observer (metrics and call records): started, media as it flows, quality findings, and
// one record when it ends. A call refused before it started is reported as refused, with a record of its own.

// obs is a call's share of observing, owned by the call goroutine.
type obs struct {
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

// observeRefused reports a call refused before it started.
func (m *Manager) observeRefused(kind Kind, code string, r cdr.Record) {
	obs := m.observer()
	obs.CallRefused(string(kind), code)
	now := time.Now()
	r.Direction, r.Refusal, r.Cause, r.OfferAt = string(kind), code, refusalCause(code), now
	r.Finish(now)
	obs.CallEnded(r)
}

// observeStart opens the call's record, which the flow has filled with what it knows (parties, caller ID, trunk)
// before starting the call; the call goroutine adds the rest.
func (c *Call) observeStart() {
	c.obs.rec.CallID, c.obs.rec.Direction, c.obs.rec.OfferAt = c.id, string(c.kind), c.started
	c.m.observer().CallStarted(string(c.kind))
}

// observeTick runs twice a second on the call goroutine: media deltas every second, and once the call is
// answered the one-way-audio check, so a silence of calls.one_way_after is reported within half a second.
func (c *Call) observeTick(now time.Time) {
	b := c.browser
	if b == nil || b.rl == nil {
		return
	}
	st := b.rl.Stats()
	if c.obs.ticks++; c.obs.ticks%2 == 0 {
		c.observeMedia(st)
	}
	if c.onHold() {
		// A held call is silent on purpose: the watch starts afresh on resume (hold.go). What it found before the
		// hold stays on the record.
		if c.obs.ow != nil {
			c.obs.ow.Flag(&c.obs.rec)
			c.obs.ow = nil
		}
		return
	}
	if c.answered.IsZero() || c.detached {
		return
	}
	if c.obs.ow == nil {
		c.obs.ow = cdr.NewOneWayDetector(c.m.o.OneWayAfter, now)
	}
	if f, ok := c.obs.ow.Observe(now, st.ToBrowser.Packets, st.ToAsterisk.Packets); ok {
		c.log.Warn("media quality: "+f.Issue, "silent", f.Towards, "to_browser_pkts", st.ToBrowser.Packets,
			"to_asterisk_pkts", st.ToAsterisk.Packets, "hint", f.Hint)
		c.m.observer().Quality(string(c.kind), f.Issue, f.Towards)
		b.send(c, signal.QualityMessage("", f.Issue, f.Towards))
	}
}

func (c *Call) observeMedia(st relay.Stats) {
	d := func(now, before relay.DirStats) cdr.MediaDelta {
		return cdr.MediaDelta{Packets: now.Packets - before.Packets, Bytes: now.Bytes - before.Bytes, Drops: now.Drops - before.Drops}
	}
	tb, ta := d(st.ToBrowser, c.obs.last.ToBrowser), d(st.ToAsterisk, c.obs.last.ToAsterisk)
	c.obs.last = st
	if tb.Packets+ta.Packets+tb.Drops+ta.Drops > 0 {
		c.m.observer().Media(string(c.kind), tb, ta)
	}
}

// observeEnd closes the record and reports the call ended, once, from close (after the relay has stopped).
func (c *Call) observeEnd(e *ending) {
	r := &c.obs.rec
	r.Cause = e.cause
	if b := c.browser; b != nil {
		if b.rl != nil {
			st := b.rl.Stats()
			c.observeMedia(st)
			r.ToBrowser = cdr.MediaTotals{Packets: st.ToBrowser.Packets, Bytes: st.ToBrowser.Bytes, Drops: st.ToBrowser.Drops}
			r.ToAsterisk = cdr.MediaTotals{Packets: st.ToAsterisk.Packets, Bytes: st.ToAsterisk.Bytes, Drops: st.ToAsterisk.Drops}
		}
		if b.peer != nil {
			r.Codec = b.peer.Codec().Name()
			if q := b.peer.Quality(); q.Reports > 0 {
				lq := &cdr.LegQuality{JitterMS: float64(q.Jitter.Microseconds()) / 1000, RTTMS: float64(q.RTT.Microseconds()) / 1000}
				if sent := r.ToBrowser.Packets; sent > 0 {
					lq.Loss = min(float64(q.TotalLost)/float64(sent), 1)
				}
				r.Browser = lq
			}
		}
	}
	if e.code == wire.CodeNoAudio {
		r.Flag(wire.QualityNoAudio)
	}
	if c.obs.ow != nil {
		c.obs.ow.Flag(r)
	}
	r.Finish(time.Now())
	c.m.observer().CallEnded(*r)
}
