package call

import (
	"context"
	"strings"
	"time"

	pion "github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// stasisStart takes a channel the dialplan handed to Patchbay. Args say why: "inbound,<user or number>" rings a
// browser user. Channels Patchbay made itself ("leg", externalMedia) are ignored here: their calls own them.
func (m *Manager) stasisStart(ctx context.Context, e *ari.StasisStart) {
	if len(e.Args) == 0 {
		return
	}
	log := m.log.With("channel", e.Channel.ID, "caller", e.Channel.Caller.Number)
	switch e.Args[0] {
	case "inbound":
		target := ""
		if len(e.Args) > 1 {
			target = e.Args[1]
		}
		m.incoming(ctx, e.Channel, target, log)
	case "leg":
	default:
		log.Warn("channel entered Stasis for a purpose this version does not handle; hanging up", "args", strings.Join(e.Args, ","))
		m.hangupAsync(ctx, e.Channel.ID, "unallocated", log)
	}
}

// hangupAsync hangs up a channel Patchbay refuses, without holding up the event dispatcher. The goroutine is the
// manager's: Run waits for it at shutdown.
func (m *Manager) hangupAsync(ctx context.Context, id, reason string, log interface{ Warn(string, ...any) }) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := m.o.ARI.Channel(id).Hangup(hctx, reason); err != nil && !ari.IsNotFound(err) {
			log.Warn("hang up", "channel", id, "err", err)
		}
	}()
}

// incoming rings every browser session of the dialled user; the first to answer gets the call.
func (m *Manager) incoming(ctx context.Context, ch ari.Channel, target string, log interface {
	Warn(string, ...any)
}) {
	d, err := m.o.Router.Route(target)
	var user string
	if err == nil {
		user, err = m.userFor(d)
	}
	if err != nil {
		log.Warn("incoming call for no browser user", "target", target, "err", err)
		m.hangupAsync(ctx, ch.ID, "unallocated", log)
		return
	}
	dir := m.directory()
	var sessions []*signal.Session
	if dir != nil {
		sessions = dir.SessionsOf(user)
	}
	if len(sessions) == 0 {
		log.Warn("incoming call: user has no browser online", "user", user)
		m.hangupAsync(ctx, ch.ID, "busy", log)
		return
	}
	c := m.newCall(ctx, m.log.With("channel", ch.ID, "user", user))
	c.farID, c.farFromDialplan = ch.ID, true
	if err := m.register(c); err != nil {
		m.hangupAsync(ctx, ch.ID, "congestion", log)
		return
	}
	go c.runIncoming(ch, sessions)
}

// ringing is one browser session offered the incoming call.
type ringing struct {
	s    *signal.Session
	peer *media.Peer
}

// runIncoming owns an incoming call from the first ring to teardown.
func (c *Call) runIncoming(ch ari.Channel, sessions []*signal.Session) {
	ctx, cancel := context.WithCancel(c.ctx)
	c.ctx = ctx
	a := c.m.o.ARI
	offered := map[string]*ringing{} // session ID → its offer
	defer func() {
		cancel()
		for _, r := range offered {
			c.m.unbind(r.s, c.id)
		}
		if c.browser != nil {
			c.m.unbind(c.browser, c.id)
		}
		c.m.unregister(c)
	}()
	c.log.Info("incoming call", "from", ch.Caller.Number, "sessions", len(sessions))
	sub := a.Subscribe(ari.Filter{Name: "call-" + c.id, IDs: []string{c.farID, c.bridgeID, c.emID}})
	defer sub.Close()

	// Offer in the caller's own law so Asterisk does not transcode.
	law := media.PCMU
	if v, err := a.Channel(ch.ID).Variable(ctx, "CHANNEL(audionativeformat)"); err == nil && strings.Contains(v, "alaw") {
		law = media.PCMA
	}
	if err := a.Channel(ch.ID).Ring(ctx); err != nil {
		c.log.Warn("ring caller", "err", err)
	}
	for _, s := range sessions {
		peer, offer, err := c.m.o.Media.Offer(ctx, law, media.PeerOptions{Logger: c.log})
		if err != nil {
			c.log.Error("make offer for browser", "session", s.ID(), "err", err)
			continue
		}
		if !c.m.bind(s, c.id, c) {
			_ = peer.Close()
			continue
		}
		offered[s.ID()] = &ringing{s: s, peer: peer}
		c.send(s, signal.Message{Type: signal.TypeIncoming, CallID: c.id, From: ch.Caller.Number, FromName: ch.Caller.Name, SDP: offer})
	}
	closeOthers := func(keep string, cause string) {
		for id, r := range offered {
			if id == keep {
				continue
			}
			_ = r.peer.Close()
			c.send(r.s, signal.HangupMessage(c.id, cause))
			c.m.unbind(r.s, c.id)
			delete(offered, id)
		}
	}
	if len(offered) == 0 {
		c.farGone = false
		c.teardown("congestion")
		return
	}
	ringTimer := time.NewTimer(c.m.o.RingTimeout)
	defer ringTimer.Stop()

	// Ringing: wait for a browser to answer, all to reject, the caller to give up, or the timeout.
	for c.browser == nil {
		select {
		case <-ctx.Done():
			closeOthers("", wire.CauseNormalClearing)
			c.teardown("normal")
			return
		case <-ringTimer.C:
			closeOthers("", wire.CauseNoAnswer)
			c.teardown("no_answer")
			return
		case ev := <-sub.Events():
			switch e := ev.(type) {
			case *ari.ChannelDestroyed, *ari.StasisEnd:
				_ = e
				c.farGone = true
				closeOthers("", wire.CauseNormalClearing)
				c.teardown("normal")
				return
			}
		case in := <-c.inbox:
			switch in.kind {
			case kindShutdown:
				closeOthers("", wire.CauseNormalClearing)
				c.teardown("congestion")
				return
			case kindSessionGone:
				if r := offered[in.session.ID()]; r != nil {
					_ = r.peer.Close()
					delete(offered, in.session.ID())
				}
			case kindBrowser:
				r := offered[in.session.ID()]
				if r == nil {
					continue
				}
				switch in.msg.Type {
				case signal.TypeReject, signal.TypeHangup:
					_ = r.peer.Close()
					c.m.unbind(r.s, c.id)
					delete(offered, in.session.ID())
				case signal.TypeCandidate:
					if in.msg.Candidate != nil && in.msg.Candidate.Candidate != "" {
						_ = r.peer.AddICECandidate(pion.ICECandidateInit(*in.msg.Candidate))
					}
				case signal.TypeAnswer:
					if err := r.peer.SetAnswer(in.msg.SDP); err != nil {
						c.send(r.s, signal.ErrorMessage(c.id, wire.CodeBadMessage, err.Error()))
						continue
					}
					c.browser, c.clientID, c.peer = r.s, c.id, r.peer
					delete(offered, in.session.ID())
					closeOthers("", wire.CauseAnsweredElsewhere)
				}
			}
			if c.browser == nil && len(offered) == 0 {
				c.log.Info("every browser declined")
				c.teardown("busy")
				return
			}
		}
	}

	// Answered by c.browser: connect media, then answer the caller.
	setupCtx, setupCancel := context.WithTimeout(ctx, 10*time.Second)
	err := c.attachMedia(setupCtx)
	if err == nil {
		err = a.Channel(c.farID).Answer(setupCtx)
	}
	if err == nil {
		err = a.Bridge(c.bridgeID).AddChannel(setupCtx, ari.AddChannelOptions{}, c.farID)
	}
	setupCancel()
	if err != nil {
		c.log.Error("connect answered call", "err", err)
		c.send(c.browser, signal.HangupMessage(c.clientID, wire.CauseTemporaryFailure))
		c.teardown("failure")
		return
	}
	c.markAnswered()
	iceDead := make(chan struct{}) // the winner's ICE state is watched through Done below
	go func() {
		select {
		case <-c.peer.Done():
			close(iceDead)
		case <-ctx.Done():
		}
	}()
	cause := c.loop(sub, iceDead)
	c.teardown(ariReason(cause))
}
