package signal

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/patchbay/patchbay/wire"
)

// Limits on single fields. The whole frame is capped by ServerOptions.MaxMessageBytes.
const (
	MaxCallIDLen     = 64
	MaxToLen         = 64
	MaxDigits        = 32
	MaxSDPBytes      = 32 << 10 // an audio offer from Chrome is 3–6 KiB
	MaxTokenBytes    = 8 << 10  // as auth accepts
	MaxCandidateLen  = 1024
	MaxSDPMidLen     = 64
	MaxUfragLen      = 256
	DefaultFrameSize = 64 << 10
)

// Decode parses one browser→server frame and validates it for its type. It
// returns a copy holding only the fields that type defines, so the Handler never
// sees fields a client slipped in (a "from" on a "call", say). Errors are *Error
// with a stable code; CallID is set on the error when the frame had a valid one.
func Decode(data []byte) (Message, error) {
	var raw Message
	if err := json.Unmarshal(data, &raw); err != nil {
		return Message{}, errorf(wire.CodeBadMessage, "", "frame is not a JSON message object: %v", err)
	}
	m, err := Validate(raw)
	var pe *Error
	if errors.As(err, &pe) {
		pe.msgType, pe.sdp = raw.Type, raw.SDP != ""
	}
	return m, err
}

// Validate checks a browser→server message and returns its sanitized copy.
func Validate(m Message) (Message, error) {
	callID := ""
	if validCallID(m.CallID) {
		callID = m.CallID
	}
	needCallID := func() error {
		if m.CallID == "" {
			return errorf(wire.CodeBadMessage, "", "%s needs a call_id", m.Type)
		}
		if callID == "" {
			return errorf(wire.CodeBadMessage, "", "call_id must be 1-%d characters of A-Z a-z 0-9 _ -", MaxCallIDLen)
		}
		return nil
	}
	switch m.Type {
	case TypeAuth:
		if m.Token == "" {
			return Message{}, errorf(wire.CodeUnauthorized, "", "auth needs a token")
		}
		if len(m.Token) > MaxTokenBytes {
			return Message{}, errorf(wire.CodeUnauthorized, "", "token longer than %d bytes", MaxTokenBytes)
		}
		if len(m.Resume) > MaxResumeLen {
			return Message{}, errorf(wire.CodeUnauthorized, "", "resume token longer than %d bytes", MaxResumeLen)
		}
		return Message{Type: TypeAuth, Token: m.Token, Resume: m.Resume}, nil

	case TypePing:
		return Message{Type: TypePing}, nil

	case TypeCall:
		if err := needCallID(); err != nil {
			return Message{}, err
		}
		if err := checkNumber(m.To); err != nil {
			err.CallID = callID
			return Message{}, err
		}
		if m.CallerID != "" && !validE164(m.CallerID) {
			return Message{}, errorf(wire.CodeBadMessage, callID, "caller_id must be E.164: '+' and 7-15 digits, e.g. +442071230001")
		}
		if err := checkSDP(m.SDP, "offer"); err != nil {
			err.CallID = callID
			return Message{}, err
		}
		return Message{Type: TypeCall, CallID: callID, To: m.To, CallerID: m.CallerID, SDP: m.SDP}, nil

	case TypeAnswer:
		if err := needCallID(); err != nil {
			return Message{}, err
		}
		if err := checkSDP(m.SDP, "answer"); err != nil {
			err.CallID = callID
			return Message{}, err
		}
		return Message{Type: TypeAnswer, CallID: callID, SDP: m.SDP}, nil

	case TypeOffer: // an ICE restart (new ufrag/pwd) on a live call; answered with "answer"
		if err := needCallID(); err != nil {
			return Message{}, err
		}
		if err := checkSDP(m.SDP, "offer"); err != nil {
			err.CallID = callID
			return Message{}, err
		}
		return Message{Type: TypeOffer, CallID: callID, SDP: m.SDP}, nil

	case TypeCandidate:
		if err := needCallID(); err != nil {
			return Message{}, err
		}
		c, err := checkCandidate(m.Candidate)
		if err != nil {
			err.CallID = callID
			return Message{}, err
		}
		return Message{Type: TypeCandidate, CallID: callID, Candidate: c}, nil

	case TypeDTMF:
		if err := needCallID(); err != nil {
			return Message{}, err
		}
		if !validDigits(m.Digits) {
			return Message{}, errorf(wire.CodeBadMessage, callID, "digits must be 1-%d of 0-9 * # A-D", MaxDigits)
		}
		return Message{Type: TypeDTMF, CallID: callID, Digits: m.Digits}, nil

	case TypeJoin:
		if err := needCallID(); err != nil {
			return Message{}, err
		}
		if err := checkJoin(m); err != nil {
			err.CallID = callID
			return Message{}, err
		}
		if err := checkSDP(m.SDP, "offer"); err != nil {
			err.CallID = callID
			return Message{}, err
		}
		return Message{Type: TypeJoin, CallID: callID, Room: m.Room, Number: m.Number, Ticket: m.Ticket, SDP: m.SDP}, nil

	case TypeShare:
		if err := needCallID(); err != nil {
			return Message{}, err
		}
		if m.Action != ActionStart && m.Action != ActionStop {
			return Message{}, errorf(wire.CodeBadMessage, callID, "share needs action \"start\" or \"stop\"")
		}
		return Message{Type: TypeShare, CallID: callID, Action: m.Action}, nil

	case TypeReject, TypeHangup:
		if err := needCallID(); err != nil {
			return Message{}, err
		}
		return Message{Type: m.Type, CallID: callID}, nil

	case "":
		return Message{}, errorf(wire.CodeBadMessage, callID, "message has no type")
	}
	if out, handled, err := validateCTI(m, callID, needCallID); handled {
		return out, err
	}
	switch m.Type {
	default:
		t := m.Type
		if len(t) > 32 || !utf8.ValidString(t) {
			t = "(unprintable)"
		}
		return Message{}, errorf(wire.CodeBadMessage, callID, "unknown message type %q", t)
	}
}

func validCallID(s string) bool {
	if len(s) == 0 || len(s) > MaxCallIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validE164 reports whether s is '+', a digit 1-9 and 6 to 14 more digits: the syntax of a caller_id. Whether
// the caller may present it is call control's decision.
func validE164(s string) bool {
	if len(s) < 8 || len(s) > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9' {
		return false
	}
	for i := 2; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ValidDigits reports whether s is a DTMF string this protocol carries.
func ValidDigits(s string) bool { return validDigits(s) }

func validDigits(s string) bool {
	if len(s) == 0 || len(s) > MaxDigits {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c == '*' || c == '#' || c >= 'A' && c <= 'D') {
			return false
		}
	}
	return true
}

const dialMeta = "&,|$(){}[];/\\\"'<>`^~"

// checkNumber only rejects what can never be a destination; the dialplan
// package decides what a valid string may become.
func checkNumber(to string) *Error {
	switch {
	case to == "":
		return errorf(wire.CodeInvalidNumber, "", "call needs a destination in \"to\"")
	case len(to) > MaxToLen:
		return errorf(wire.CodeInvalidNumber, "", "destination longer than %d bytes", MaxToLen)
	case !utf8.ValidString(to):
		return errorf(wire.CodeInvalidNumber, "", "destination is not valid UTF-8")
	}
	for _, r := range to {
		if unicode.IsSpace(r) || unicode.IsControl(r) || !unicode.IsPrint(r) {
			return errorf(wire.CodeInvalidNumber, "", "destination contains spaces or control characters")
		}
		// Dial-string and dialplan metacharacters never belong in a number,
		// name or SIP URI; refusing them here is defence in depth.
		if strings.ContainsRune(dialMeta, r) {
			return errorf(wire.CodeInvalidNumber, "", "destination contains %q", r)
		}
	}
	return nil
}

func checkSDP(sdp, what string) *Error {
	switch {
	case sdp == "":
		return errorf(wire.CodeBadMessage, "", "%s SDP missing", what)
	case len(sdp) > MaxSDPBytes:
		return errorf(wire.CodeBadMessage, "", "%s SDP longer than %d bytes", what, MaxSDPBytes)
	case !utf8.ValidString(sdp) || !strings.HasPrefix(sdp, "v=0"):
		return errorf(wire.CodeBadMessage, "", "%s is not an SDP session description", what)
	case !strings.Contains(sdp, "\nm=audio "):
		return errorf(wire.CodeUnsupportedMedia, "", "%s SDP has no audio section", what)
	}
	return nil
}

// checkCandidate accepts nil or an empty candidate string as "end of
// candidates" and returns nil for it.
func checkCandidate(c *ICECandidate) (*ICECandidate, *Error) {
	if c == nil || c.Candidate == "" {
		return nil, nil
	}
	if len(c.Candidate) > MaxCandidateLen || !utf8.ValidString(c.Candidate) {
		return nil, errorf(wire.CodeBadMessage, "", "candidate longer than %d bytes or not UTF-8", MaxCandidateLen)
	}
	if !strings.HasPrefix(c.Candidate, "candidate:") {
		return nil, errorf(wire.CodeBadMessage, "", "candidate must start with \"candidate:\"")
	}
	if c.SDPMid != nil && (len(*c.SDPMid) > MaxSDPMidLen || !utf8.ValidString(*c.SDPMid)) {
		return nil, errorf(wire.CodeBadMessage, "", "sdpMid longer than %d bytes", MaxSDPMidLen)
	}
	if c.UsernameFragment != nil && (len(*c.UsernameFragment) > MaxUfragLen || !utf8.ValidString(*c.UsernameFragment)) {
		return nil, errorf(wire.CodeBadMessage, "", "usernameFragment longer than %d bytes", MaxUfragLen)
	}
	cp := *c
	return &cp, nil
}

// MaxTicketLen bounds a join ticket.
const MaxTicketLen = 512

// checkJoin wants exactly one of room, number and ticket, each well formed. Whether the token may use it is the
// call layer's decision.
func checkJoin(m Message) *Error {
	n := 0
	for _, f := range []string{m.Room, m.Number, m.Ticket} {
		if f != "" {
			n++
		}
	}
	if n != 1 {
		return errorf(wire.CodeBadMessage, "", "join needs exactly one of room, number or ticket")
	}
	switch {
	case m.Room != "":
		if len(m.Room) > 64 || !validCallID(m.Room) {
			return errorf(wire.CodeBadMessage, "", "room must be 1-64 characters of A-Z a-z 0-9 _ -")
		}
	case m.Number != "":
		return checkNumber(m.Number)
	default:
		if len(m.Ticket) > MaxTicketLen {
			return errorf(wire.CodeBadMessage, "", "ticket longer than %d bytes", MaxTicketLen)
		}
		for i := 0; i < len(m.Ticket); i++ {
			if c := m.Ticket[i]; c <= ' ' || c >= 0x7f {
				return errorf(wire.CodeBadMessage, "", "ticket must be printable ASCII without spaces")
			}
		}
	}
	return nil
}
