package call

import (
	"context"
	"errors"
	"time"

	pion "github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// kindKicked asks a room participant's call to end: kicked, or its room ended.
const kindKicked inboundKind = 100

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

// joinRoom starts a browser's join; admission (token room claim, ticket, number lookup) runs in the call's own
// goroutine because a number lookup or a ticket may wait on Redis.
func (m *Manager) joinRoom(s *signal.Session, msg signal.Message) {
	ctx := s.Context()
	fail := func(code, text string) { _ = s.Send(ctx, signal.ErrorMessage(msg.CallID, code, text)) }
	if m.o.Rooms == nil {
		fail(wire.CodeUnavailable, "rooms are not enabled on this server")
		return
	}
	runCtx := m.runCtx()
	if runCtx == nil || runCtx.Err() != nil {
		fail(wire.CodeUnavailable, "Patchbay is not connected to Asterisk or is shutting down; try again shortly")
		return
	}
	c := m.newCall(runCtx, s.Logger().With("session", s.ID(), "client_call", msg.CallID))
	c.browser, c.clientID = s, msg.CallID
	if !m.bind(s, msg.CallID, c) {
		fail(wire.CodeDuplicateCall, "call_id already used on this connection")
		return
	}
	if err := m.register(c); err != nil {
		m.unbind(s, msg.CallID)
		fail(wire.CodeUnavailable, err.Error())
		return
	}
	go c.runRoom(msg)
}

// runRoom owns a browser's room membership from admission to teardown.
func (c *Call) runRoom(msg signal.Message) {
	ctx, cancel := context.WithCancel(c.ctx)
	c.ctx = ctx
	defer func() {
		cancel()
		c.m.unbind(c.browser, c.clientID)
		c.m.unregister(c)
	}()
	s := c.browser
	g := rooms.Grant{User: s.User()}
	if cl := s.Claims(); cl != nil {
		g.Room, g.Role = cl.Room, cl.Role
	}
	ad := rooms.Admitter{Rooms: c.m.o.Rooms, Store: c.m.o.Numbers, Tickets: c.m.o.Tickets}.
		Admit(ctx, g, rooms.JoinRequest{Room: msg.Room, Number: msg.Number, Ticket: msg.Ticket})
	if !ad.Accept {
		c.log.Warn("security: room join refused", "user", s.User(), "code", ad.Code, "reason", ad.Reason,
			"room", msg.Room, "number", msg.Number, "ticket", msg.Ticket != "")
		c.send(s, signal.ErrorMessage(c.clientID, ad.Code, ad.Reason))
		return
	}
	c.log = c.log.With("room", ad.Room, "via", ad.Via, "role", ad.Role)
	a := c.m.o.ARI
	sub := a.Subscribe(ari.Filter{Name: "room-call-" + c.id, IDs: []string{c.emID}})
	defer sub.Close()

	peer, answer, err := c.m.o.Media.Answer(ctx, msg.SDP, media.PeerOptions{Logger: c.log})
	if err != nil {
		code := media.ErrorCode(err)
		if code == "" {
			code = wire.CodeBadMessage
		}
		c.send(s, signal.ErrorMessage(c.clientID, code, err.Error()))
		c.teardown("failure")
		return
	}
	c.peer = peer
	setupCtx, setupCancel := context.WithTimeout(ctx, 10*time.Second)
	err = c.attachExternalMedia(setupCtx)
	var mem *rooms.Member
	if err == nil {
		setTalkDetect(setupCtx, a, c.emID, c.log)
		name := s.Display()
		if cl := s.Claims(); cl != nil && cl.Name != "" {
			name = cl.Name
		}
		mem, err = c.m.o.Rooms.Join(setupCtx, ad.Room, rooms.JoinSpec{
			Kind: rooms.KindBrowser, Name: name, CallerID: s.User(), Role: ad.Role,
			Channel: c.emID, Format: peer.Law().Format(), Log: c.log,
			Kick: func(reason string) { c.post(inbound{kind: kindKicked, cause: reason}) },
		})
	}
	setupCancel()
	if err != nil {
		c.log.Error("join room failed", "err", err)
		code, text := wire.CodeUnavailable, "could not put you in the room; try again"
		if errors.Is(err, rooms.ErrNotFound) || errors.Is(err, rooms.ErrEnded) {
			code, text = wire.CodeUnknownRoom, "room "+ad.Room+" does not exist or has ended"
		}
		c.send(s, signal.ErrorMessage(c.clientID, code, text))
		c.send(s, signal.HangupMessage(c.clientID, wire.CauseTemporaryFailure))
		c.teardown("failure")
		return
	}
	c.log = c.log.With("participant", mem.ID())
	c.send(s, signal.Message{Type: signal.TypeAnswer, CallID: c.clientID, SDP: answer})
	c.send(s, signal.Message{Type: signal.TypeJoined, CallID: c.clientID, Room: ad.Room,
		Participant: wireParticipant(participantOf(mem), mem.ID()), Participants: wireParticipants(mem.Participants(), mem.ID())})
	var left func()
	var onAnswer func(sdp string)
	if h := c.m.o.RoomPeers; h != nil {
		rp := RoomPeer{Room: ad.Room, Participant: mem.ID(), User: s.User(), CallID: c.clientID, Peer: peer,
			Send: func(m signal.Message) { m.CallID = c.clientID; c.send(s, m) },
			End:  func(reason string) { c.post(inbound{kind: kindKicked, cause: reason}) }}
		left = h.PeerJoined(ctx, rp)
		if a, ok := h.(RoomPeerAnswers); ok {
			onAnswer = func(sdp string) {
				if err := a.PeerAnswer(ctx, rp, sdp); err != nil {
					c.send(s, signal.ErrorMessage(c.clientID, wire.CodeBadMessage, err.Error()))
				}
			}
		}
	}
	cause := c.roomLoop(sub, mem, onAnswer)
	if left != nil {
		left()
	}
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	mem.Leave(lctx, cause)
	lcancel()
	c.teardown(ariReason(cause))
}

func participantOf(m *rooms.Member) rooms.Participant {
	for _, p := range m.Participants() {
		if p.ID == m.ID() {
			return p
		}
	}
	return rooms.Participant{ID: m.ID()}
}

// roomLoop runs a browser's room membership until it hangs up, is kicked, the room ends or media fails.
func (c *Call) roomLoop(sub *ari.Subscription, mem *rooms.Member, onAnswer func(sdp string)) string {
	var maxDur <-chan time.Time
	if c.m.o.MaxDuration > 0 {
		t := time.NewTimer(c.m.o.MaxDuration)
		defer t.Stop()
		maxDur = t.C
	}
	s := c.browser
	for {
		select {
		case <-c.ctx.Done():
			c.send(s, signal.HangupMessage(c.clientID, wire.CauseNormalClearing))
			return wire.CauseNormalClearing
		case <-maxDur:
			c.log.Warn("security: room call reached the maximum duration", "max", c.m.o.MaxDuration)
			c.send(s, signal.HangupMessage(c.clientID, wire.CauseNormalClearing))
			return wire.CauseNormalClearing
		case <-c.peer.Done():
			c.log.Warn("browser media (ICE/DTLS) failed or closed")
			c.send(s, signal.HangupMessage(c.clientID, wire.CauseTemporaryFailure))
			return wire.CauseTemporaryFailure
		case ev := <-mem.Events():
			c.send(s, roomMessage(c.clientID, ev, mem.ID()))
		case in := <-c.inbox:
			switch in.kind {
			case kindShutdown:
				c.send(s, signal.HangupMessage(c.clientID, wire.CauseNormalClearing))
				return wire.CauseNormalClearing
			case kindKicked:
				c.log.Info("removed from the room", "reason", in.cause)
				c.send(s, signal.HangupMessage(c.clientID, wire.CauseNormalClearing))
				return wire.CauseNormalClearing
			case kindSessionGone:
				return wire.CauseNormalClearing
			case kindBrowser:
				switch in.msg.Type {
				case signal.TypeHangup:
					return wire.CauseNormalClearing
				case signal.TypeCandidate:
					if in.msg.Candidate != nil && in.msg.Candidate.Candidate != "" {
						if err := c.peer.AddICECandidate(pion.ICECandidateInit(*in.msg.Candidate)); err != nil {
							c.log.Debug("add browser candidate", "err", err)
						}
					}
				case signal.TypeAnswer: // to a server-initiated "offer" (video renegotiation)
					if onAnswer == nil {
						c.send(s, signal.ErrorMessage(c.clientID, wire.CodeBadMessage, "no offer is outstanding on this call"))
						continue
					}
					onAnswer(in.msg.SDP)
				}
			}
		case ev := <-sub.Events():
			switch e := ev.(type) {
			case *ari.ChannelTalkingStarted:
				mem.SetTalking(true)
			case *ari.ChannelTalkingFinished:
				mem.SetTalking(false)
			case *ari.ChannelDestroyed:
				if e.Channel.ID == c.emID {
					c.log.Warn("externalMedia channel destroyed under the room call")
					c.send(s, signal.HangupMessage(c.clientID, wire.CauseTemporaryFailure))
					return wire.CauseTemporaryFailure
				}
			case *ari.Reconciled:
				if goneAny(e, c.emID) {
					c.log.Warn("room call's channel vanished while the ARI socket was down")
					c.send(s, signal.HangupMessage(c.clientID, wire.CauseTemporaryFailure))
					return wire.CauseTemporaryFailure
				}
			}
		}
	}
}

// setTalkDetect turns on Asterisk's talk detection on a channel (ChannelTalkingStarted/Finished events); rooms
// work without it, so a failure is only logged.
func setTalkDetect(ctx context.Context, a *ari.Client, channelID string, log interface{ Debug(string, ...any) }) {
	if err := a.Channel(channelID).SetVariable(ctx, "TALK_DETECT(set)", ""); err != nil {
		log.Debug("talk detection unavailable (func_talkdetect loaded?)", "channel", channelID, "err", err)
	}
}

func wireParticipant(p rooms.Participant, self string) *signal.Participant {
	return &signal.Participant{ID: p.ID, Kind: p.Kind, Name: p.Name, CallerID: p.CallerID, Role: p.Role,
		Muted: p.Muted, Talking: p.Talking, You: p.ID == self}
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
