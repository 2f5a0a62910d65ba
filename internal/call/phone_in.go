package call

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	pion "github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// A phone (or a DID, or an API call once answered) calls a browser user: every signalling session of the user is
// offered the call, each with its own peer; the first to answer wins and the others get answered_elsewhere. Legs
// of the winner, in order: a relay port, its externalMedia channel, a two-party bridge holding it and the caller's
// channel. The caller is answered only once the browser's media reaches Asterisk.

// ringUser starts an incoming call from ch (a channel in Stasis from the dialplan) to a browser user. Phones get
// busy when the user has no browser online. In a cluster the user's tabs may be on other nodes too.
func (m *Manager) ringUser(ctx context.Context, ch ari.Channel, user string, log *slog.Logger) {
	if m.o.Cluster != nil {
		m.ringAcrossNodes(ctx, ch, user, log) // cluster.go
		return
	}
	m.ringHere(ctx, ch, user, "", log)
}

// ringHere rings this node's tabs of user. key, when set, names a call rung on several nodes at once: the first
// tab to answer on any of them wins (cluster.go).
func (m *Manager) ringHere(ctx context.Context, ch ari.Channel, user, key string, log *slog.Logger) {
	var sessions []*signal.Session
	if dir := m.directory(); dir != nil {
		sessions = dir.SessionsOf(user)
	}
	if len(sessions) == 0 {
		log.Info("incoming call: user has no browser online", "user", user)
		m.hangupAsync(ctx, ch.ID, "busy", log)
		return
	}
	if m.unavailable() != "" {
		m.hangupAsync(ctx, ch.ID, "congestion", log)
		return
	}
	c := m.newCall(KindPhoneIn, m.log.With("channel", ch.ID, "user", user, "from", ch.Caller.Number))
	c.far = c.adoptLater(ch)
	c.clusterKey = key
	c.obs.rec.From, c.obs.rec.To, c.obs.rec.User = ch.Caller.Number, user, user
	if err := m.start(c, func() error { return c.setupPhoneIn(ch, sessions) }); err != nil {
		m.hangupAsync(ctx, ch.ID, "congestion", log)
	}
}

// adoptLater records a dialplan channel as the call's far leg; setup claims it.
func (c *Call) adoptLater(ch ari.Channel) *chanLeg {
	return &chanLeg{id: ch.ID, adopted: true, up: ch.State == "Up"}
}

func (c *Call) setupPhoneIn(ch ari.Channel, sessions []*signal.Session) error {
	c.claim(c.far.id)
	c.log.Info("incoming call", "sessions", len(sessions))
	ctx, cancel := c.setupCtx()
	defer cancel()
	// Offer in the caller's own codec so Asterisk does not transcode: a phone's G.711 law, or Opus when the caller
	// is another browser ringing through a Local channel (codec.go).
	law := media.PCMU
	if v, err := c.nativeFormat(ctx, ch.ID); err == nil {
		law = callerCodec(v)
	}
	if err := c.a.Channel(ch.ID).Ring(ctx); err != nil {
		c.log.Warn("ring caller", "err", err)
	}
	c.ringSessions(ch.Caller.Number, ch.Caller.Name, law, sessions)
	if len(c.offers) == 0 {
		return &ending{cause: wire.CauseTemporaryFailure}
	}
	return nil
}

// ringSessions offers the call to each session and starts the ring timeout.
func (c *Call) ringSessions(from, fromName string, law media.Law, sessions []*signal.Session) {
	for _, s := range sessions {
		peer, sdp, err := c.m.o.Media.Offer(c.ctx, law, media.PeerOptions{Logger: c.log})
		if err != nil {
			c.log.Error("make offer for browser", "session", s.ID(), "err", err)
			continue
		}
		if !c.m.bindRung(s, c.id, c) {
			_ = peer.Close()
			continue
		}
		c.offers[s.ID()] = &offer{s: s, peer: peer}
		_ = s.Send(s.Context(), signal.Message{Type: signal.TypeIncoming, CallID: c.id, From: from, FromName: fromName, SDP: sdp})
	}
	c.ringTime = time.NewTimer(c.m.o.RingTimeout)
}

// onOfferMessage handles a rung browser's reply.
func (c *Call) onOfferMessage(o *offer, msg signal.Message) {
	switch msg.Type {
	case signal.TypeReject, signal.TypeHangup:
		o.close()
		c.m.unbind(o.s, c.id)
		delete(c.offers, o.s.ID())
		c.offersLeft()
	case signal.TypeCandidate:
		if msg.Candidate != nil && msg.Candidate.Candidate != "" {
			_ = o.peer.AddICECandidate(pion.ICECandidateInit(*msg.Candidate))
		}
	case signal.TypeAnswer:
		if err := o.peer.SetAnswer(msg.SDP); err != nil {
			_ = o.s.Send(o.s.Context(), signal.ErrorMessage(c.id, wire.CodeBadMessage, err.Error()))
			return
		}
		c.browserAnswered(o)
	}
}

// offersLeft ends a call that no browser is being rung for any more.
func (c *Call) offersLeft() {
	if len(c.offers) == 0 && c.browser == nil {
		c.log.Info("every browser declined or went away")
		c.endWith(wire.CauseUserBusy)
	}
}

// browserAnswered makes o's browser the call's, tells the others, and connects the media.
func (c *Call) browserAnswered(o *offer) {
	if !c.settleAnswer() { // a tab on another node answered first (cluster.go)
		return
	}
	delete(c.offers, o.s.ID())
	for id, other := range c.offers {
		other.close()
		_ = other.s.Send(other.s.Context(), signal.HangupMessage(c.id, wire.CauseAnsweredElsewhere))
		c.m.unbind(other.s, c.id)
		delete(c.offers, id)
	}
	if c.ringTime != nil {
		c.ringTime.Stop()
		c.ringTime = nil
	}
	c.browser = newBrowserLeg(o.s, c.id)
	c.browser.peer = o.peer
	if c.near == nil {
		c.near = c.browser
	}
	c.log = c.log.With("session", o.s.ID())
	c.obs.rec.AnswerSentAt = time.Now()
	if err := c.connectAnswered(); err != nil {
		c.setupFailed(err)
		return
	}
	c.armNoMedia()
	c.onMedia = c.answerFar
}

// connectAnswered bridges the answering browser with the far channel.
func (c *Call) connectAnswered() error {
	b := c.browser
	if err := b.acquirePort(c); err != nil {
		return err
	}
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := b.attach(ctx, c, identity{}); err != nil {
		return err
	}
	if err := c.makeBridge(ctx, "mixing"); err != nil {
		return err
	}
	return c.bridgeAdd(ctx, b.emID, c.far.id)
}

// answerFar answers the caller once the browser's media flows.
func (c *Call) answerFar() {
	ctx, cancel := c.setupCtx()
	defer cancel()
	if !c.far.up {
		if err := c.a.Channel(c.far.id).Answer(ctx); err != nil {
			c.setupFailed(fmt.Errorf("answer the caller: %w", err))
			return
		}
		c.far.up = true
	}
	if c.answered.IsZero() {
		c.onFarProgress(legAnswered, "") // the caller is connected now
		return
	}
	c.browser.answered(c) // the far end answered earlier (an API call ringing a user)
}
