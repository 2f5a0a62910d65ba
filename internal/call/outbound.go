package call

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	pion "github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// placeCall starts a browser's outgoing call after checking, before any ARI request, that the number routes and
// that the token may dial it.
func (m *Manager) placeCall(s *signal.Session, msg signal.Message) {
	ctx := s.Context()
	fail := func(code, text string) {
		_ = s.Send(ctx, signal.ErrorMessage(msg.CallID, code, text))
	}
	d, err := m.o.Router.Route(msg.To)
	if err != nil {
		code := wire.CodeInvalidNumber
		var re *dialplan.RouteError
		if errors.As(err, &re) {
			code = re.Code
		}
		m.log.Warn("security: call refused", "session", s.ID(), "user", s.User(), "code", code, "err", err)
		fail(code, err.Error())
		return
	}
	claims := s.Claims()
	if claims == nil || !dialplan.Allowed(d, claims.Dial) {
		m.log.Warn("security: destination not granted by token", "session", s.ID(), "user", s.User(), "kind", d.Kind, "number", d.Number)
		fail(wire.CodeForbiddenDestination, "your token does not allow calling "+string(d.Kind)+" destinations")
		return
	}
	if d.Kind != dialplan.KindExtension && d.Kind != dialplan.KindPSTN {
		fail(wire.CodeForbiddenDestination, "calls to "+string(d.Kind)+" destinations are not available on this server yet")
		return
	}
	lease, ok := m.admitBrowserCall(s, msg, d) // limits and caller ID (pstn.go)
	if !ok {
		return
	}
	runCtx := m.runCtx()
	if runCtx == nil || runCtx.Err() != nil || !m.o.ARI.Connected() {
		lease.End(0)
		fail(wire.CodeUnavailable, "Patchbay is not connected to Asterisk or is shutting down; try again shortly")
		return
	}
	c := m.newCall(runCtx, s.Logger().With("session", s.ID(), "client_call", msg.CallID))
	c.browser, c.clientID = s, msg.CallID
	if !m.bind(s, msg.CallID, c) {
		lease.End(0)
		fail(wire.CodeDuplicateCall, "call_id already used on this connection")
		return
	}
	if err := m.register(c); err != nil {
		lease.End(0)
		m.unbind(s, msg.CallID)
		fail(wire.CodeUnavailable, err.Error())
		return
	}
	m.holdLease(c.id, lease)
	go c.runOutbound(msg.SDP, d)
}

// runOutbound is the goroutine that owns an outgoing call from offer to teardown.
func (c *Call) runOutbound(offer string, d dialplan.Decision) {
	ctx, cancel := context.WithCancel(c.ctx)
	c.ctx = ctx
	defer func() {
		cancel()
		c.m.endCall(c.id)
		c.m.unbind(c.browser, c.clientID)
		c.m.unregister(c)
	}()
	c.log = c.log.With("to", d.Number, "kind", d.Kind)
	c.log.Info("outgoing call")
	a := c.m.o.ARI
	c.farID = "pb-far-" + c.id
	sub := a.Subscribe(ari.Filter{Name: "call-" + c.id, IDs: []string{c.farID, c.bridgeID, c.emID}})
	defer sub.Close()

	iceDead := make(chan struct{}, 1)
	peer, answer, err := c.m.o.Media.Answer(ctx, offer, media.PeerOptions{
		Logger: c.log,
		OnICEState: func(s pion.ICEConnectionState) {
			if s == pion.ICEConnectionStateFailed || s == pion.ICEConnectionStateClosed {
				select {
				case iceDead <- struct{}{}:
				default:
				}
			}
		},
	})
	if err != nil {
		code := media.ErrorCode(err)
		if code == "" {
			code = wire.CodeBadMessage
		}
		c.send(c.browser, signal.ErrorMessage(c.clientID, code, err.Error()))
		c.teardown("failure")
		return
	}
	c.peer = peer
	setupCtx, setupCancel := context.WithTimeout(ctx, 10*time.Second)
	err = c.attachMedia(setupCtx)
	if err == nil {
		err = c.createFar(setupCtx, d, sub)
	}
	setupCancel()
	if err != nil {
		c.log.Error("call setup failed", "err", err)
		c.send(c.browser, signal.ErrorMessage(c.clientID, wire.CodeUnavailable, "could not set the call up in Asterisk; try again"))
		c.send(c.browser, signal.HangupMessage(c.clientID, wire.CauseTemporaryFailure))
		c.teardown("failure")
		return
	}
	c.send(c.browser, signal.Message{Type: signal.TypeAnswer, CallID: c.clientID, SDP: answer})
	if err := a.Channel(c.farID).Dial(ctx, "", c.m.o.DialTimeout); err != nil {
		c.log.Error("dial far end", "err", err)
		c.send(c.browser, signal.HangupMessage(c.clientID, wire.CauseTemporaryFailure))
		c.teardown("failure")
		return
	}
	cause := c.loop(sub, iceDead)
	c.teardown(ariReason(cause))
}

// createFar makes the far leg in Stasis and puts it in the bridge, so that nothing the far end says is missed.
// The endpoint is the router's Decision.Endpoint, built only from a validated number.
func (c *Call) createFar(ctx context.Context, d dialplan.Decision, sub *ari.Subscription) error {
	a := c.m.o.ARI
	vars := map[string]string{}
	if d.Kind == dialplan.KindPSTN {
		// Outside calls present only the token's caller ID (checked in admitBrowserCall), in From and PAI.
		num, err := c.m.browserCallerID(c.browser.Claims())
		if err != nil {
			return err
		}
		name := ""
		if cl := c.browser.Claims(); cl != nil {
			name = cl.Name
		}
		vars = callerVars(num, name)
		c.log = c.log.With("caller_id", num, "trunk", d.Trunk)
		// Joining the bridge copies the peer's caller ID into the far leg's connected line, which is what PJSIP
		// sends in From and PAI: the externalMedia peer must present the same identity.
		if err := presentAs(ctx, a, c.emID, num, name); err != nil {
			return err
		}
	} else if cl := c.browser.Claims(); cl != nil {
		if cl.Name != "" {
			vars["CALLERID(name)"] = cl.Name
		}
		if len(cl.CallerIDs) > 0 {
			vars["CALLERID(num)"] = cl.CallerIDs[0]
		} else {
			vars["CALLERID(num)"] = cl.User()
		}
	}
	if _, err := a.Channels().Create(ctx, ari.CreateRequest{
		Endpoint:  farEndpoint(d),
		App:       a.Application(),
		AppArgs:   "leg," + c.id,
		ChannelID: c.farID,
		Formats:   c.peer.Law().Format(),
		Variables: vars,
	}); err != nil {
		return err
	}
	// The create reply can beat the channel into Stasis; addChannel before StasisStart fails with 422.
	if err := waitStasisStart(ctx, sub, c.farID); err != nil {
		return err
	}
	return a.Bridge(c.bridgeID).AddChannel(ctx, ari.AddChannelOptions{}, c.farID)
}

// waitStasisStart waits for channel id to enter the application. Nothing else of interest happens to a channel
// that has not been dialled yet, so other events are let go; its destruction ends the wait.
func waitStasisStart(ctx context.Context, sub *ari.Subscription, id string) error {
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("channel %s never entered Stasis: %w", id, ctx.Err())
		case ev := <-sub.Events():
			switch e := ev.(type) {
			case *ari.StasisStart:
				if e.Channel.ID == id {
					return nil
				}
			case *ari.ChannelDestroyed:
				if e.Channel.ID == id {
					return fmt.Errorf("channel %s was destroyed before entering Stasis (cause %d %s)", id, e.Cause, e.CauseTxt)
				}
			}
		}
	}
}

// loop runs a connected (or connecting) call until one side ends it, and returns the cause toward the browser.
func (c *Call) loop(sub *ari.Subscription, iceDead <-chan struct{}) string {
	a := c.m.o.ARI
	var maxDur <-chan time.Time
	if dur := c.m.maxDuration(c.id); dur > 0 { // max_call_duration, shortened by the daily budget
		t := time.NewTimer(dur)
		defer t.Stop()
		maxDur = t.C
	}
	var graceC <-chan time.Time // NETWORK-HOOK: set while the browser's signalling is gone
	for {
		select {
		case <-graceC: // NETWORK-HOOK
			c.log.Info("browser did not resume within the grace period: ending the call")
			return wire.CauseSignallingLost
		case <-c.ctx.Done():
			c.send(c.browser, signal.HangupMessage(c.clientID, wire.CauseNormalClearing))
			return wire.CauseNormalClearing
		case <-maxDur:
			c.log.Warn("security: call reached the maximum duration", "max", c.m.maxDuration(c.id))
			c.send(c.browser, signal.ErrorMessage(c.clientID, wire.CodeMaxDuration, "the call reached its maximum duration"))
			c.send(c.browser, signal.HangupMessage(c.clientID, wire.CauseNormalClearing))
			return wire.CauseNormalClearing
		case <-iceDead:
			c.log.Warn("browser media (ICE) failed")
			c.send(c.browser, signal.HangupMessage(c.clientID, wire.CauseTemporaryFailure))
			return wire.CauseTemporaryFailure
		case in := <-c.inbox:
			switch in.kind {
			case kindShutdown:
				c.send(c.browser, signal.HangupMessage(c.clientID, wire.CauseNormalClearing))
				return wire.CauseNormalClearing
			case kindSessionGone:
				// NETWORK-HOOK: hold the call for the resume grace instead of ending it.
				if in.session != c.browser {
					break // a session this call already left
				}
				grace := in.session.ResumeGrace()
				if grace <= 0 {
					return wire.CauseNormalClearing
				}
				c.log.Info("browser signalling lost: holding the call for a resume", "grace", grace)
				graceT := time.NewTimer(grace)
				defer graceT.Stop()
				graceC = graceT.C
			case kindResumed: // NETWORK-HOOK
				c.log.Info("browser resumed the call", "session", in.session.ID())
				c.browser = in.session
				graceC = nil
			case kindBrowser:
				switch in.msg.Type {
				case signal.TypeOffer: // NETWORK-HOOK: ICE restart; DTLS/SRTP and Asterisk untouched
					answer, err := c.peer.Restart(c.ctx, in.msg.SDP)
					if err != nil {
						c.log.Warn("ICE restart refused", "err", err)
						c.send(c.browser, signal.ErrorMessage(c.clientID, wire.CodeBadMessage, "ICE restart not applied: "+err.Error()))
						break
					}
					c.log.Info("ICE restart answered")
					c.send(c.browser, signal.Message{Type: signal.TypeAnswer, CallID: c.clientID, SDP: answer})
				case signal.TypeHangup:
					return wire.CauseNormalClearing
				case signal.TypeCandidate:
					if in.msg.Candidate != nil && in.msg.Candidate.Candidate != "" {
						if err := c.peer.AddICECandidate(pion.ICECandidateInit(*in.msg.Candidate)); err != nil {
							c.log.Debug("add browser candidate", "err", err)
						}
					}
				case signal.TypeDTMF:
					if err := a.Channel(c.farID).SendDTMF(c.ctx, in.msg.Digits, ari.DTMFOptions{}); err != nil {
						c.log.Warn("send DTMF", "err", err)
					}
				}
			}
		case ev := <-sub.Events():
			if cause, done := c.farEvent(ev); done {
				return cause
			}
		}
	}
}

// farEvent handles an ARI event about the call's resources; done says the call is over.
func (c *Call) farEvent(ev ari.Event) (cause string, done bool) {
	switch e := ev.(type) {
	case *ari.Dial:
		if e.Peer.ID != c.farID {
			return "", false
		}
		switch e.Dialstatus {
		case "RINGING", "PROGRESS":
			c.send(c.browser, signal.Message{Type: signal.TypeRinging, CallID: c.clientID})
		case "ANSWER":
			c.markAnswered()
		case "BUSY", "NOANSWER", "CONGESTION", "CHANUNAVAIL", "CANCEL", "DONTCALL", "TORTURE", "INVALIDARGS":
			cause := dialStatusCause(e.Dialstatus)
			c.send(c.browser, signal.HangupMessage(c.clientID, cause))
			return cause, true
		}
	case *ari.ChannelStateChange:
		if e.Channel.ID == c.farID && e.Channel.State == "Up" {
			c.markAnswered()
		}
	case *ari.ChannelDtmfReceived:
		if e.Channel.ID == c.farID {
			c.send(c.browser, signal.Message{Type: signal.TypeDTMF, CallID: c.clientID, Digits: e.Digit})
		}
	case *ari.ChannelDestroyed:
		if e.Channel.ID == c.farID {
			c.farGone = true
			cause := wire.CauseName(e.Cause)
			if cause == "" {
				cause = wire.CauseNormalClearing
			}
			c.send(c.browser, signal.HangupMessage(c.clientID, cause))
			return cause, true
		}
		if e.Channel.ID == c.emID {
			c.log.Warn("externalMedia channel destroyed under the call")
			c.send(c.browser, signal.HangupMessage(c.clientID, wire.CauseTemporaryFailure))
			return wire.CauseTemporaryFailure, true
		}
	case *ari.ChannelHangupRequest:
		if e.Channel.ID == c.farID && e.Cause != 0 {
			c.farCause = e.Cause
		}
	case *ari.StasisEnd:
		if e.Channel.ID == c.farID && c.farFromDialplan {
			c.farGone = true
			cause := wire.CauseName(c.farCause)
			if c.farCause == 0 || cause == "" {
				cause = wire.CauseNormalClearing
			}
			c.send(c.browser, signal.HangupMessage(c.clientID, cause))
			return cause, true
		}
	case *ari.BridgeDestroyed:
		c.log.Warn("bridge destroyed under the call")
		c.send(c.browser, signal.HangupMessage(c.clientID, wire.CauseTemporaryFailure))
		return wire.CauseTemporaryFailure, true
	case *ari.Reconciled:
		if goneAny(e, c.farID, c.emID, c.bridgeID) {
			c.log.Warn("call resources vanished while the ARI socket was down")
			c.send(c.browser, signal.HangupMessage(c.clientID, wire.CauseTemporaryFailure))
			return wire.CauseTemporaryFailure, true
		}
	}
	return "", false
}

func (c *Call) markAnswered() {
	if c.answered {
		return
	}
	c.answered = true
	c.m.noteAnswered(c.id)
	c.log.Info("answered", "after", time.Since(c.started).Round(time.Millisecond))
	c.send(c.browser, signal.Message{Type: signal.TypeAnswered, CallID: c.clientID})
}

// goneAny reports whether any of ids vanished while the events socket was down.
func goneAny(e *ari.Reconciled, ids ...string) bool {
	for _, id := range ids {
		if id != "" && (slices.Contains(e.GoneChannels, id) || slices.Contains(e.GoneBridges, id)) {
			return true
		}
	}
	return false
}
