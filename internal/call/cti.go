package call

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/internal/recording"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Contact-center features of a call: hold (hold.go), transfer (transfer.go), recording (record.go), supervision
// (supervise.go), the console's view of calls and the room moderator's controls (console.go). Their state lives in
// ctiState and belongs to the call goroutine like the rest of the call.

// RoleSupervisor is the token role that may supervise agents' and moderators' calls and see every live call.
const RoleSupervisor = "supervisor"

// CTIOptions configure the contact-center features.
type CTIOptions struct {
	// Recorder records calls; nil: recording is off (recording.mode off).
	Recorder *recording.Recorder
	// RecordAlways starts a recording on every two-party call once it is answered (recording.mode always);
	// otherwise recordings start on request (the API, or an agent's "record").
	RecordAlways bool
}

// ctiState is a call's contact-center state, owned by the call goroutine.
type ctiState struct {
	role string // the browser's role: its room role, else its token's role ("" for a phone's call)

	heldByYou bool // the browser put the far party on hold
	heldByFar bool // the far party (a phone's hold key) put the browser on hold
	emMuted   bool // the browser's channel is muted both ways (applied)
	emMOH     bool // music on hold plays to the browser's channel (applied)

	repeats []*stopRepeat // stops sent again while they still apply (hold.go)

	rec *recording.Session // the recording in progress, if any

	roomMOH  string // a room bridge this call plays music on hold into (a room hold, a transfer into the room)
	joinRoom string // a transfer call's room: its new party joins it once it answers

	sup *supervision // a supervisor's call (KindSupervise)

	// farReplaced: a phone's transfer swapped the far party; the transferred message waits for its event.
	farReplaced string
}

// onHold reports whether either side holds the call.
func (c *Call) onHold() bool { return c.cti.heldByYou || c.cti.heldByFar }

// onCTIMessage handles a browser's contact-center message on its call.
func (c *Call) onCTIMessage(msg signal.Message) {
	switch msg.Type {
	case signal.TypeHold:
		c.hold(true)
	case signal.TypeResume:
		c.hold(false)
	case signal.TypeTransfer:
		c.transfer(msg)
	case signal.TypeRecord:
		c.recordFromBrowser(msg.Action == signal.ActionStart)
	case signal.TypeSupervise:
		c.changeSupervision(msg.Mode)
	case signal.TypeModerate:
		c.moderate(msg)
	}
}

// onCTIEvent reacts to what the far party does through Asterisk: its hold key, and a transfer that replaces it. It
// runs before the generic handling, so a far party swapped by a transfer is not taken for one that hung up.
func (c *Call) onCTIEvent(ev ari.Event) {
	if c.kind == KindSupervise {
		c.onSupervisedEvent(ev)
		return
	}
	switch e := ev.(type) {
	case *ari.ChannelHold:
		if c.far != nil && e.Channel.ID == c.far.id {
			c.farHold(true)
		}
	case *ari.ChannelUnhold:
		if c.far != nil && e.Channel.ID == c.far.id {
			c.farHold(false)
		}
	case *ari.StasisStart:
		// A phone's REFER in a Stasis bridge: a Local channel that dials the transfer target enters the
		// application in the transferer's place, naming it as the channel it replaces.
		if e.ReplaceChannel != nil && c.far != nil && e.ReplaceChannel.ID == c.far.id {
			c.replaceFar(e.Channel, "")
		}
	case *ari.BridgeBlindTransfer:
		if e.Result == "Success" && e.ReplaceChannel != nil && (c.far != nil && e.Channel.ID == c.far.id || c.cti.farReplaced == e.ReplaceChannel.ID) {
			c.replaceFar(*e.ReplaceChannel, e.Exten)
		}
	case *ari.BridgeAttendedTransfer:
		if e.Result != "Success" || c.far == nil {
			return
		}
		to := ""
		if e.TransferTarget != nil {
			to = e.TransferTarget.Caller.Number
		}
		switch {
		case e.ReplaceChannel != nil && (e.TransfererFirstLeg.ID == c.far.id || e.TransfererSecondLeg.ID == c.far.id || c.cti.farReplaced == e.ReplaceChannel.ID):
			c.replaceFar(*e.ReplaceChannel, to)
		case e.TransferTarget != nil && e.DestinationBridge == c.bridge && (e.TransfererFirstLeg.ID == c.far.id || e.TransfererSecondLeg.ID == c.far.id):
			c.replaceFar(*e.TransferTarget, to)
		}
	}
}

// ctiAnswered runs once the far end answered: consoles learn of the call, a transferred party stops hearing music,
// and the recording policy applies.
func (c *Call) ctiAnswered() {
	if c.kind == KindTransfer {
		c.stopTransfereeMOH()
	}
	c.publishLive()
	c.recordByPolicy()
}

// ctiClosed runs in close: music this call left playing in a room stops; the end of a supervision is audited.
func (c *Call) ctiClosed(e *ending) {
	c.stopRoomMOH()
	if c.kind == KindRoom && c.cti.rec != nil { // an agent's recording of its room ends when it leaves
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), c.m.o.CloseTimeout)
		c.cti.rec.Stop(ctx)
		cancel()
	}
	c.auditSupervisionEnd(e)
}

// browserRole is the browser's role on this call: its room role, else its token's.
func (c *Call) browserRole() string {
	if c.cti.role == "" && c.browser != nil && c.browser.s != nil {
		c.cti.role = browserClaims(c.browser.s).Role
	}
	return c.cti.role
}

// browserUser is the browser's user name, or "".
func (c *Call) browserUser() string {
	if c.browser != nil && c.browser.s != nil {
		return c.browser.s.User()
	}
	return c.obs.rec.User
}

// handlesRooms: the browser's token may hold a room or hand it on (roles agent and moderator).
func (c *Call) handlesRooms() bool {
	r := c.browserRole()
	return r == rooms.RoleAgent || r == rooms.RoleModerator
}

// ctiRefuse tells the browser a contact-center request was refused; the call goes on.
func (c *Call) ctiRefuse(code, text string) {
	if code == wire.CodeNotAllowed {
		c.log.Warn("security: contact-center request refused", "user", c.browserUser(), "role", c.browserRole(), "reason", text)
	}
	if c.browser != nil {
		c.browser.send(c, signal.ErrorMessage("", code, text))
	}
}

// preclaim claims ids for a call that does not run yet (a handoff): the giving call still holds them, so there is
// no moment at which the sweep could take them for orphans. The call's own subscription follows them in setup.
func (c *Call) preclaim(ids ...string) {
	c.a.Claim(ids...)
	c.claimed = append(c.claimed, ids...)
}

// unclaim lets go of one claimed ID before close: a leg handed to another call, or one a transfer replaced.
func (c *Call) unclaim(id string) {
	if i := slices.Index(c.claimed, id); i >= 0 {
		c.claimed = slices.Delete(c.claimed, i, i+1)
		c.a.Release(id)
	}
}

// ---- what consoles see ----

// liveInfo is a call as consoles see it, with what supervision needs; immutable once published.
type liveInfo struct {
	call signal.LiveCall
	em   string // the browser's externalMedia channel, snooped by supervisors
}

// publishLive updates what consoles see of the call.
func (c *Call) publishLive() {
	li := &liveInfo{call: signal.LiveCall{
		ID: c.id, Kind: string(c.kind), User: c.browserUser(), Role: c.browserRole(),
		From: c.obs.rec.From, To: c.obs.rec.To, Room: c.obs.rec.Room,
		Started: c.started.UTC(), Held: c.onHold(), Recording: c.cti.rec != nil,
	}}
	if !c.answered.IsZero() {
		li.call.Answered = c.answered.UTC()
	}
	if c.browser != nil && c.browser.emMade && c.kind != KindSupervise {
		li.em = c.browser.emID
	}
	c.live.Store(li)
}

// callByID returns a live call by its server-side ID.
func (m *Manager) callByID(id string) *Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[id]
}

// LiveCalls lists the calls in progress that consoles see, oldest first.
func (m *Manager) LiveCalls() []signal.LiveCall {
	m.mu.Lock()
	out := make([]signal.LiveCall, 0, len(m.calls))
	for _, c := range m.calls {
		if li := c.live.Load(); li != nil {
			out = append(out, li.call)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b signal.LiveCall) int { return a.Started.Compare(b.Started) })
	return out
}

// ---- room moderation ----

// moderate lets a room's moderator mute, unmute or kick a participant, or end the room. Each action is an audit
// line in the log.
func (c *Call) moderate(msg signal.Message) {
	if c.kind != KindRoom || c.member == nil || c.m.o.Rooms == nil {
		c.ctiRefuse(wire.CodeBadMessage, "moderate applies to a room you have joined")
		return
	}
	if c.browserRole() != rooms.RoleModerator {
		c.ctiRefuse(wire.CodeNotAllowed, "only a room's moderator may mute, kick or end it")
		return
	}
	room := c.member.Room()
	ctx, cancel := context.WithTimeout(c.ctx, c.m.o.SetupTimeout)
	defer cancel()
	var err error
	switch msg.Action {
	case signal.ActionMute, signal.ActionUnmute:
		_, err = c.m.o.Rooms.Mute(ctx, room, msg.Target, msg.Action == signal.ActionMute)
	case signal.ActionKick:
		err = c.m.o.Rooms.Kick(ctx, room, msg.Target)
	case signal.ActionStopShare:
		err = c.stopShareOf(ctx, msg.Target) // share.go
	case signal.ActionEndRoom:
		err = c.m.o.Rooms.End(ctx, room, "ended by moderator "+c.browserUser())
		if errors.Is(err, rooms.ErrNotFound) {
			err = nil // ended meanwhile
		}
	}
	c.log.Info("audit: moderator "+msg.Action, "moderator", c.browserUser(), "room", room, "participant", msg.Target, "ok", err == nil)
	switch {
	case errors.Is(err, rooms.ErrNoParticipant):
		c.ctiRefuse(wire.CodeBadMessage, "no participant "+clip(msg.Target)+" in this room")
	case err != nil && msg.Action == signal.ActionEndRoom:
		c.log.Warn("room ended with errors", "err", err) // the room is gone; a leftover resource is the sweep's
	case err != nil:
		c.log.Warn("moderation failed", "action", msg.Action, "err", err)
		c.ctiRefuse(wire.CodeUnavailable, "the room could not be changed; try again")
	}
}

// ctiTimeout bounds how long a call waits for another call's goroutine (an attended transfer's handoff).
var ctiTimeout = 5 * time.Second // a var for tests
