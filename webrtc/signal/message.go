// Package signal is Patchbay's browser signalling: the JSON protocol spoken over
// one WebSocket per browser tab (/ws), the server that authenticates and polices
// those connections, and a Go client for tests and the synthetic caller.
//
// The call logic is not here: validated messages from authenticated sessions are
// handed to a Handler (the per-call coordinator), which answers through
// (*Session).Send. See docs/signalling.md for the wire contract.
package signal

import (
	"encoding/json"
	"fmt"

	"github.com/patchbay/patchbay/wire"
)

// Message types. Some names are used in both directions with different meaning
// ("answer", "candidate", "dtmf", "hangup"); see docs/signalling.md.
const (
	TypeAuth      = "auth"      // browser→server, must be first
	TypeAuthed    = "authed"    // server→browser
	TypeCall      = "call"      // browser→server: place a call with an SDP offer
	TypeCandidate = "candidate" // both ways: trickle ICE
	TypeAnswer    = "answer"    // both ways: SDP answer
	TypeReject    = "reject"    // browser→server: decline an incoming call
	TypeDTMF      = "dtmf"      // both ways
	TypeHangup    = "hangup"    // both ways
	TypePing      = "ping"      // browser→server
	TypePong      = "pong"      // server→browser
	TypeRinging   = "ringing"   // server→browser
	TypeAnswered  = "answered"  // server→browser: far end picked up
	TypeIncoming  = "incoming"  // server→browser: a call for this user, with an SDP offer
	TypeError     = "error"     // server→browser
	TypeJoin      = "join"      // browser→server: join a room's audio with an SDP offer
	TypeJoined    = "joined"    // server→browser: in the room; carries the participants
	TypeRoom      = "room"      // server→browser: a room event (participant joined, left, updated; room ended)
	TypeQuality   = "quality"   // server→browser: a media quality issue on a call (e.g. one-way audio)
	// TypeRefresh (server→browser) carries fresh TURN credentials and a fresh resume token before the old ones
	// expire: the page uses them for its next peer connections, ICE restarts and reconnects.
	TypeRefresh  = "refresh"
	TypeRedirect = "redirect" // server→browser: the room joined is held by another node; join it at "url"
	// TypeShare (browser→server) starts or stops this browser's screen share in its room (Action ActionStart or
	// ActionStop): the screen goes on the second video section of its join offer. One sharer at a time.
	TypeShare = "share"
)

// Room event names carried in Message.Event of a "room" message.
const (
	RoomEventJoined  = "joined"
	RoomEventLeft    = "left"
	RoomEventUpdated = "updated" // muted, talking or sharing changed
	RoomEventEnded   = "ended"
)

// Participant is one member of a room as browsers see it.
type Participant struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"` // "browser" or "phone"
	Name     string `json:"name,omitempty"`
	CallerID string `json:"caller_id,omitempty"`
	Role     string `json:"role,omitempty"`
	Muted    bool   `json:"muted"`
	Talking  bool   `json:"talking"`
	Sharing  bool   `json:"sharing,omitempty"` // sharing its screen: forwarded as stream "screen-" + id
	You      bool   `json:"you,omitempty"`     // this participant is the receiving browser
}

// Message is the one object every frame carries. Which fields are meaningful
// depends on Type; Decode keeps only those.
type Message struct {
	Type   string `json:"type,omitempty"`
	CallID string `json:"call_id,omitempty"`
	Token  string `json:"token,omitempty"`
	To     string `json:"to,omitempty"`
	// CallerID, on a "call", asks for one of the token's caller_ids (E.164) for an outside call.
	CallerID   string        `json:"caller_id,omitempty"`
	From       string        `json:"from,omitempty"`
	FromName   string        `json:"from_name,omitempty"`
	SDP        string        `json:"sdp,omitempty"`
	Candidate  *ICECandidate `json:"candidate,omitempty"`
	Digits     string        `json:"digits,omitempty"`
	Cause      string        `json:"cause,omitempty"`
	Code       int           `json:"code,omitempty"`
	Error      string        `json:"error,omitempty"`
	Message    string        `json:"message,omitempty"`
	User       string        `json:"user,omitempty"`
	Display    string        `json:"display,omitempty"`
	Session    string        `json:"session,omitempty"`
	ICEServers []ICEServer   `json:"ice_servers,omitempty"` // always present in authed and refresh (see Encode)
	// Resume: auth carries the resume token of a dropped session in Resume; authed and refresh carry a fresh one in
	// ResumeToken and the grace in ResumeGrace (seconds); authed lists the calls given back in Resumed.
	Resume      string   `json:"resume,omitempty"`
	ResumeToken string   `json:"resume_token,omitempty"`
	ResumeGrace int      `json:"resume_grace,omitempty"`
	Resumed     []string `json:"resumed,omitempty"`
	// Final marks an error that ended its call (wire.EndsCall): a hangup follows.
	Final bool `json:"final,omitempty"`
	// Rooms ("join", "joined", "room").
	Room         string        `json:"room,omitempty"`
	Number       string        `json:"number,omitempty"`
	Ticket       string        `json:"ticket,omitempty"`
	Event        string        `json:"event,omitempty"`
	Participant  *Participant  `json:"participant,omitempty"`
	Participants []Participant `json:"participants,omitempty"`
	// Quality ("quality"): the issue (wire.QualityOneWayAudio, wire.QualityNoAudio) and the silent media
	// direction (wire.ToBrowser, wire.ToAsterisk, or "both").
	Issue     string `json:"issue,omitempty"`
	Direction string `json:"direction,omitempty"`
	// Contact center (cti.go): who held or transferred (ByYou, ByFar); the action of "record", "moderate" and "share";
	// the target of "transfer" (your other call), "supervise" (a live call's id) and "moderate" (a participant);
	// the supervision mode; the console's queue and live calls.
	By     string       `json:"by,omitempty"`
	Action string       `json:"action,omitempty"`
	Target string       `json:"target,omitempty"`
	Mode   string       `json:"mode,omitempty"`
	Queue  []QueueEntry `json:"queue,omitempty"`
	Calls  []LiveCall   `json:"calls,omitempty"`
	// URL ("redirect") is the signalling URL of the cluster node holding the room; a "redirect" may carry a fresh
	// one-time Ticket to join with there.
	URL string `json:"url,omitempty"`
}

// ICECandidate is the browser's RTCIceCandidateInit. Its fields match pion's
// webrtc.ICECandidateInit one for one, so the media layer converts with
// webrtc.ICECandidateInit(*m.Candidate) and no copying.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// ICEServer is the browser's RTCIceServer, sent in "authed" so the page builds
// its RTCPeerConnection with the servers Patchbay chose (e.g. short-lived TURN
// credentials).
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// String describes the message for logs without its token, SDP or candidate
// text, which are either secret or too long to be useful there.
func (m Message) String() string {
	s := "type=" + m.Type
	if m.CallID != "" {
		s += " call_id=" + m.CallID
	}
	if m.Error != "" {
		s += " error=" + m.Error
	}
	if m.Cause != "" {
		s += fmt.Sprintf(" cause=%s/%d", m.Cause, m.Code)
	}
	if m.Issue != "" {
		s += " issue=" + m.Issue + "/" + m.Direction
	}
	if m.SDP != "" {
		s += fmt.Sprintf(" sdp=%dB", len(m.SDP))
	}
	return s
}

// Err returns the error an "error" message carries, as *Error, or nil for any
// other type.
func (m Message) Err() error {
	if m.Type != TypeError {
		return nil
	}
	return &Error{Code: m.Error, Message: m.Message, CallID: m.CallID}
}

// ErrorMessage builds an "error" message. callID may be empty when the error
// is not about one call.
// An error about one call with a call-ending code (wire.EndsCall) is marked Final; whoever sends it sends a
// HangupMessage(callID, wire.CauseForCode(code)) after it.
func ErrorMessage(callID, code, text string) Message {
	return Message{Type: TypeError, CallID: callID, Error: code, Message: text, Final: callID != "" && wire.EndsCall(code)}
}

// HangupMessage builds a "hangup" message for the browser, filling in the
// Q.850 code of cause.
func HangupMessage(callID, cause string) Message {
	return Message{Type: TypeHangup, CallID: callID, Cause: cause, Code: wire.CauseCode(cause)}
}

// QualityMessage builds a "quality" message: issue is wire.QualityOneWayAudio or wire.QualityNoAudio, direction
// the media direction that is silent (wire.ToBrowser: the browser hears nothing; wire.ToAsterisk: the far end
// hears nothing; "both").
func QualityMessage(callID, issue, direction string) Message {
	return Message{Type: TypeQuality, CallID: callID, Issue: issue, Direction: direction}
}

// Encode marshals m for the wire.
// Encode marshals m for the wire. authed and refresh always carry ice_servers, an empty array when there are none.
func Encode(m Message) ([]byte, error) {
	var v any = m
	if m.Type == TypeAuthed || m.Type == TypeRefresh {
		type plain Message // no methods, same fields
		ice := m.ICEServers
		if ice == nil {
			ice = []ICEServer{}
		}
		v = struct {
			plain
			ICEServers []ICEServer `json:"ice_servers"` // shallower: wins over the embedded omitempty field
		}{plain(m), ice}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	return b, nil
}
