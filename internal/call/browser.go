package call

import (
	"errors"
	"time"

	pion "github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// What a browser says about a call it is in (or is being rung for), on the call goroutine.

func (c *Call) onBrowserMessage(s *signal.Session, msg signal.Message) {
	if o := c.offers[s.ID()]; o != nil && (c.browser == nil || c.browser.s != s) {
		c.onOfferMessage(o, msg)
		return
	}
	b := c.browser
	if b == nil || b.s != s {
		return
	}
	switch msg.Type {
	case signal.TypeHangup:
		b.saidBye = true
		c.end(&ending{cause: wire.CauseNormalClearing, quiet: true})
	case signal.TypeCandidate:
		if b.peer != nil && msg.Candidate != nil && msg.Candidate.Candidate != "" {
			if err := b.peer.AddICECandidate(pion.ICECandidateInit(*msg.Candidate)); err != nil {
				c.log.Debug("add browser candidate", "err", err)
			}
		}
	case signal.TypeDTMF:
		c.sendDTMF(msg.Digits)
	case signal.TypeAnswer:
		c.onRenegotiationAnswer(msg.SDP)
	case signal.TypeOffer:
		c.iceRestart(msg.SDP)
	case signal.TypeHold, signal.TypeResume, signal.TypeTransfer, signal.TypeRecord, signal.TypeSupervise, signal.TypeModerate:
		c.onCTIMessage(msg) // cti.go
	case signal.TypeShare:
		c.onShare(msg) // screen sharing in a room (share.go)
	default:
		b.send(c, signal.ErrorMessage("", wire.CodeBadMessage, msg.Type+" is not expected on this call now"))
	}
}

// iceRestart applies a browser's mid-call offer (new ufrag/pwd: it changed networks) to its peer and answers it.
// Asterisk never hears of it: only the browser's path to Patchbay changes.
func (c *Call) iceRestart(offer string) {
	b := c.browser
	if b.peer == nil {
		b.send(c, signal.ErrorMessage("", wire.CodeBadMessage, "no media on this call yet to restart"))
		return
	}
	ctx, cancel := c.setupCtx()
	defer cancel()
	answer, err := b.peer.Restart(ctx, offer)
	switch {
	case errors.Is(err, media.ErrNotStable):
		// A video renegotiation offer of ours is outstanding: the browser rolls back and restarts again.
		c.log.Info("ICE restart crossed a renegotiation; the browser retries")
	case err != nil:
		c.log.Warn("ICE restart refused", "err", err)
		b.send(c, signal.ErrorMessage("", wire.CodeBadMessage, "ICE restart: "+err.Error()))
	default:
		c.log.Info("ICE restarted: the browser's media moves to its new path")
		b.send(c, signal.Message{Type: signal.TypeAnswer, SDP: answer})
	}
}

// sendDTMF plays the browser's digits toward the far party (RFC 4733 events on its leg, as a phone would).
func (c *Call) sendDTMF(digits string) {
	target := ""
	switch {
	case c.far != nil:
		target = c.far.id
	case c.inDialplan != "":
		c.browser.send(c, signal.ErrorMessage("", wire.CodeBadMessage,
			"DTMF does not reach extension "+c.inDialplan+": it runs without a bridge (calls.dialplan_extensions)"))
		return
	default:
		c.browser.send(c, signal.ErrorMessage("", wire.CodeBadMessage, "this call has no far party to send DTMF to"))
		return
	}
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := c.a.Channel(target).SendDTMF(ctx, digits, ari.DTMFOptions{}); err != nil && c.ctx.Err() == nil {
		c.log.Warn("send DTMF", "err", err)
	}
}

// onSessionGone: a browser's socket closed. A browser still being rung just drops out of the ringing; a browser in
// the call detaches for ResumeGrace (its media may well still flow) or ends the call.
func (c *Call) onSessionGone(s *signal.Session) {
	if o := c.offers[s.ID()]; o != nil {
		o.close()
		delete(c.offers, s.ID())
		c.offersLeft()
		return
	}
	b := c.browser
	if b == nil || b.s != s {
		return
	}
	grace := s.ResumeGrace() // 0: the page closed its socket itself, or resume is off
	if grace <= 0 || b.peer == nil {
		c.end(&ending{cause: wire.CauseNormalClearing, quiet: true})
		return
	}
	c.log.Info("browser connection lost: holding the call for a resume", "grace", grace)
	b.setSession(nil)
	c.detached = true
	c.grace = time.NewTimer(grace)
}

// onResumed: the browser came back with its resume token; messages flow to its new session.
func (c *Call) onResumed(s *signal.Session) {
	b := c.browser
	if b == nil || !c.detached {
		return
	}
	b.setSession(s)
	c.detached = false
	if c.grace != nil {
		c.grace.Stop()
		c.grace = nil
	}
	c.log.Info("browser resumed the call", "session", s.ID())
}

// tellBrowsers sends the ending to every browser of the call: the error first when there is one to explain, then
// the hangup, unless the browser ended the call itself.
func (c *Call) tellBrowsers(e *ending) {
	if b := c.browser; b != nil && b.s != nil && !b.saidBye {
		if e.code != "" {
			// Final only for a code that ends calls (docs/signalling.md), which the session follows with that code's
			// hangup. Any other code (bad_message for an offer pion cannot parse, unknown_call for a supervised call
			// gone meanwhile) is a plain error, and the hangup below carries the ending's cause.
			m := signal.ErrorMessage("", e.code, e.text)
			m.Final = wire.EndsCall(e.code)
			b.send(c, m)
		}
		if !e.quiet {
			b.send(c, signal.HangupMessage("", e.cause))
		}
	}
	for _, o := range c.offers {
		_ = o.s.Send(o.s.Context(), signal.HangupMessage(c.id, e.cause))
	}
}
