package call

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/limits"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Transfers. The far party of a browser's call (the transferee) moves to a new call of kind transfer, which owns it
// from then on; the browser's call ends ("transferred", then "hangup").
//
//   - Blind ("transfer" with to): the destination goes through the same routing, token grants, caller-ID rules and
//     limits as a call the browser places itself. The transfer call makes its own bridge, moves the transferee into
//     it (it hears music on hold meanwhile), and rings the destination: an extension or a phone, an outside number
//     over the trunks (presenting the transferring user's caller ID, never the transferee's), or a browser user,
//     rung like any incoming call. If the destination fails, the transferee is hung up with its cause.
//   - Attended ("transfer" with target): the browser first calls the new party itself (its consult call, a call
//     like any other; it holds the first call meanwhile), then asks to join the two far parties. The transfer call
//     bridges both; both browser calls end. To cancel, the browser hangs up the consult call and resumes.
//
// Ownership moves on the giving call's goroutine: the transfer call claims the leg before the giving call lets go
// of it (preclaim, then unclaim), and only then does the giving call stop treating it as its own. The sweep never
// sees the leg unclaimed, and only one call ever hangs it up.
//
// A phone that transfers a browser (its REFER, handled by Asterisk) is followed in cti.go: the Local channel that
// dials the transfer target takes the phone's place in the call's bridge and becomes its far party.

// handoff asks a call (the consult call of an attended transfer) to give its far party to the transfer call to.
type handoff struct {
	to   *Call
	done chan error
	// taken is the one decision both sides agree on: the consult call hands over only if it takes the handoff
	// first, and the transferring call gives up only if it takes it first (after its wait ran out, or the consult
	// call ended). Whoever loses does nothing, so a far party is never handed to a transfer call that no one runs.
	taken atomic.Bool
}

// transferable says why the call's far party cannot be transferred, or "".
func (c *Call) transferable() string {
	switch {
	case c.browser == nil || c.browser.s == nil:
		return "transfer needs the browser connected"
	case c.kind == KindRoom:
		if c.member == nil {
			return "you are not in the room yet"
		}
		return ""
	case c.kind == KindSupervise || c.kind == KindTransfer:
		return "only a two-party call's far party can be transferred"
	case c.inDialplan != "":
		return "extension " + c.inDialplan + " runs without a bridge (calls.dialplan_extensions): it cannot be transferred"
	case c.far == nil || c.bridge == "":
		return "this call has no far party to transfer"
	case !c.far.up:
		return "the far end has not answered yet"
	}
	return ""
}

// transfer handles the browser's "transfer".
func (c *Call) transfer(msg signal.Message) {
	if c.kind == KindRoom && !c.handlesRooms() {
		c.ctiRefuse(wire.CodeNotAllowed, "only an agent or a moderator may hand a room on")
		return
	}
	if why := c.transferable(); why != "" {
		c.ctiRefuse(wire.CodeTransferFailed, why)
		return
	}
	if msg.Target != "" {
		if c.kind == KindRoom {
			c.ctiRefuse(wire.CodeTransferFailed, "a room is handed on with a blind transfer (to)")
			return
		}
		c.attendedTransfer(msg.Target)
		return
	}
	c.blindTransfer(msg.To, msg.CallerID)
}

// farNumber is the far party's number as the call knows it: the caller of an incoming call, the destination of an
// outgoing one.
func (c *Call) farNumber() string {
	if c.kind == KindPhoneIn {
		return c.obs.rec.From
	}
	return c.obs.rec.To
}

// newTransferCall makes the call that takes over c's far party.
func (c *Call) newTransferCall(log string, to string) *Call {
	t := c.m.newCall(KindTransfer, c.m.log.With("transfer_from", c.id, "by", c.browserUser(), "to", to))
	leg := *c.far
	t.phone = &leg
	r := &t.obs.rec
	r.From, r.To, r.User = c.farNumber(), to, c.browserUser()
	t.log.Info(log, "transferee", leg.id)
	return t
}

// blindTransfer hands the far party to a destination, with every check of a new call.
func (c *Call) blindTransfer(to, callerID string) {
	s := c.browser.s
	refused := func(r *Refusal, attrs ...any) {
		c.log.Warn("security: transfer refused", append([]any{"to", to, "code", r.Code, "reason", r.Message}, attrs...)...)
		c.ctiRefuse(wire.CodeTransferFailed, r.Message+" ("+r.Code+")")
	}
	d, err := c.m.o.Router.Route(to)
	if err != nil {
		refused(routeRefusal(err), routeAttrs(err)...)
		return
	}
	cl := browserClaims(s)
	if !dialplan.Allowed(d, cl.Dial) {
		refused(refuse(wire.CodeForbiddenDestination, "your token does not allow calling %s destinations", d.Kind))
		return
	}
	var user string
	switch d.Kind {
	case dialplan.KindUser:
		if c.kind == KindRoom {
			refused(refuse(wire.CodeForbiddenDestination, "a browser user joins a room with a ticket or a room token, not a transfer"))
			return
		}
	}
	switch d.Kind {
	case dialplan.KindExtension:
	case dialplan.KindPSTN:
		id, r := pickCallerID(callerID, cl.CallerIDs, c.m.o.PSTN.DefaultCallerID)
		if r != nil {
			refused(r)
			return
		}
		callerID = id
	case dialplan.KindUser:
		u, err := c.m.userFor(d)
		if err != nil {
			refused(refuse(wire.CodeInvalidNumber, "%v", err))
			return
		}
		user = u
	default:
		refused(refuse(wire.CodeForbiddenDestination, "a call cannot be transferred to %s destinations", d.Kind))
		return
	}
	if d.Kind != dialplan.KindPSTN && callerID != "" {
		refused(refuse(wire.CodeBadMessage, "caller_id applies to outside numbers only"))
		return
	}
	if why := c.m.unavailable(); why != "" {
		refused(refuse(wire.CodeUnavailable, "%s", why))
		return
	}
	lease, err := c.m.o.PSTN.TokenLimits.Start("token:"+s.User(), d.Kind == dialplan.KindPSTN)
	if err != nil {
		refused(limitRefusal(err))
		return
	}
	name := cl.Name
	if c.kind == KindRoom {
		c.transferRoom(d, callerID, name, lease)
		return
	}
	t := c.newTransferCall("blind transfer", d.Number)
	t.lease = lease
	t.obs.rec.CallerID, t.obs.rec.Trunk = callerID, d.Trunk
	t.preclaim(t.phone.id)
	var setup func() error
	if user != "" {
		// A browser user takes the transferee like an incoming call: the transferee is the caller (phone_in.go).
		t.far, t.phone = t.phone, nil
		t.obs.rec.User = user
		setup = func() error { return t.setupTransferToUser(user) }
	} else {
		t.near = transferParty{}
		setup = func() error { return t.setupTransferTo(d, callerID, name) }
	}
	if err := c.m.start(t, setup); err != nil {
		lease.End(0)
		t.a.Release(t.claimed...)
		c.ctiRefuse(wire.CodeTransferFailed, "the server is shutting down; try again in a moment")
		return
	}
	c.handOver(d.Number, "blind transfer", t.id)
}

// handOver ends this call once another call owns its far party.
func (c *Call) handOver(to, what, newCall string) {
	c.unclaim(c.far.id)
	c.far = nil
	c.log.Info(what+": far party handed on", "to", to, "transfer_call", newCall)
	c.browser.send(c, signal.Message{Type: signal.TypeTransferred, To: to, By: signal.ByYou})
	c.end(&ending{cause: wire.CauseNormalClearing})
}

// attendedTransfer joins this call's far party with the far party of the browser's consult call target.
func (c *Call) attendedTransfer(target string) {
	o := c.m.lookup(c.browser.s.ID(), target)
	if o == nil || o == c {
		c.ctiRefuse(wire.CodeTransferFailed, "no call "+clip(target)+" of yours to join this one with")
		return
	}
	t := c.newTransferCall("attended transfer", "")
	h := &handoff{to: t, done: make(chan error, 1)}
	o.post(inbound{kind: inHandOff, handoff: h})
	var err error
	select {
	case err = <-h.done:
	case <-o.ctx.Done():
		err = fmt.Errorf("the consult call ended")
	case <-time.After(ctiTimeout):
		err = fmt.Errorf("the consult call did not answer in time")
	}
	if err != nil && !h.taken.CompareAndSwap(false, true) {
		err = <-h.done // the consult call took the handoff first: its answer (a handover, or why not) is coming
	}
	if err != nil {
		c.ctiRefuse(wire.CodeTransferFailed, "attended transfer: "+err.Error())
		return
	}
	t.preclaim(t.phone.id)
	if err := c.m.start(t, t.setupJoin); err != nil {
		c.abandon(t)
		c.ctiRefuse(wire.CodeTransferFailed, "the server is shutting down")
		return
	}
	c.handOver(t.obs.rec.To, "attended transfer", t.id)
}

// abandon hangs up what a transfer call that never ran was given.
func (c *Call) abandon(t *Call) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), c.m.o.CloseTimeout)
	defer cancel()
	if t.far != nil {
		if err := t.far.hangup(ctx, t.a, "normal"); err != nil && !ari.IsNotFound(err) {
			c.log.Warn("hang up an abandoned transfer's party; the sweep retries", "err", err)
		}
	}
	t.lease.End(0)
	t.releaseTrunk()
	t.a.Release(t.claimed...)
	t.claimed = nil
}

// onHandOff gives this call's far party to an attended transfer (this is the consult call) and ends the call.
func (c *Call) onHandOff(h *handoff) {
	if !h.taken.CompareAndSwap(false, true) {
		return // the transfer gave up waiting: this call goes on
	}
	if why := c.transferable(); why != "" {
		h.done <- fmt.Errorf("the consult call cannot be joined: %s", why)
		return
	}
	t := h.to
	leg := *c.far
	t.far = &leg
	t.preclaim(leg.id)
	// The consult call's limits lease and trunk slot go on with the joined call.
	t.lease, c.lease = c.lease, nil
	t.trunks, c.trunks = c.trunks, nil
	t.obs.rec.To, t.obs.rec.Trunk, t.obs.rec.CallerID = c.farNumber(), c.obs.rec.Trunk, c.obs.rec.CallerID
	t.log = t.log.With("to", t.obs.rec.To)
	c.unclaim(c.far.id)
	c.far = nil
	c.log.Info("consult call joined to an attended transfer", "transfer_call", t.id)
	c.browser.send(c, signal.Message{Type: signal.TypeTransferred, To: t.obs.rec.To, By: signal.ByYou})
	h.done <- nil
	c.end(&ending{cause: wire.CauseNormalClearing})
}

// transferParty is the transferee as the party that hears the new destination's progress: it hears music on hold
// until the answer (ctiAnswered stops it).
type transferParty struct{}

func (transferParty) ringing(*Call)      {}
func (transferParty) answered(*Call)     {}
func (transferParty) dtmf(*Call, string) {}

// followLegs subscribes the transfer call to the legs it was handed before it ran.
func (c *Call) followLegs() {
	c.sub.Add(c.claimed...)
}

// transfereeLaw is the transferee's G.711 law, so the new leg is made in it and nothing transcodes.
func (c *Call) transfereeLaw(ctx context.Context, id string) media.Law {
	if v, err := c.a.Channel(id).Variable(ctx, "CHANNEL(audionativeformat)"); err == nil && strings.Contains(v, "alaw") {
		return media.PCMA
	}
	return media.PCMU
}

// setupTransferTo: the transfer call's bridge with the transferee, music on hold, and the destination's leg.
func (c *Call) setupTransferTo(d dialplan.Decision, callerID, name string) error {
	c.followLegs()
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := c.makeBridge(ctx, "mixing"); err != nil {
		return err
	}
	if err := c.bridgeAdd(ctx, c.phone.id); err != nil { // moves it out of the browser's call
		return err
	}
	c.startTransfereeMOH(ctx)
	law := c.transfereeLaw(ctx, c.phone.id)
	if d.Kind == dialplan.KindPSTN {
		c.trunks = newTrunkPlan(d, callerID, name)
		c.trunks.presentOn, c.trunks.formats = c.phone.id, law.Format()
		return c.dialTrunk()
	}
	vars := map[string]string{}
	if n := c.obs.rec.From; n != "" {
		vars = callerVars(n, "") // an extension sees who is transferred to it
	}
	far, err := c.createLeg(ctx, "far", ari.CreateRequest{Endpoint: c.m.farEndpoint(d), Formats: law.Format(), Variables: vars})
	c.far = far
	if err != nil {
		return err
	}
	if err := c.bridgeAdd(ctx, far.id); err != nil {
		return err
	}
	if err := c.a.Channel(far.id).Dial(ctx, "", c.m.o.DialTimeout); err != nil {
		return fmt.Errorf("dial the transfer's destination: %w", err)
	}
	return nil
}

// setupTransferToUser rings a browser user's sessions with the transferee as the caller (phone_in.go does the rest).
func (c *Call) setupTransferToUser(user string) error {
	c.followLegs()
	var sessions []*signal.Session
	if dir := c.m.directory(); dir != nil {
		sessions = dir.SessionsOf(user)
	}
	if len(sessions) == 0 {
		c.log.Info("transfer to a user with no browser online")
		return &ending{cause: wire.CauseUserBusy}
	}
	ctx, cancel := c.setupCtx()
	defer cancel()
	c.startTransfereeMOH(ctx)
	c.ringSessions(c.obs.rec.From, "", c.transfereeLaw(ctx, c.far.id), sessions)
	if len(c.offers) == 0 {
		return &ending{cause: wire.CauseTemporaryFailure}
	}
	return nil
}

// setupJoin bridges the two far parties of an attended transfer.
func (c *Call) setupJoin() error {
	c.followLegs()
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := c.makeBridge(ctx, "mixing"); err != nil {
		return err
	}
	if err := c.bridgeAdd(ctx, c.phone.id, c.far.id); err != nil {
		return err
	}
	c.answered = time.Now()
	c.obs.rec.FarAnsweredAt = c.answered
	c.log.Info("attended transfer: parties joined")
	c.ctiAnswered()
	return nil
}

// transferee is the leg being transferred: the phone of a blind or attended transfer, the caller of one to a user.
func (c *Call) transferee() *chanLeg {
	if c.phone != nil {
		return c.phone
	}
	return c.far
}

func (c *Call) startTransfereeMOH(ctx context.Context) {
	if err := c.a.Channel(c.transferee().id).StartMOH(ctx, ""); err != nil {
		c.log.Debug("music on hold for the transferee", "err", err)
	}
}

func (c *Call) stopTransfereeMOH() {
	l := c.transferee()
	if l == nil || l.gone || c.cti.joinRoom != "" {
		return
	}
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := c.a.Channel(l.id).StopMOH(ctx); err != nil && !ari.IsNotFound(err) {
		c.log.Debug("stop the transferee's music on hold", "err", err)
	}
	c.stopAgain("stop the transferee's music on hold", func() bool { return c.transferee() == l && !l.gone },
		func(ctx context.Context) error { return c.a.Channel(l.id).StopMOH(ctx) })
}

// replaceFar follows a phone's transfer of the browser: ch takes the far party's place in the call's bridge. The
// browser learns who it now talks to; a hold by the departed party ends with it.
func (c *Call) replaceFar(ch ari.Channel, to string) {
	if c.far != nil && c.far.id != ch.ID {
		old := c.far
		c.claim(ch.ID)
		c.unclaim(old.id)
		c.far = &chanLeg{id: ch.ID, adopted: true, up: true}
		c.cti.farReplaced = ch.ID
		c.log.Info("the far party transferred the call", "replaced", old.id, "by", ch.ID, "name", ch.Name)
		if c.cti.heldByFar {
			c.cti.heldByFar = false
			c.applyHold()
			c.browser.send(c, signal.HeldMessage("", false, signal.ByFar))
		}
	}
	if to != "" && c.cti.farReplaced == ch.ID {
		c.cti.farReplaced = "" // told once
		c.obs.rec.To = to
		c.browser.send(c, signal.Message{Type: signal.TypeTransferred, To: to, By: signal.ByFar})
		c.publishLive()
	}
}

// transferRoom hands a room on: a transfer call rings the destination and puts it in the room once it answers; the
// others in the room hear music on hold meanwhile. The agent leaves at once.
func (c *Call) transferRoom(d dialplan.Decision, callerID, name string, lease *limits.Lease) {
	room := c.member.Room()
	t := c.m.newCall(KindTransfer, c.m.log.With("transfer_from", c.id, "by", c.browserUser(), "to", d.Number, "room", room))
	t.lease = lease
	t.cti.joinRoom = room
	r := &t.obs.rec
	r.From, r.To, r.User, r.Room, r.CallerID, r.Trunk = room, d.Number, c.browserUser(), room, callerID, d.Trunk
	t.onFarAnswered = t.joinRoomAnswered
	if err := c.m.start(t, func() error { return t.setupTransferIntoRoom(d, callerID, name) }); err != nil {
		lease.End(0)
		c.ctiRefuse(wire.CodeTransferFailed, "the server is shutting down; try again in a moment")
		return
	}
	c.log.Info("room handed on", "to", d.Number, "transfer_call", t.id)
	c.browser.send(c, signal.Message{Type: signal.TypeTransferred, To: d.Number, By: signal.ByYou})
	c.end(&ending{cause: wire.CauseNormalClearing})
}

// setupTransferIntoRoom plays music into the room and rings the destination (an extension, or an outside number
// over the trunks presenting the agent's caller ID).
func (c *Call) setupTransferIntoRoom(d dialplan.Decision, callerID, name string) error {
	ctx, cancel := c.setupCtx()
	defer cancel()
	if bridge, err := c.m.o.Rooms.BridgeOf(c.cti.joinRoom); err == nil {
		if err := c.a.Bridge(bridge).StartMOH(ctx, ""); err == nil {
			c.cti.roomMOH = bridge
		}
	}
	if d.Kind == dialplan.KindPSTN {
		c.trunks = newTrunkPlan(d, callerID, name) // no bridge: the trunk leg presents the caller ID itself
		c.trunks.formats = "ulaw"
		return c.dialTrunk()
	}
	far, err := c.createLeg(ctx, "far", ari.CreateRequest{Endpoint: c.m.farEndpoint(d), Formats: "ulaw", Variables: callerVars(c.cti.joinRoom, name)})
	c.far = far
	if err != nil {
		return err
	}
	if err := c.a.Channel(far.id).Dial(ctx, "", c.m.o.DialTimeout); err != nil {
		return fmt.Errorf("dial the transfer's destination: %w", err)
	}
	return nil
}

// joinRoomAnswered puts the answered destination in the room (as an agent: the room leaves the queue).
func (c *Call) joinRoomAnswered() {
	c.stopRoomMOH()
	ctx, cancel := c.setupCtx()
	defer cancel()
	law := c.transfereeLaw(ctx, c.far.id)
	mem, err := c.m.o.Rooms.Join(ctx, c.cti.joinRoom, rooms.JoinSpec{
		Kind: rooms.KindPhone, Name: c.obs.rec.To, CallerID: c.obs.rec.To, Role: rooms.RoleAgent,
		Channel: c.far.id, Format: law.Format(), Log: c.log,
		Kick: func(reason string) { c.post(inbound{kind: inKicked, reason: reason}) },
	})
	if err != nil {
		c.log.Error("put the transfer's party in the room", "err", err)
		c.endWith(wire.CauseTemporaryFailure)
		return
	}
	c.member = mem
	c.log.Info("transfer's party is in the room", "participant", mem.ID())
}
