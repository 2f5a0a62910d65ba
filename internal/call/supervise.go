package call

import (
	"fmt"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Supervision. A browser whose token has role supervisor joins an agent's or a room moderator's call with
// "supervise": a call of its own (kind supervise) whose legs are the supervisor's media, a snoop channel on the
// agent's externalMedia channel, and a bridge holding both. The snoop channel always spies both ways (the
// supervisor hears the agent and what the agent hears); its whisper direction makes the mode:
//
//	listen   whisper none  nobody hears the supervisor
//	whisper  whisper out   mixed into what the agent hears only; the customer hears nothing
//	barge    whisper both  also mixed into what the agent sends, so the customer (or the room) hears it
//
// "supervise" with only a mode on the same call_id changes the mode: a new snoop channel replaces the old one. When
// the supervised call ends its channel goes, the snoop channel with it, and the supervision ends. Every start, mode
// change and end is an "audit:" line in the log naming the supervisor, the mode and the call.

// supervision is a supervisor call's target.
type supervision struct {
	target string // the supervised call's ID
	agent  string // its browser user
	em     string // the agent's externalMedia channel, snooped
	mode   string
}

func whisperFor(mode string) string {
	switch mode {
	case signal.ModeWhisper:
		return ari.SnoopOut
	case signal.ModeBarge:
		return ari.SnoopBoth
	}
	return ari.SnoopNone
}

// supervise admits a supervisor's "supervise" and starts its call.
func (m *Manager) supervise(s *signal.Session, msg signal.Message) {
	refused := func(r *Refusal) {
		m.log.Warn("audit: supervision refused", "supervisor", s.User(), "target_call", msg.Target, "mode", msg.Mode, "code", r.Code, "reason", r.Message)
		m.refuseBrowser(KindSupervise, s, msg, r)
	}
	if msg.SDP == "" {
		refused(refuse(wire.CodeUnknownCall, "no supervision %s on this connection to change; send an sdp offer to start one", msg.CallID))
		return
	}
	cl := browserClaims(s)
	if cl.Role != RoleSupervisor {
		refused(refuse(wire.CodeNotAllowed, "only a token with role supervisor may supervise calls"))
		return
	}
	target := m.callByID(msg.Target)
	var li *liveInfo
	if target != nil {
		li = target.live.Load()
	}
	if li == nil || li.em == "" {
		refused(refuse(wire.CodeUnknownCall, "no live call %s with an agent's browser to supervise", clip(msg.Target)))
		return
	}
	if !supervisable(li.call) {
		refused(refuse(wire.CodeNotAllowed, "call %s is not an agent's or a room moderator's", clip(msg.Target)))
		return
	}
	if why := m.unavailable(); why != "" {
		refused(refuse(wire.CodeUnavailable, "%s", why))
		return
	}
	lease, err := m.o.PSTN.TokenLimits.Start("token:"+s.User(), false)
	if err != nil {
		refused(limitRefusal(err))
		return
	}
	release, ok := m.setupSlot()
	if !ok {
		lease.End(0)
		refused(refuse(wire.CodeUnavailable, "the server is setting up too many calls at once; try again in a moment"))
		return
	}
	c := m.newCall(KindSupervise, s.Logger().With("client_call", msg.CallID, "target_call", li.call.ID, "agent", li.call.User))
	c.browser = newBrowserLeg(s, msg.CallID)
	c.near = c.browser
	c.lease = lease
	c.cti.role = RoleSupervisor
	c.cti.sup = &supervision{target: li.call.ID, agent: li.call.User, em: li.em, mode: msg.Mode}
	r := &c.obs.rec
	r.From, r.User, r.To, r.Room = s.User(), s.User(), li.call.User, li.call.Room
	if !m.bind(s, msg.CallID, c) {
		release()
		lease.End(0)
		return
	}
	if err := m.start(c, func() error {
		defer release()
		return c.setupSupervise(msg.SDP)
	}); err != nil {
		release()
		lease.End(0)
		m.unbind(s, msg.CallID)
		m.refuseBrowser(KindSupervise, s, msg, refuse(wire.CodeUnavailable, "the server is shutting down; try again in a moment"))
	}
}

func (c *Call) setupSupervise(offer string) error {
	b, sup := c.browser, c.cti.sup
	if err := b.acquirePort(c); err != nil {
		return err
	}
	answer, err := c.answerBrowser(offer, false) // a snoop is heard in G.711: the supervisor listens, no wideband mix to keep
	if err != nil {
		return err
	}
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := b.attach(ctx, c, identity{}); err != nil {
		return err
	}
	// A snoop channel outlives the channel it spies on: the agent's channel ending is what ends the supervision.
	c.sub.Add(sup.em)
	if err := c.makeBridge(ctx, "mixing"); err != nil {
		return err
	}
	if err := c.bridgeAdd(ctx, b.emID); err != nil {
		return err
	}
	snoop, err := c.snoop(sup.mode)
	c.far = snoop
	if err != nil {
		return err
	}
	if err := c.bridgeAdd(ctx, snoop.id); err != nil {
		return err
	}
	c.answered = time.Now()
	c.obs.rec.FarAnsweredAt = c.answered
	c.sendAnswer(answer)
	b.answered(c)
	c.log.Info("audit: supervisor "+sup.mode, "supervisor", c.browserUser(), "mode", sup.mode, "target_call", sup.target, "agent", sup.agent)
	c.publishLive()
	return nil
}

// snoop makes a snoop channel on the agent's channel in mode, and waits until it is in the application.
func (c *Call) snoop(mode string) (*chanLeg, error) {
	ctx, cancel := c.setupCtx()
	defer cancel()
	l := &chanLeg{id: c.a.ResourceID("snoop"), up: true}
	c.claim(l.id)
	l.made = true
	wait := c.a.Subscribe(ari.Filter{Name: "snoop-" + l.id, IDs: []string{l.id}, QueueSize: 16})
	defer wait.Close()
	if _, err := c.a.Channel(c.cti.sup.em).Snoop(ctx, ari.SnoopRequest{Spy: ari.SnoopBoth, Whisper: whisperFor(mode),
		App: c.a.Application(), AppArgs: "leg," + c.id, SnoopID: l.id}); err != nil {
		if ari.IsNotFound(err) {
			return l, &ending{cause: refusalCause(wire.CodeUnknownCall), code: wire.CodeUnknownCall, text: "the supervised call has ended"}
		}
		return l, fmt.Errorf("snoop on the agent's channel: %w", err)
	}
	if err := ari.WaitStasisStart(ctx, wait, l.id); err != nil {
		return l, err
	}
	return l, nil
}

// changeSupervision switches a supervision to another mode: a new snoop channel replaces the old one.
func (c *Call) changeSupervision(mode string) {
	sup := c.cti.sup
	if c.kind != KindSupervise || sup == nil || c.far == nil {
		c.ctiRefuse(wire.CodeBadMessage, "supervise with a mode only changes a supervision in progress")
		return
	}
	if mode == sup.mode {
		return
	}
	old := c.far
	snoop, err := c.snoop(mode)
	if err == nil {
		ctx, cancel := c.setupCtx()
		err = c.bridgeAdd(ctx, snoop.id)
		cancel()
	}
	if err != nil {
		c.log.Warn("change supervision mode", "mode", mode, "err", err)
		hctx, cancel := c.setupCtx()
		_ = snoop.hangup(hctx, c.a, "normal")
		cancel()
		c.unclaim(snoop.id)
		c.ctiRefuse(wire.CodeUnavailable, "could not switch to "+mode+"; the supervision goes on as "+sup.mode)
		return
	}
	c.far = snoop
	ctx, cancel := c.setupCtx()
	if err := old.hangup(ctx, c.a, "normal"); err != nil && !ari.IsNotFound(err) {
		c.log.Warn("hang up the previous snoop channel; the sweep retries", "err", err)
		c.a.SweepSoon()
	}
	cancel()
	c.unclaim(old.id)
	c.log.Info("audit: supervisor "+mode, "supervisor", c.browserUser(), "mode", mode, "was", sup.mode, "target_call", sup.target, "agent", sup.agent)
	sup.mode = mode
}

// auditSupervisionEnd logs the end of a supervision (from close).
func (c *Call) auditSupervisionEnd(e *ending) {
	if sup := c.cti.sup; sup != nil {
		c.log.Info("audit: supervisor left", "supervisor", c.browserUser(), "mode", sup.mode, "target_call", sup.target, "agent", sup.agent, "cause", e.cause)
	}
}

// onSupervisedEvent ends a supervision when the supervised call's channel is gone (the agent hung up or left).
func (c *Call) onSupervisedEvent(ev ari.Event) {
	sup := c.cti.sup
	if sup == nil {
		return
	}
	switch e := ev.(type) {
	case *ari.ChannelDestroyed:
		if e.Channel.ID == sup.em {
			c.log.Info("the supervised call ended")
			c.endWith(wire.CauseNormalClearing)
		}
	case *ari.StasisEnd:
		if e.Channel.ID == sup.em {
			c.log.Info("the supervised call ended")
			c.endWith(wire.CauseNormalClearing)
		}
	}
}

// supervisable: a supervisor may join the calls of agents and room moderators, and its console lists those alone.
func supervisable(lc signal.LiveCall) bool {
	return lc.Role == rooms.RoleAgent || lc.Role == rooms.RoleModerator
}
