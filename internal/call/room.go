package call

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Rooms. A browser joins with a token's room claim, a one-time ticket or (agents) a number; a phone arrives on a
// room number or a DID mapped to a room. The room's backend (internal/rooms) owns the mix: this call's legs are
// the member's channel (the browser's externalMedia channel, or the phone's own) and its membership.

// RoomPeer is a browser that has joined a room, handed to Options.RoomPeers (video between browsers hooks in
// here). Send reaches that browser's signalling session for this call_id.
type RoomPeer struct {
	Room, Participant, User, CallID string
	Peer                            *media.Peer
	Send                            func(signal.Message)
	// End asks the call to end (e.g. its browser stopped answering renegotiation offers); it does not block.
	End func(reason string)
}

// RoomPeerAnswers is implemented by a RoomPeerHook that sends the browser server-initiated offers ("offer"):
// the browser's "answer" messages on the room call go to it, in order, from the call goroutine.
type RoomPeerAnswers interface {
	PeerAnswer(ctx context.Context, p RoomPeer, sdp string) error
}

// RoomPeerHook is told about every browser peer in a room once its audio is in the room's mix. The returned
// function, if any, is called from the same call goroutine when the browser leaves, before the peer closes.
type RoomPeerHook interface {
	PeerJoined(ctx context.Context, p RoomPeer) (left func())
}

// roomState is a room member's hooks, owned by the call goroutine.
type roomState struct {
	peer     RoomPeer
	left     func()
	onAnswer func(sdp string)
}

// joinRoom admits a browser's join: a duplicate call_id, an unavailable server and the token's limits refuse it
// before anything else. Admission proper (room claim, ticket, number lookup) may wait on Redis, so it runs on
// the call goroutine.
func (m *Manager) joinRoom(s *signal.Session, msg signal.Message) {
	if m.lookup(s.ID(), msg.CallID) != nil {
		m.observeRefused(KindRoom, wire.CodeDuplicateCall, cdr.Record{User: s.User(), From: s.User(), To: msg.Room})
		_ = s.Send(s.Context(), signal.ErrorMessage(msg.CallID, wire.CodeDuplicateCall, "call_id already used on this connection"))
		return
	}
	if m.o.Rooms == nil {
		m.refuseBrowser(KindRoom, s, msg, refuse(wire.CodeUnavailable, "rooms are not enabled on this server"))
		return
	}
	if why := m.unavailable(); why != "" {
		m.refuseBrowser(KindRoom, s, msg, refuse(wire.CodeUnavailable, "%s", why))
		return
	}
	// A join holds media and an Asterisk channel like a call: it counts against the same per-token limits.
	lease, err := m.o.PSTN.TokenLimits.Start("token:"+s.User(), false)
	if err != nil {
		m.refuseBrowser(KindRoom, s, msg, limitRefusal(err), "room", msg.Room)
		return
	}
	release, ok := m.setupSlot()
	if !ok {
		lease.End(0)
		m.refuseBrowser(KindRoom, s, msg, refuse(wire.CodeUnavailable, "the server is setting up too many calls at once; try again in a moment"))
		return
	}
	c := m.newCall(KindRoom, s.Logger().With("client_call", msg.CallID))
	c.browser = newBrowserLeg(s, msg.CallID)
	c.lease = lease
	c.obs.rec.From, c.obs.rec.User, c.obs.rec.To = s.User(), s.User(), msg.Room
	m.bind(s, msg.CallID, c)
	if err := m.start(c, func() error {
		defer release()
		return c.setupRoom(msg)
	}); err != nil {
		release()
		lease.End(0)
		m.unbind(s, msg.CallID)
		m.refuseBrowser(KindRoom, s, msg, refuse(wire.CodeUnavailable, "the server is shutting down; try again in a moment"))
	}
}

func (c *Call) setupRoom(msg signal.Message) error {
	b := c.browser
	s := b.s
	cl := browserClaims(s)
	ad := rooms.Admitter{Rooms: c.m.o.Rooms, Store: c.m.o.Numbers, Tickets: c.m.o.Tickets, Elsewhere: c.m.roomElsewhere}.
		Admit(c.ctx, rooms.Grant{User: s.User(), Room: cl.Room, Role: cl.Role}, rooms.JoinRequest{Room: msg.Room, Number: msg.Number, Ticket: msg.Ticket})
	if ad.Redirect != "" {
		return c.redirectJoin(ad) // the room is held by another node of the cluster (cluster.go)
	}
	if !ad.Accept {
		c.log.Warn("security: room join refused", "user", s.User(), "code", ad.Code, "reason", ad.Reason,
			"room", msg.Room, "number", msg.Number, "ticket", msg.Ticket != "", "detail", ad.Detail)
		return &ending{cause: refusalCause(ad.Code), code: ad.Code, text: ad.Reason}
	}
	c.log = c.log.With("room", ad.Room, "via", ad.Via, "role", ad.Role)
	c.cti.role = ad.Role // what the room lets this browser do (moderate, be supervised; cti.go)
	c.obs.rec.Room, c.obs.rec.To = ad.Room, ad.Room
	if err := b.acquirePort(c); err != nil {
		return err
	}
	answer, err := c.answerBrowser(msg.SDP, true) // rooms mix in wideband: Opus for browsers that offer it
	if err != nil {
		return err
	}
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := b.attach(ctx, c, identity{}); err != nil {
		return err
	}
	setTalkDetect(ctx, c.a, b.emID, c.log)
	name := s.Display()
	if cl.Name != "" {
		name = cl.Name
	}
	mem, err := c.m.o.Rooms.Join(ctx, ad.Room, rooms.JoinSpec{
		Kind: rooms.KindBrowser, Name: name, CallerID: s.User(), Role: ad.Role,
		Channel: b.emID, Format: b.peer.Law().Format(), Log: c.log,
		Kick: func(reason string) { c.post(inbound{kind: inKicked, reason: reason}) },
	})
	if err != nil {
		if errors.Is(err, rooms.ErrNotFound) || errors.Is(err, rooms.ErrEnded) {
			return &ending{cause: wire.CauseUnallocatedNumber, code: wire.CodeUnknownRoom, text: "room " + ad.Room + " does not exist or has ended"}
		}
		c.log.Error("join room failed", "err", err)
		text := "could not put you in the room; try again"
		if errors.Is(err, errSetupTimeout) {
			text = "Asterisk did not answer in time (overloaded?); try again"
		}
		return &ending{cause: wire.CauseTemporaryFailure, code: wire.CodeUnavailable, text: text}
	}
	c.member = mem
	c.answered = time.Now()
	c.log = c.log.With("participant", mem.ID())
	c.publishLive()
	b.send(c, signal.Message{Type: signal.TypeAnswer, SDP: answer})
	c.obs.rec.AnswerSentAt = time.Now()
	b.send(c, signal.Message{Type: signal.TypeJoined, Room: ad.Room,
		Participant: wireParticipant(participantOf(mem), mem.ID()), Participants: wireParticipants(mem.Participants(), mem.ID())})
	c.armNoMedia()
	if h := c.m.o.RoomPeers; h != nil {
		clientID := b.clientID
		rp := RoomPeer{Room: ad.Room, Participant: mem.ID(), User: s.User(), CallID: clientID, Peer: b.peer,
			Send: func(m signal.Message) { m.CallID = clientID; b.sendAsync(m) },
			End:  func(reason string) { c.post(inbound{kind: inKicked, reason: reason}) }}
		c.room.peer = rp
		c.room.left = h.PeerJoined(c.ctx, rp)
		if a, ok := h.(RoomPeerAnswers); ok {
			c.room.onAnswer = func(sdp string) {
				if err := a.PeerAnswer(c.ctx, rp, sdp); err != nil {
					b.send(c, signal.ErrorMessage("", wire.CodeBadMessage, err.Error()))
				}
			}
		}
	}
	return nil
}

// onRenegotiationAnswer hands the browser's answer to a server-initiated offer (video) to the room hook.
func (c *Call) onRenegotiationAnswer(sdp string) {
	if c.room.onAnswer == nil {
		c.browser.send(c, signal.ErrorMessage("", wire.CodeBadMessage, "no offer is outstanding on this call"))
		return
	}
	c.room.onAnswer(sdp)
}

// onRoomEvent passes room events to the member's browser; phones have no use for them.
func (c *Call) onRoomEvent(ev rooms.Event) {
	if c.kind == KindRoom && c.browser != nil {
		c.browser.send(c, roomMessage("", ev, c.member.ID()))
	}
}

// leaveRoom takes the member out of its room (and its video), once.
func (c *Call) leaveRoom(ctx context.Context, cause string) {
	if c.room.left != nil {
		c.room.left()
		c.room.left = nil
	}
	if c.member != nil {
		c.member.Leave(ctx, cause)
		c.member = nil
	}
}

// ---- phones in rooms ----

// TreatmentContext is the dialplan context (asterisk-configs/extensions.conf.tmpl) a refused phone call is sent
// to: an announcement when the sound is installed, else congestion tone, then a hangup with a cause.
const TreatmentContext = "patchbay-treatment"

// Treatment extensions in TreatmentContext.
const (
	TreatmentUnallocated = "unallocated" // unmapped or expired number, ended room: cause 1
	TreatmentUnavailable = "unavailable" // number store down, room join failed: cause 34 (SIP 503)
)

// treatError sends a phone to a treatment instead of ending with a plain hangup.
type treatError struct{ treatment, reason string }

func (e *treatError) Error() string { return e.treatment + ": " + e.reason }

// phoneToRoom takes a phone the dialplan sent to a room ("room,<number>" from _8XXX, or a DID).
func (m *Manager) phoneToRoom(ctx context.Context, ch ari.Channel, number string, log *slog.Logger) {
	if m.unavailable() != "" {
		m.continueAsync(ctx, ch.ID, ari.ContinueOptions{Context: TreatmentContext, Extension: TreatmentUnavailable, Priority: 1}, "congestion", log)
		return
	}
	c := m.newCall(KindPhoneRoom, m.log.With("channel", ch.ID, "from", ch.Caller.Number, "number", number))
	c.phone = c.adoptLater(ch)
	c.obs.rec.From, c.obs.rec.To = ch.Caller.Number, number
	if err := m.start(c, func() error { return c.setupPhoneRoom(ch, number) }); err != nil {
		m.hangupAsync(ctx, ch.ID, "congestion", log)
	}
}

func (c *Call) setupPhoneRoom(ch ari.Channel, number string) error {
	c.claim(ch.ID)
	lctx, lcancel := context.WithTimeout(c.ctx, 3*time.Second)
	loc := c.roomLocator(lctx)                                                // this node's rooms and, in a cluster, the other nodes' (cluster.go)
	rt, byTicket := c.ticketRoute(lctx, loc.exists, number, ch.Caller.Number) // tickets.go
	if !byTicket {
		rt = routePhone(lctx, c.m.o.Numbers, loc.exists, number, ch.Caller.Number)
	}
	lcancel()
	if rt.room == "" {
		if loc.failed != nil && rt.treatment == TreatmentUnallocated {
			rt.treatment, rt.reason = TreatmentUnavailable, "the cluster's rooms directory is unavailable: "+loc.failed.Error()
		}
		c.treat(rt.treatment, rt.reason)
		return nil
	}
	c.log = c.log.With("room", rt.room, "mapped", rt.mapped)
	c.obs.rec.Room = rt.room
	if n, elsewhere := loc.nodes[rt.room]; elsewhere {
		c.forwardToRoomNode(ch, rt.room, n)
		return nil
	}
	return c.joinPhone(ch, rt.room)
}

// phoneToRoomHere takes a phone another node sent over the inter-node trunk to a room held here (Stasis
// "peer-room"): no number lookup, the room is named.
func (m *Manager) phoneToRoomHere(ctx context.Context, ch ari.Channel, room string, log *slog.Logger) {
	if m.unavailable() != "" {
		m.continueAsync(ctx, ch.ID, ari.ContinueOptions{Context: TreatmentContext, Extension: TreatmentUnavailable, Priority: 1}, "congestion", log)
		return
	}
	c := m.newCall(KindPhoneRoom, m.log.With("channel", ch.ID, "from", ch.Caller.Number, "room", room, "via", "cluster"))
	c.phone = c.adoptLater(ch)
	c.obs.rec.From, c.obs.rec.To, c.obs.rec.Room = ch.Caller.Number, room, room
	if err := m.start(c, func() error {
		c.claim(ch.ID)
		if m.o.Rooms == nil || !m.o.Rooms.Exists(room) {
			c.treat(TreatmentUnallocated, "another node sent a phone to room "+clip(room)+", which is not held here (ended or moved)")
			return nil
		}
		return c.joinPhone(ch, room)
	}); err != nil {
		m.hangupAsync(ctx, ch.ID, "congestion", log)
	}
}

// joinPhone answers the phone and puts it in room, held here.
func (c *Call) joinPhone(ch ari.Channel, room string) error {
	format := "ulaw"
	ctx, cancel := c.setupCtx()
	defer cancel()
	if v, err := c.nativeFormat(ctx, ch.ID); err == nil && strings.Contains(v, "alaw") {
		format = "alaw"
	}
	if err := c.a.Channel(ch.ID).Answer(ctx); err != nil {
		return err
	}
	c.phone.up = true
	setTalkDetect(ctx, c.a, ch.ID, c.log)
	mem, err := c.m.o.Rooms.Join(ctx, room, rooms.JoinSpec{
		Kind: rooms.KindPhone, Name: ch.Caller.Name, CallerID: ch.Caller.Number, Role: rooms.RoleParticipant,
		Channel: ch.ID, Format: format, Log: c.log,
		Kick: func(reason string) { c.post(inbound{kind: inKicked, reason: reason}) },
	})
	if err != nil {
		c.log.Error("phone could not join the room", "err", err)
		if errors.Is(err, rooms.ErrNotFound) || errors.Is(err, rooms.ErrEnded) {
			c.treat(TreatmentUnallocated, "room ended while the call was set up")
		} else {
			c.treat(TreatmentUnavailable, "joining the room failed: "+err.Error())
		}
		return nil
	}
	c.member = mem
	c.answered = time.Now()
	c.log = c.log.With("participant", mem.ID())
	return nil
}

// treat sends the phone to a treatment, so it hears why before the hangup and never silence; the call then ends
// without hanging the phone up (the dialplan does, with the treatment's cause). If even that fails the phone is
// hung up with the treatment's cause.
func (c *Call) treat(treatment, reason string) {
	lvl := slog.LevelWarn
	if treatment == TreatmentUnavailable {
		lvl = slog.LevelError
	}
	c.log.Log(c.ctx, lvl, "phone call refused: playing treatment", "treatment", treatment, "reason", reason)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), c.m.o.CloseTimeout)
	defer cancel()
	err := c.a.Channel(c.phone.id).Continue(ctx, ari.ContinueOptions{Context: TreatmentContext, Extension: treatment, Priority: 1})
	if err == nil || ari.IsNotFound(err) {
		c.phone.gone = true // the dialplan has it now
		c.endWith(wire.CauseUnallocatedNumber)
		return
	}
	c.log.Warn("send phone to treatment: hanging up instead", "err", err)
	cause := wire.CauseUnallocatedNumber
	if treatment == TreatmentUnavailable {
		cause = wire.CauseCongestion
	}
	c.endWith(cause)
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

// setTalkDetect turns on Asterisk's talk detection on a channel (ChannelTalkingStarted/Finished events); rooms
// work without it, so a failure is only logged.
func setTalkDetect(ctx context.Context, a *ari.Client, channelID string, log *slog.Logger) {
	if err := a.Channel(channelID).SetVariable(ctx, "TALK_DETECT(set)", ""); err != nil {
		log.Debug("talk detection unavailable (func_talkdetect loaded?)", "channel", channelID, "err", err)
	}
}

func participantOf(m *rooms.Member) rooms.Participant {
	for _, p := range m.Participants() {
		if p.ID == m.ID() {
			return p
		}
	}
	return rooms.Participant{ID: m.ID()}
}

func wireParticipant(p rooms.Participant, self string) *signal.Participant {
	return &signal.Participant{ID: p.ID, Kind: p.Kind, Name: p.Name, CallerID: p.CallerID, Role: p.Role,
		Muted: p.Muted, Talking: p.Talking, Sharing: p.Sharing, You: p.ID == self}
}

func wireParticipants(ps []rooms.Participant, self string) []signal.Participant {
	out := make([]signal.Participant, 0, len(ps))
	for _, p := range ps {
		out = append(out, *wireParticipant(p, self))
	}
	return out
}

func roomMessage(callID string, ev rooms.Event, self string) signal.Message {
	m := signal.Message{Type: signal.TypeRoom, CallID: callID, Room: ev.Room}
	switch ev.Type {
	case rooms.EventJoined:
		m.Event = signal.RoomEventJoined
	case rooms.EventLeft:
		m.Event = signal.RoomEventLeft
	case rooms.EventUpdated:
		m.Event = signal.RoomEventUpdated
	default:
		m.Event = signal.RoomEventEnded
		return m
	}
	m.Participant = wireParticipant(ev.Participant, self)
	return m
}
