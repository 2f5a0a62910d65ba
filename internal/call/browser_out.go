package call

import (
	"errors"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// A browser calls an extension or an outside number. Legs, in order: a relay port; the browser's peer (answer
// SDP); its externalMedia channel; a two-party bridge holding it; the far leg created in Stasis (a Local channel
// into the dialplan, or the trunk directly for outside numbers, so the caller ID set on it is what the carrier
// sees) and added to the bridge. The answer goes to the browser; the far end is dialled only once the browser's
// media reaches Asterisk, so a browser that never connects never rings anybody.

// placeCall admits a browser's call: everything that can refuse it runs before any ARI request, cheapest first,
// and a duplicate call_id spends no budget.
func (m *Manager) placeCall(s *signal.Session, msg signal.Message) {
	if m.lookup(s.ID(), msg.CallID) != nil {
		_ = s.Send(s.Context(), signal.ErrorMessage(msg.CallID, wire.CodeDuplicateCall, "call_id already used on this connection"))
		return
	}
	d, err := m.o.Router.Route(msg.To)
	if err != nil {
		m.refuseBrowser(s, msg.CallID, routeRefusal(err))
		return
	}
	cl := browserClaims(s)
	if !dialplan.Allowed(d, cl.Dial) {
		m.refuseBrowser(s, msg.CallID, refuse(wire.CodeForbiddenDestination, "your token does not allow calling %s destinations", d.Kind), "kind", d.Kind, "number", d.Number)
		return
	}
	if d.Kind != dialplan.KindExtension && d.Kind != dialplan.KindPSTN {
		m.refuseBrowser(s, msg.CallID, refuse(wire.CodeForbiddenDestination, "calls to %s destinations are not available from a browser", d.Kind))
		return
	}
	var callerID string
	if d.Kind == dialplan.KindPSTN {
		id, r := pickCallerID(msg.CallerID, cl.CallerIDs, m.o.PSTN.DefaultCallerID)
		if r != nil {
			m.refuseBrowser(s, msg.CallID, r, "kind", d.Kind, "number", d.Number)
			return
		}
		callerID = id
	} else if msg.CallerID != "" {
		m.refuseBrowser(s, msg.CallID, refuse(wire.CodeBadMessage, "caller_id applies to outside calls only"))
		return
	}
	if why := m.unavailable(); why != "" {
		m.refuseBrowser(s, msg.CallID, refuse(wire.CodeUnavailable, "%s", why))
		return
	}
	lease, err := m.o.PSTN.TokenLimits.Start("token:"+s.User(), d.Kind == dialplan.KindPSTN)
	if err != nil {
		m.refuseBrowser(s, msg.CallID, limitRefusal(err), "kind", d.Kind, "number", d.Number)
		return
	}
	release, ok := m.setupSlot()
	if !ok {
		lease.End(0)
		m.refuseBrowser(s, msg.CallID, refuse(wire.CodeUnavailable, "the server is setting up too many calls at once; try again in a moment"))
		return
	}
	c := m.newCall(KindBrowserOut, s.Logger().With("client_call", msg.CallID, "to", d.Number, "dest", string(d.Kind)))
	c.browser = newBrowserLeg(s, msg.CallID)
	c.near = c.browser
	c.lease = lease
	if !m.bind(s, msg.CallID, c) { // cannot happen: this session's messages are handled one at a time
		release()
		lease.End(0)
		return
	}
	if err := m.start(c, func() error {
		defer release()
		return c.setupBrowserOut(msg.SDP, d, callerID)
	}); err != nil {
		release()
		lease.End(0)
		m.unbind(s, msg.CallID)
		m.refuseBrowser(s, msg.CallID, refuse(wire.CodeUnavailable, "the server is shutting down; try again in a moment"))
	}
}

// answerBrowser makes the peer for a browser's offer, so the answer is ready once Asterisk is.
func (c *Call) answerBrowser(offer string) (string, error) {
	peer, answer, err := c.m.o.Media.Answer(c.ctx, offer, media.PeerOptions{Logger: c.log})
	if err != nil {
		code := media.ErrorCode(err)
		if code == "" {
			code = wire.CodeBadMessage
		}
		return "", &ending{cause: refusalCause(code), code: code, text: err.Error()}
	}
	c.browser.peer = peer
	return answer, nil
}

func (c *Call) setupBrowserOut(offer string, d dialplan.Decision, callerID string) error {
	b := c.browser
	if callerID != "" {
		c.log = c.log.With("caller_id", callerID, "trunk", d.Trunk)
	}
	c.log.Info("outgoing call")
	if err := b.acquirePort(c); err != nil {
		return err
	}
	answer, err := c.answerBrowser(offer)
	if err != nil {
		return err
	}
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := b.attach(ctx, c); err != nil {
		return err
	}
	cl := browserClaims(b.s)
	vars := map[string]string{}
	if d.Kind == dialplan.KindPSTN {
		// Joining the bridge copies the browser channel's caller ID into the far leg's connected line, which is
		// what PJSIP sends in From and P-Asserted-Identity: the externalMedia channel presents the same identity.
		vars = callerVars(callerID, cl.Name)
		if err := presentAs(ctx, c.a, b.emID, callerID, cl.Name); err != nil {
			return err
		}
	} else {
		if cl.Name != "" {
			vars["CALLERID(name)"] = cl.Name
		}
		vars["CALLERID(num)"] = cl.User()
		if len(cl.CallerIDs) > 0 {
			vars["CALLERID(num)"] = cl.CallerIDs[0]
		}
	}
	if err := c.makeBridge(ctx, "mixing"); err != nil {
		return err
	}
	if err := c.bridgeAdd(ctx, b.emID); err != nil {
		return err
	}
	far, err := c.createLeg(ctx, "far", ari.CreateRequest{Endpoint: farEndpoint(d), Formats: b.peer.Law().Format(), Variables: vars})
	c.far = far
	if err != nil {
		return err
	}
	if err := c.bridgeAdd(ctx, far.id); err != nil {
		return err
	}
	b.send(c, signal.Message{Type: signal.TypeAnswer, SDP: answer})
	c.armNoMedia()
	c.onMedia = func() { c.dialFar() }
	return nil
}

// dialFar rings the far leg; its progress arrives as Dial events.
func (c *Call) dialFar() {
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := c.a.Channel(c.far.id).Dial(ctx, "", c.m.o.DialTimeout); err != nil {
		if c.ctx.Err() != nil {
			return
		}
		c.log.Error("dial the far end", "err", err)
		if errors.Is(err, errSetupTimeout) || errors.Is(ctx.Err(), errSetupTimeout) {
			c.end(&ending{cause: wire.CauseTemporaryFailure, code: wire.CodeUnavailable, text: "Asterisk did not answer in time (overloaded?); try again"})
			return
		}
		c.endWith(wire.CauseTemporaryFailure)
	}
}
