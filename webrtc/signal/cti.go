package signal

import (
	"time"

	"github.com/patchbay/patchbay/wire"
)

// Contact-center messages: hold and resume, transfer, recording, supervisor listen/whisper/barge, room moderation
// and the agent console's view. See docs/signalling.md ("Contact center").
const (
	TypeHold        = "hold"        // browser→server: put the far party on hold (it hears music on hold)
	TypeResume      = "resume"      // browser→server: take it off hold
	TypeHeld        = "held"        // server→browser: the call is on hold; By says who held it
	TypeResumed     = "resumed"     // server→browser: the call is off hold again
	TypeTransfer    = "transfer"    // browser→server: hand the far party to To (blind) or to your call Target (attended)
	TypeTransferred = "transferred" // server→browser: the far party was handed on (By "you") or handed you on (By "far")
	TypeRecord      = "record"      // browser→server: Action "start" or "stop" recording the call
	TypeRecording   = "recording"   // server→browser: Event "started" or "stopped"; every party of the call gets it
	TypeSupervise   = "supervise"   // browser→server: listen, whisper or barge into call Target (supervisors)
	TypeConsole     = "console"     // both ways: ask for, and receive, the agent console's queue and live calls
	TypeModerate    = "moderate"    // browser→server: a room moderator mutes, unmutes or kicks Target, or ends the room
)

// Who a held, resumed or transferred message is about.
const (
	ByYou = "you" // this browser asked for it
	ByFar = "far" // the other party did it (a phone's hold key, a phone's transfer)
)

// Recording events carried in Message.Event of a "recording" message, and actions of a "record" message.
const (
	RecordingStarted = "started"
	RecordingStopped = "stopped"
	ActionStart      = "start"
	ActionStop       = "stop"
)

// Supervision modes (Message.Mode of "supervise").
const (
	ModeListen  = "listen"  // hear the agent and the customer; nobody hears you
	ModeWhisper = "whisper" // the agent hears you too; the customer does not
	ModeBarge   = "barge"   // everyone in the call hears you
)

// Moderation actions (Message.Action of "moderate").
const (
	ActionMute    = "mute"
	ActionUnmute  = "unmute"
	ActionKick    = "kick"
	ActionEndRoom = "end"
	// ActionStopShare ends participant Target's screen share.
	ActionStopShare = "stop_share"
)

// QueueEntry is a customer waiting in a room mapped to a number: nobody with the agent role has joined it yet.
type QueueEntry struct {
	Room     string    `json:"room"`
	Number   string    `json:"number"`              // the mapped number an agent joins by
	CallerID string    `json:"caller_id,omitempty"` // the waiting customer's caller ID (a phone) or user (a browser)
	Name     string    `json:"name,omitempty"`
	Kind     string    `json:"kind,omitempty"` // "phone" or "browser"
	Since    time.Time `json:"since"`          // when the first customer joined
	WaitS    float64   `json:"wait_s"`         // seconds waited so far
}

// LiveCall is a call in progress as a supervisor's console sees it.
type LiveCall struct {
	ID        string    `json:"id"`   // the server's call ID: the Target of "supervise"
	Kind      string    `json:"kind"` // browser_out, phone_in, room, ...
	User      string    `json:"user,omitempty"`
	Role      string    `json:"role,omitempty"`
	From      string    `json:"from,omitempty"`
	To        string    `json:"to,omitempty"`
	Room      string    `json:"room,omitempty"`
	Started   time.Time `json:"started"`
	Answered  time.Time `json:"answered,omitzero"`
	Held      bool      `json:"held,omitempty"`
	Recording bool      `json:"recording,omitempty"`
}

// HeldMessage builds a "held" (held true) or "resumed" message.
func HeldMessage(callID string, held bool, by string) Message {
	t := TypeResumed
	if held {
		t = TypeHeld
	}
	return Message{Type: t, CallID: callID, By: by}
}

func validMode(m string) bool { return m == ModeListen || m == ModeWhisper || m == ModeBarge }

// validateCTI checks the contact-center message types; handled reports whether m.Type is one of them.
func validateCTI(m Message, callID string, needCallID func() error) (out Message, handled bool, err error) {
	switch m.Type {
	case TypeHold, TypeResume:
		if err := needCallID(); err != nil {
			return Message{}, true, err
		}
		return Message{Type: m.Type, CallID: callID}, true, nil

	case TypeTransfer:
		if err := needCallID(); err != nil {
			return Message{}, true, err
		}
		if (m.To == "") == (m.Target == "") {
			return Message{}, true, errorf(wire.CodeBadMessage, callID, "transfer needs exactly one of to (blind) or target (your consult call's call_id)")
		}
		if m.Target != "" {
			if !validCallID(m.Target) || m.Target == callID {
				return Message{}, true, errorf(wire.CodeBadMessage, callID, "target must be the call_id of another of your calls")
			}
			if m.CallerID != "" {
				return Message{}, true, errorf(wire.CodeBadMessage, callID, "caller_id applies to a blind transfer to an outside number only")
			}
			return Message{Type: TypeTransfer, CallID: callID, Target: m.Target}, true, nil
		}
		if err := checkNumber(m.To); err != nil {
			err.CallID = callID
			return Message{}, true, err
		}
		if m.CallerID != "" && !validE164(m.CallerID) {
			return Message{}, true, errorf(wire.CodeBadMessage, callID, "caller_id must be E.164: '+' and 7-15 digits, e.g. +442071230001")
		}
		return Message{Type: TypeTransfer, CallID: callID, To: m.To, CallerID: m.CallerID}, true, nil

	case TypeRecord:
		if err := needCallID(); err != nil {
			return Message{}, true, err
		}
		if m.Action != ActionStart && m.Action != ActionStop {
			return Message{}, true, errorf(wire.CodeBadMessage, callID, "record needs action \"start\" or \"stop\"")
		}
		return Message{Type: TypeRecord, CallID: callID, Action: m.Action}, true, nil

	case TypeSupervise:
		if err := needCallID(); err != nil {
			return Message{}, true, err
		}
		if !validMode(m.Mode) {
			return Message{}, true, errorf(wire.CodeBadMessage, callID, "mode must be listen, whisper or barge")
		}
		if m.SDP == "" { // a mode change on a supervision already up
			if m.Target != "" {
				return Message{}, true, errorf(wire.CodeBadMessage, callID, "a new supervision needs an sdp offer; a mode change needs no target")
			}
			return Message{Type: TypeSupervise, CallID: callID, Mode: m.Mode}, true, nil
		}
		if !validCallID(m.Target) {
			return Message{}, true, errorf(wire.CodeBadMessage, callID, "target must be the id of a live call (from a console message)")
		}
		if err := checkSDP(m.SDP, "offer"); err != nil {
			err.CallID = callID
			return Message{}, true, err
		}
		return Message{Type: TypeSupervise, CallID: callID, Target: m.Target, Mode: m.Mode, SDP: m.SDP}, true, nil

	case TypeConsole:
		return Message{Type: TypeConsole}, true, nil

	case TypeModerate:
		if err := needCallID(); err != nil {
			return Message{}, true, err
		}
		switch m.Action {
		case ActionEndRoom:
			return Message{Type: TypeModerate, CallID: callID, Action: m.Action}, true, nil
		case ActionMute, ActionUnmute, ActionKick, ActionStopShare:
			if !validCallID(m.Target) {
				return Message{}, true, errorf(wire.CodeBadMessage, callID, "%s needs target: a participant id", m.Action)
			}
			return Message{Type: TypeModerate, CallID: callID, Action: m.Action, Target: m.Target}, true, nil
		}
		return Message{}, true, errorf(wire.CodeBadMessage, callID, "moderate needs action mute, unmute, kick, stop_share or end")
	}
	return Message{}, false, nil
}
