package call

import (
	"time"

	pion "github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/ari"
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
	case signal.TypeHold, signal.TypeResume, signal.TypeTransfer, signal.TypeRecord, signal.TypeSupervise, signal.TypeModerate:
		c.onCTIMessage(msg) // cti.go
	default:
		b.send(c, signal.ErrorMessage("", wire.CodeBadMessage, msg.Type+" is not expected on this call now"))
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
	if c.m.o.ResumeGrace <= 0 || b.peer == nil {
		c.end(&ending{cause: wire.CauseNormalClearing, quiet: true})
		return
	}
	c.log.Info("browser connection lost: holding the call for a resume", "grace", c.m.o.ResumeGrace)
	b.setSession(nil)
	c.detached = true
	c.grace = time.NewTimer(c.m.o.ResumeGrace)
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
			b.send(c, signal.ErrorMessage("", e.code, e.text))
		}
		if !e.quiet {
			b.send(c, signal.HangupMessage("", e.cause))
		}
	}
	for _, o := range c.offers {
		_ = o.s.Send(o.s.Context(), signal.HangupMessage(c.id, e.cause))
	}
}
