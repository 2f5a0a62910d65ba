package call

import (
	"context"
	"time"

	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Hold. A browser holds the far party with "hold": its channel is held through ARI, so the far party's own channel
// driver plays Asterisk's music on hold to it (a phone, a trunk, or through a Local channel the phone behind it),
// and the browser's externalMedia channel is muted both ways: nothing of the browser reaches the far party, and the
// browser hears nothing of it. "resume" undoes both. A phone that holds the browser (its re-INVITE with sendonly or
// inactive) shows up as ChannelHold on the far channel: the browser hears music on hold through its own channel and
// gets "held" with by "far". The call goes on while held; its one-way-audio watch rests (observe.go).

// holdable says why this call cannot be held, or "".
func (c *Call) holdable() string {
	switch {
	case c.browser == nil || !c.browser.emMade:
		return "this call has no browser media to hold"
	case c.kind == KindRoom:
		if c.member == nil {
			return "you are not in the room yet"
		}
		return ""
	case c.inDialplan != "":
		return "extension " + c.inDialplan + " runs without a bridge (calls.dialplan_extensions): it cannot be held"
	case c.far == nil || c.bridge == "":
		return "hold applies to a two-party call; rooms have mute"
	case !c.far.up:
		return "the far end has not answered yet"
	}
	return ""
}

// hold puts the far party on hold (on) or takes it off.
func (c *Call) hold(on bool) {
	if c.kind == KindRoom && !c.handlesRooms() {
		c.ctiRefuse(wire.CodeNotAllowed, "only an agent or a moderator may put a room on hold; use mute")
		return
	}
	if why := c.holdable(); why != "" {
		c.ctiRefuse(wire.CodeBadMessage, why)
		return
	}
	b := c.browser
	if c.cti.heldByYou != on {
		ctx, cancel := c.setupCtx()
		var err error
		switch {
		case c.kind == KindRoom:
			err = c.holdRoom(ctx, on)
		case on:
			err = c.a.Channel(c.far.id).Hold(ctx)
		default:
			err = c.a.Channel(c.far.id).Unhold(ctx)
		}
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Warn("hold request failed", "hold", on, "err", err)
				c.ctiRefuse(wire.CodeUnavailable, "the call could not be put on or taken off hold; try again")
			}
			return
		}
		if !on && c.kind != KindRoom {
			far := c.far.id
			c.stopAgain("unhold the far party", func() bool { return !c.cti.heldByYou && c.far != nil && c.far.id == far },
				func(ctx context.Context) error { return c.a.Channel(far).Unhold(ctx) })
		}
		c.cti.heldByYou = on
		c.applyHold()
		c.log.Info("browser hold", "held", on)
		c.publishLive()
	}
	b.send(c, signal.HeldMessage("", on, signal.ByYou))
}

// farHold follows the far party's own hold key.
func (c *Call) farHold(on bool) {
	if c.cti.heldByFar == on || c.browser == nil || !c.browser.emMade {
		return
	}
	c.cti.heldByFar = on
	c.applyHold()
	c.log.Info("far party hold", "held", on)
	c.browser.send(c, signal.HeldMessage("", on, signal.ByFar))
	c.publishLive()
}

// applyHold brings the browser's channel in line with who holds: muted both ways while the browser holds; music on
// hold while only the far party holds it.
func (c *Call) applyHold() {
	em := c.browser.emID
	ctx, cancel := c.setupCtx()
	defer cancel()
	muted := c.cti.heldByYou
	moh := c.cti.heldByFar && !c.cti.heldByYou
	if moh != c.cti.emMOH {
		var err error
		if moh {
			err = c.a.Channel(em).StartMOH(ctx, "")
		} else {
			err = c.a.Channel(em).StopMOH(ctx)
			c.stopAgain("stop the music on hold toward the browser", func() bool { return !c.cti.emMOH && c.browser != nil && c.browser.emID == em },
				func(ctx context.Context) error { return c.a.Channel(em).StopMOH(ctx) })
		}
		if err != nil && c.ctx.Err() == nil {
			c.log.Warn("music on hold toward the browser", "on", moh, "err", err)
		}
		c.cti.emMOH = moh
	}
	if muted != c.cti.emMuted {
		var err error
		if muted {
			err = c.a.Channel(em).Mute(ctx, "both")
		} else {
			err = c.a.Channel(em).Unmute(ctx, "both")
		}
		if err != nil && c.ctx.Err() == nil {
			c.log.Warn("mute the browser's channel for hold", "muted", muted, "err", err)
		}
		c.cti.emMuted = muted
	}
}

// holdRoom: an agent or moderator holds a room. The others in it hear music on hold (played into the room's
// bridge); the agent's own channel is muted both ways by applyHold, like any hold.
func (c *Call) holdRoom(ctx context.Context, on bool) error {
	bridge, err := c.m.o.Rooms.BridgeOf(c.member.Room())
	if err != nil {
		return err
	}
	if on {
		c.cti.roomMOH = bridge
		return c.a.Bridge(bridge).StartMOH(ctx, "")
	}
	c.cti.roomMOH = ""
	return c.a.Bridge(bridge).StopMOH(ctx)
}

// stopRoomMOH stops music this call started in a room (a hold or a transfer into the room that did not resume or
// complete): from close, or once the transfer's party joins.
func (c *Call) stopRoomMOH() {
	if c.cti.roomMOH == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), c.m.o.CloseTimeout)
	defer cancel()
	if err := c.a.Bridge(c.cti.roomMOH).StopMOH(ctx); err != nil && c.ctx.Err() == nil {
		c.log.Debug("stop music on hold in the room", "err", err)
	}
	c.cti.roomMOH = ""
}

// Asterisk answers a channel's music-on-hold stop and unhold (DELETE /channels/{id}/moh, /hold) as soon as it has
// queued them, and the stop can then be lost: the channel's control thread runs ast_moh_stop while the bridge thread
// is making a frame of the music (main/channel.c generator_force lends the generator out, unlocked, for the
// frame), finds no generator to deactivate, and the music plays on until hang-up. CI saw both halves: a browser
// hearing music after the phone resumed, a phone hearing it after the browser resumed. So each such stop is sent
// again, twice, while what it undid is still undone; a stop of music that has already stopped changes nothing.
// This makes a lost stop unlikely (each send must hit the same window), not impossible: the sure way, taking the
// channel out of its bridge for the music, would make every hold a bridge change.
const (
	stopAgainAfter = 700 * time.Millisecond
	stopRepeats    = 2
)

// stopRepeat is a stop to send again on the call's ticks.
type stopRepeat struct {
	what  string
	at    time.Time
	left  int
	still func() bool // false once the stop no longer applies (held again, the channel replaced)
	send  func(context.Context) error
}

// stopAgain schedules stopRepeats more sends of a stop that was just sent.
func (c *Call) stopAgain(what string, still func() bool, send func(context.Context) error) {
	c.cti.repeats = append(c.cti.repeats, &stopRepeat{what: what, at: time.Now().Add(stopAgainAfter), left: stopRepeats, still: still, send: send})
}

// repeatStops sends the stops that are due (on the call's tick).
func (c *Call) repeatStops(now time.Time) {
	kept := c.cti.repeats[:0]
	for _, r := range c.cti.repeats {
		if !r.still() {
			continue
		}
		if now.Before(r.at) {
			kept = append(kept, r)
			continue
		}
		ctx, cancel := c.setupCtx()
		err := r.send(ctx)
		cancel()
		if err != nil && c.ctx.Err() == nil {
			c.log.Debug("repeated stop failed", "what", r.what, "err", err)
		}
		if r.left--; r.left > 0 {
			r.at = now.Add(stopAgainAfter)
			kept = append(kept, r)
		}
	}
	clear(c.cti.repeats[len(kept):])
	c.cti.repeats = kept
}
