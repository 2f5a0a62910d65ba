package call

import (
	"fmt"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// A browser calls an extension or an outside number. Legs, in order: a relay port; the browser's peer (answer
// SDP); its externalMedia channel; then, by destination, the fewest Asterisk resources that keep Patchbay in
// control (ringing, answer, DTMF, hang-up causes):
//
//   - an extension the dialplan answers itself (calls.dialplan_extensions: echo, announcements): no more legs; the
//     browser's channel runs the extension as a phone's would ("continue"), and Patchbay follows it through an
//     application subscription (ChannelDialplan Answer = answered, Dial events = the dialplan ringing someone);
//   - a phone (calls.endpoint_extensions) or an outside number: a two-party bridge and the endpoint itself, PJSIP/101
//     or PJSIP/+44…@trunk, created in Stasis (so the caller ID set on it is what the phone or carrier sees);
//   - any other extension: a two-party bridge and a Local channel into the dialplan;
//   - another browser user: a two-party bridge and a Local channel to the user's number or name, which the
//     dialplan hands back to Patchbay as an incoming call ringing that user's tabs (phone_in.go). Both legs carry
//     the caller's codec, Opus when it offered Opus (codec.go).
//
// The answer goes to the browser at once; the far end is dialled (or the dialplan entered) only once the browser's
// media reaches Asterisk, so a browser that never connects never rings anybody.

// placeCall admits a browser's call: everything that can refuse it runs before any ARI request, cheapest first,
// and a duplicate call_id spends no budget.
func (m *Manager) placeCall(s *signal.Session, msg signal.Message) {
	if m.lookup(s.ID(), msg.CallID) != nil {
		m.observeRefused(KindBrowserOut, wire.CodeDuplicateCall, cdr.Record{User: s.User(), From: s.User(), To: msg.To})
		_ = s.Send(s.Context(), signal.ErrorMessage(msg.CallID, wire.CodeDuplicateCall, "call_id already used on this connection"))
		return
	}
	d, err := m.o.Router.Route(msg.To)
	if err != nil {
		m.refuseBrowser(KindBrowserOut, s, msg, routeRefusal(err), routeAttrs(err)...)
		return
	}
	cl := browserClaims(s)
	if !dialplan.Allowed(d, cl.Dial) {
		m.refuseBrowser(KindBrowserOut, s, msg, refuse(wire.CodeForbiddenDestination, "your token does not allow calling %s destinations", d.Kind), "kind", d.Kind, "number", d.Number)
		return
	}
	if d.Kind != dialplan.KindExtension && d.Kind != dialplan.KindPSTN && d.Kind != dialplan.KindUser {
		m.refuseBrowser(KindBrowserOut, s, msg, refuse(wire.CodeForbiddenDestination, "calls to %s destinations are not available from a browser", d.Kind))
		return
	}
	var callerID string
	if d.Kind == dialplan.KindPSTN {
		id, r := pickCallerID(msg.CallerID, cl.CallerIDs, m.o.PSTN.DefaultCallerID)
		if r != nil {
			m.refuseBrowser(KindBrowserOut, s, msg, r, "kind", d.Kind, "number", d.Number)
			return
		}
		callerID = id
	} else if msg.CallerID != "" {
		m.refuseBrowser(KindBrowserOut, s, msg, refuse(wire.CodeBadMessage, "caller_id applies to outside calls only"))
		return
	}
	if why := m.unavailable(); why != "" {
		m.refuseBrowser(KindBrowserOut, s, msg, refuse(wire.CodeUnavailable, "%s", why))
		return
	}
	lease, err := m.o.PSTN.TokenLimits.Start("token:"+s.User(), d.Kind == dialplan.KindPSTN)
	if err != nil {
		m.refuseBrowser(KindBrowserOut, s, msg, limitRefusal(err), "kind", d.Kind, "number", d.Number)
		return
	}
	release, ok := m.setupSlot()
	if !ok {
		lease.End(0)
		m.refuseBrowser(KindBrowserOut, s, msg, refuse(wire.CodeUnavailable, "the server is setting up too many calls at once; try again in a moment"))
		return
	}
	c := m.newCall(KindBrowserOut, s.Logger().With("client_call", msg.CallID, "to", d.Number, "dest", string(d.Kind)))
	c.browser = newBrowserLeg(s, msg.CallID)
	c.near = c.browser
	c.lease = lease
	r := &c.obs.rec
	r.From, r.To, r.User, r.CallerID, r.Trunk = s.User(), d.Number, s.User(), callerID, d.Trunk
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
		m.refuseBrowser(KindBrowserOut, s, msg, refuse(wire.CodeUnavailable, "the server is shutting down; try again in a moment"))
	}
}

// answerBrowser makes the peer for a browser's offer, so the answer is ready once Asterisk is. wideband: the far
// end is a browser (or a room of them), so Opus is preferred; otherwise G.711 (codec.go).
func (c *Call) answerBrowser(offer string, wideband bool) (string, error) {
	peer, answer, err := c.m.o.Media.Answer(c.ctx, offer, media.PeerOptions{Logger: c.log, Wideband: wideband})
	if err != nil {
		code := media.ErrorCode(err)
		if code == "" {
			code = wire.CodeBadMessage
		}
		return "", &ending{cause: refusalCause(code), code: code, text: err.Error()}
	}
	c.browser.peer = peer
	c.log = c.log.With("codec", peer.Codec().String())
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
	answer, err := c.answerBrowser(offer, wideband(d))
	if err != nil {
		return err
	}
	if !wideband(d) {
		c.noteTranscoded()
	}
	cl := browserClaims(b.s)
	// An extension sees the token's identity: its first caller ID, else the user's name.
	num := cl.User()
	if len(cl.CallerIDs) > 0 {
		num = cl.CallerIDs[0]
	}
	how := c.m.extensionLeg(d)
	if how == legInDialplan && b.peer.Codec().Wideband() {
		how = legLocal // Opus: a G.711 far leg, so what the extension plays is transcoded where it is bridged
	}
	// The browser's channel is the caller when it runs the extension itself, and the channel a phone sees
	// dialling it (its connected line, as a carrier's would be): it is made presenting the token's identity.
	who := identity{num: num, name: cl.Name}
	var present identity
	if d.Kind != dialplan.KindPSTN && (how == legInDialplan || how == legEndpoint) {
		present = who
	}
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := b.attach(ctx, c, present); err != nil {
		return err
	}
	if d.Kind == dialplan.KindPSTN {
		if err := c.makeBridge(ctx, "mixing"); err != nil {
			return err
		}
		if err := c.bridgeAdd(ctx, b.emID); err != nil {
			return err
		}
		c.trunks = newTrunkPlan(d, callerID, cl.Name)
		c.trunks.presentOn, c.trunks.formats = b.emID, farFormats(b.peer.Codec())
		c.sendAnswer(answer)
		c.onMedia = func() {
			if err := c.dialTrunk(); err != nil {
				c.setupFailed(err)
			}
		}
		return nil
	}
	vars := who.vars() // what a Local channel's far leg presents
	switch how {
	case legInDialplan:
		// The answer first: the subscription is needed only once the channel leaves Stasis (enterDialplan, after
		// the browser's ICE and DTLS), so its round trip to Asterisk overlaps the browser's handshakes instead of
		// delaying the answer. Its failure ends the call as any setup failure after the answer does.
		c.sendAnswer(answer)
		// Once it leaves Stasis only an application subscription keeps its events coming.
		if _, err := c.a.Applications().Subscribe(ctx, c.a.Application(), "channel:"+b.emID); err != nil {
			return fmt.Errorf("follow the browser's channel into the dialplan: %w", err)
		}
		c.inDialplan = d.Number
		c.onMedia = c.enterDialplan
		return nil
	case legEndpoint:
		// A phone shows the connected line of the channel dialling it, as a carrier does.
		vars = callerVars(num, cl.Name)
	}
	if err := c.makeBridge(ctx, "mixing"); err != nil {
		return err
	}
	if err := c.bridgeAdd(ctx, b.emID); err != nil {
		return err
	}
	formats := farFormats(b.peer.Codec())
	if wideband(d) {
		formats = b.peer.Codec().Format() // the callee's tabs are offered the caller's codec: nothing transcodes
		vars = userVars(d, vars)
	}
	far, err := c.createLeg(ctx, "far", ari.CreateRequest{Endpoint: c.m.farEndpoint(d), Formats: formats, Variables: vars})
	c.far = far
	if err != nil {
		return err
	}
	if err := c.bridgeAdd(ctx, far.id); err != nil {
		return err
	}
	c.sendAnswer(answer)
	c.onMedia = func() { c.dialFar() }
	return nil
}

// sendAnswer gives the browser the answer SDP and starts waiting for its media.
func (c *Call) sendAnswer(answer string) {
	c.browser.send(c, signal.Message{Type: signal.TypeAnswer, SDP: answer})
	c.obs.rec.AnswerSentAt = time.Now()
	c.armNoMedia()
}

// How a browser's call reaches a destination (see the top of this file).
type legHow int

const (
	legLocal      legHow = iota // a Local channel into the dialplan, bridged
	legEndpoint                 // the PJSIP endpoint (phone or trunk) itself, bridged
	legInDialplan               // the browser's own channel runs the extension
)

func (m *Manager) extensionLeg(d dialplan.Decision) legHow {
	switch {
	case d.Kind != dialplan.KindExtension:
		return legLocal
	case m.o.DialplanExtensions.Match(d.Number):
		return legInDialplan
	case m.o.EndpointExtensions.Match(d.Number):
		return legEndpoint
	}
	return legLocal
}

// farEndpoint is what Patchbay originates for an extension d: a phone's PJSIP endpoint (so the caller ID set on
// the channel is what the phone sees), else the router's Local channel. Outside numbers go out over their trunks
// (trunks.go). Both are built from the router's validated number only.
func (m *Manager) farEndpoint(d dialplan.Decision) string {
	switch {
	case d.Kind == dialplan.KindExtension && m.o.EndpointExtensions.Match(d.Number):
		return "PJSIP/" + d.Number
	case d.Kind == dialplan.KindUser:
		return m.userEndpoint(d)
	}
	return d.Endpoint
}

// enterDialplan sends the browser's channel into the extension once its media flows.
func (c *Call) enterDialplan() {
	ctx, cancel := c.setupCtx()
	defer cancel()
	err := c.a.Channel(c.browser.emID).Continue(ctx, ari.ContinueOptions{Context: c.m.o.DialplanContext, Extension: c.inDialplan, Priority: 1})
	if err != nil {
		c.setupFailed(fmt.Errorf("send the browser's channel into extension %s: %w", c.inDialplan, err))
	}
}

// onDialplanEvent follows a browser's channel that runs an extension itself: the dialplan answering is the call
// answered; a Dial it makes rings someone; the channel's end is the call's.
func (c *Call) onDialplanEvent(ev ari.Event) {
	id := c.browser.emID
	switch e := ev.(type) {
	case *ari.ChannelDialplan:
		if e.Channel.ID == id && e.DialplanApp == "Answer" {
			c.onFarProgress(legAnswered, "")
		}
	case *ari.Dial:
		if e.Caller == nil || e.Caller.ID != id {
			return
		}
		switch e.Dialstatus {
		case "RINGING", "PROGRESS":
			c.onFarProgress(legRinging, "")
		case "ANSWER":
			c.onFarProgress(legAnswered, "")
		}
	case *ari.ChannelHangupRequest:
		if e.Channel.ID == id && e.Cause != 0 {
			c.dialplanCause = e.Cause
		}
	case *ari.ChannelDestroyed:
		if e.Channel.ID == id {
			c.browser.emMade = false // nothing left to hang up
			cause := e.Cause
			if cause == 0 {
				cause = c.dialplanCause
			}
			c.log.Info("the dialplan hung up", "cause", cause, "cause_txt", e.CauseTxt)
			c.endWith(causeOf(cause))
		}
	}
}

// dialFar rings the far leg; its progress arrives as Dial events.
func (c *Call) dialFar() {
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := c.a.Channel(c.far.id).Dial(ctx, "", c.m.o.DialTimeout); err != nil {
		// The last step of setup: it fails like the others (unavailable, then the hangup).
		c.setupFailed(fmt.Errorf("dial the far end: %w", err))
	}
}
