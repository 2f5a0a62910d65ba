package call

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/rooms"
)

// TreatmentContext is the dialplan context (asterisk-configs/extensions.conf.tmpl) a refused phone call is sent
// to: an announcement when the sound is installed, else congestion tone, then a hangup with a cause.
const TreatmentContext = "patchbay-treatment"

// Treatment extensions in TreatmentContext.
const (
	TreatmentUnallocated = "unallocated" // unmapped or expired number, ended room: cause 1
	TreatmentUnavailable = "unavailable" // number store down, room join failed: cause 34 (SIP 503)
)

// roomStasisStart takes phones that the dialplan sent to a room: args "room,<dialled number>" (extensions _8XXX)
// or "did,<DID>" (trunk). It reports whether it handled the channel.
func (m *Manager) roomStasisStart(ctx context.Context, e *ari.StasisStart) bool {
	if len(e.Args) == 0 || (e.Args[0] != "room" && e.Args[0] != "did") {
		return false
	}
	number := ""
	if len(e.Args) > 1 {
		number = e.Args[1]
	}
	log := m.log.With("channel", e.Channel.ID, "caller", e.Channel.Caller.Number, "via", e.Args[0], "number", number)
	c := m.newCall(ctx, log)
	c.farID = e.Channel.ID
	if err := m.register(c); err != nil {
		m.hangupAsync(ctx, e.Channel.ID, "congestion", log)
		return true
	}
	go c.runPhone(e.Channel, number)
	return true
}

// phoneRoute is where a phone call goes: a room, or a treatment with the reason logged.
type phoneRoute struct {
	room      string
	mapped    string // the number whose mapping matched
	treatment string
	reason    string
}

// routePhone looks the dialled number up, then the caller's number, in the number store. It never acts.
func routePhone(ctx context.Context, store dialplan.Store, exists func(string) bool, dialled, callerID string) phoneRoute {
	if store == nil {
		return phoneRoute{treatment: TreatmentUnallocated, reason: "no number store configured"}
	}
	var dialledErr error // why the dialled number itself was no good; a caller ID that is no number is normal
	for i, n := range []string{dialled, callerID} {
		if n == "" {
			continue
		}
		if _, err := dialplan.NormalizeNumber(n); err != nil {
			if i == 0 {
				dialledErr = err
			}
			continue
		}
		mp, err := store.Lookup(ctx, n)
		if errors.Is(err, dialplan.ErrNotMapped) {
			continue
		}
		if err != nil {
			return phoneRoute{treatment: TreatmentUnavailable, reason: "number lookup failed: " + err.Error()}
		}
		if !exists(mp.Room) {
			return phoneRoute{treatment: TreatmentUnallocated, mapped: mp.Number, reason: "number is mapped to room " + mp.Room + ", which does not exist or has ended"}
		}
		return phoneRoute{room: mp.Room, mapped: mp.Number}
	}
	reason := "neither the dialled number nor the caller's number is mapped to a room (or the mapping expired)"
	if dialledErr != nil {
		reason = "the dialled number is not valid: " + dialledErr.Error()
	}
	return phoneRoute{treatment: TreatmentUnallocated, reason: reason}
}

// runPhone owns a phone's membership of a room, from lookup to hangup.
func (c *Call) runPhone(ch ari.Channel, number string) {
	ctx, cancel := context.WithCancel(c.ctx)
	c.ctx = ctx
	defer func() {
		cancel()
		c.m.unregister(c)
	}()
	a := c.m.o.ARI
	sub := a.Subscribe(ari.Filter{Name: "room-phone-" + c.id, IDs: []string{c.farID}})
	defer sub.Close()

	var exists func(string) bool = func(string) bool { return false }
	if c.m.o.Rooms != nil {
		exists = c.m.o.Rooms.Exists
	}
	lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
	rt := routePhone(lctx, c.m.o.Numbers, exists, number, ch.Caller.Number)
	lcancel()
	if rt.room == "" {
		c.treat(ctx, rt.treatment, rt.reason)
		return
	}
	c.log = c.log.With("room", rt.room, "mapped", rt.mapped)
	format := "ulaw"
	if v, err := a.Channel(ch.ID).Variable(ctx, "CHANNEL(audionativeformat)"); err == nil && strings.Contains(v, "alaw") {
		format = "alaw"
	}
	setupCtx, setupCancel := context.WithTimeout(ctx, 10*time.Second)
	err := a.Channel(ch.ID).Answer(setupCtx)
	var mem *rooms.Member
	if err == nil {
		setTalkDetect(setupCtx, a, ch.ID, c.log)
		mem, err = c.m.o.Rooms.Join(setupCtx, rt.room, rooms.JoinSpec{
			Kind: rooms.KindPhone, Name: ch.Caller.Name, CallerID: ch.Caller.Number, Role: rooms.RoleParticipant,
			Channel: ch.ID, Format: format, Log: c.log,
			Kick: func(reason string) { c.post(inbound{kind: kindKicked, cause: reason}) },
		})
	}
	setupCancel()
	if err != nil {
		c.log.Error("phone could not join the room", "err", err)
		if errors.Is(err, rooms.ErrNotFound) || errors.Is(err, rooms.ErrEnded) {
			c.treat(ctx, TreatmentUnallocated, "room ended while the call was set up")
		} else {
			c.treat(ctx, TreatmentUnavailable, "joining the room failed: "+err.Error())
		}
		return
	}
	c.log = c.log.With("participant", mem.ID())
	reason := c.phoneLoop(sub, mem)
	hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer hcancel()
	mem.Leave(hctx, reason)
	if !c.farGone {
		if err := a.Channel(c.farID).Hangup(hctx, "normal"); err != nil && !ari.IsNotFound(err) {
			c.log.Warn("hang up phone", "err", err)
		}
	}
}

func (c *Call) phoneLoop(sub *ari.Subscription, mem *rooms.Member) string {
	var maxDur <-chan time.Time
	if c.m.o.MaxDuration > 0 {
		t := time.NewTimer(c.m.o.MaxDuration)
		defer t.Stop()
		maxDur = t.C
	}
	for {
		select {
		case <-c.ctx.Done():
			return "shutdown"
		case <-maxDur:
			c.log.Warn("security: room call reached the maximum duration", "max", c.m.o.MaxDuration)
			return "max duration"
		case <-mem.Events(): // phones have no event channel; the queue is drained so it never fills
		case in := <-c.inbox:
			switch in.kind {
			case kindShutdown:
				return "shutdown"
			case kindKicked:
				return in.cause
			}
		case ev := <-sub.Events():
			switch e := ev.(type) {
			case *ari.ChannelTalkingStarted:
				mem.SetTalking(true)
			case *ari.ChannelTalkingFinished:
				mem.SetTalking(false)
			case *ari.ChannelDestroyed:
				if e.Channel.ID == c.farID {
					c.farGone = true
					return "phone hung up"
				}
			case *ari.StasisEnd:
				if e.Channel.ID == c.farID {
					c.farGone = true // left the application (hung up or redirected): no longer ours
					return "phone left"
				}
			case *ari.Reconciled:
				if goneAny(e, c.farID) {
					c.farGone = true
					return "phone vanished while the ARI socket was down"
				}
			}
		}
	}
}

// treat sends a phone that cannot join a room to the treatment context, so it hears why before the hangup, and
// never silence. If even that fails it is hung up with the treatment's cause.
func (c *Call) treat(ctx context.Context, treatment, reason string) {
	lvl := slog.LevelWarn
	if treatment == TreatmentUnavailable {
		lvl = slog.LevelError
	}
	c.log.Log(ctx, lvl, "phone call refused: playing treatment", "treatment", treatment, "reason", reason)
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := c.m.o.ARI.Channel(c.farID).Continue(hctx, ari.ContinueOptions{Context: TreatmentContext, Extension: treatment, Priority: 1})
	if err == nil || ari.IsNotFound(err) {
		return
	}
	c.log.Warn("send phone to treatment: hanging up instead", "err", err)
	hr := "unallocated"
	if treatment == TreatmentUnavailable {
		hr = "congestion"
	}
	if err := c.m.o.ARI.Channel(c.farID).Hangup(hctx, hr); err != nil && !ari.IsNotFound(err) {
		c.log.Warn("hang up refused phone", "err", err)
	}
}
