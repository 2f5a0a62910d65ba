package signal

import (
	"errors"
	"fmt"
)

// Stable error codes carried in the "error" field of an "error" message and as
// the reason of the WebSocket close frame. Browsers and tests branch on these;
// never rename one.
const (
	CodeBadMessage           = "bad_message"           // malformed JSON, unknown type, bad field
	CodeTooLarge             = "too_large"             // frame above the size limit; the connection closes
	CodeRateLimited          = "rate_limited"          // too many messages; sustained abuse closes
	CodeUnauthorized         = "unauthorized"          // no auth first, bad or forged token; closes
	CodeTokenExpired         = "token_expired"         // token past its exp, at auth or later; closes
	CodeForbiddenDestination = "forbidden_destination" // the token may not dial this number
	CodeInvalidNumber        = "invalid_number"        // "to" empty, too long or with bad characters
	CodeUnknownCall          = "unknown_call"          // call_id not known on this connection
	CodeDuplicateCall        = "duplicate_call"        // call_id already used on this connection
	CodeUnsupportedMedia     = "unsupported_media"     // SDP without a codec Patchbay can carry
	CodeNoAudio              = "no_audio"              // media never flowed
	CodeUnavailable          = "unavailable"           // Asterisk or Patchbay unavailable, shutting down, overloaded
	CodeInternal             = "internal"              // a bug or unexpected failure on the server
)

// Codes lists every stable error code, for docs and tests.
var Codes = []string{
	CodeBadMessage, CodeTooLarge, CodeRateLimited, CodeUnauthorized, CodeTokenExpired,
	CodeForbiddenDestination, CodeInvalidNumber, CodeUnknownCall, CodeDuplicateCall,
	CodeUnsupportedMedia, CodeNoAudio, CodeUnavailable, CodeInternal,
	CodeCallRateLimited, CodeTooManyCalls, CodeBudgetExhausted, CodeMaxDuration, CodeForbiddenCallerID,
	CodeUnknownRoom, CodeInvalidTicket,
}

// Hangup causes: Asterisk's cause names in snake case, each with its Q.850
// cause code, carried in "cause" and "code" of a "hangup" message.
const (
	CauseUnallocatedNumber     = "unallocated_number"       // 1
	CauseNoRouteDestination    = "no_route_destination"     // 3
	CauseNormalClearing        = "normal_clearing"          // 16
	CauseUserBusy              = "user_busy"                // 17
	CauseNoUserResponse        = "no_user_response"         // 18
	CauseNoAnswer              = "no_answer"                // 19
	CauseSubscriberAbsent      = "subscriber_absent"        // 20
	CauseCallRejected          = "call_rejected"            // 21
	CauseNumberChanged         = "number_changed"           // 22
	CauseAnsweredElsewhere     = "answered_elsewhere"       // 26
	CauseDestinationOutOfOrder = "destination_out_of_order" // 27
	CauseInvalidNumberFormat   = "invalid_number_format"    // 28
	CauseNormalUnspecified     = "normal_unspecified"       // 31
	CauseCongestion            = "normal_circuit_congestion"
	CauseNetworkOutOfOrder     = "network_out_of_order"            // 38
	CauseTemporaryFailure      = "temporary_failure"               // 41
	CauseSwitchCongestion      = "switch_congestion"               // 42
	CauseChannelUnavailable    = "requested_chan_unavail"          // 44
	CauseBearerNotAvailable    = "bearer_capability_not_available" // 58
	CauseIncompatibleDest      = "incompatible_destination"        // 88
	CauseRecoveryOnTimerExpire = "recovery_on_timer_expire"        // 102
	CauseInterworking          = "interworking"                    // 127
)

var causeCodes = map[string]int{
	CauseUnallocatedNumber:     1,
	CauseNoRouteDestination:    3,
	CauseNormalClearing:        16,
	CauseUserBusy:              17,
	CauseNoUserResponse:        18,
	CauseNoAnswer:              19,
	CauseSubscriberAbsent:      20,
	CauseCallRejected:          21,
	CauseNumberChanged:         22,
	CauseAnsweredElsewhere:     26,
	CauseDestinationOutOfOrder: 27,
	CauseInvalidNumberFormat:   28,
	CauseNormalUnspecified:     31,
	CauseCongestion:            34,
	CauseNetworkOutOfOrder:     38,
	CauseTemporaryFailure:      41,
	CauseSwitchCongestion:      42,
	CauseChannelUnavailable:    44,
	CauseBearerNotAvailable:    58,
	CauseIncompatibleDest:      88,
	CauseRecoveryOnTimerExpire: 102,
	CauseInterworking:          127,
}

var causeNames = func() map[int]string {
	m := make(map[int]string, len(causeCodes))
	for name, code := range causeCodes {
		m[code] = name
	}
	return m
}()

// CauseCode returns the Q.850 code of a cause name, or 31 (normal, unspecified)
// for a name it does not know.
func CauseCode(cause string) int {
	if c, ok := causeCodes[cause]; ok {
		return c
	}
	return 31
}

// CauseName returns the cause name for a Q.850 code (as in an ARI ChannelDestroyed
// event's "cause"), or normal_unspecified for a code it does not know.
func CauseName(code int) string {
	if n, ok := causeNames[code]; ok {
		return n
	}
	return CauseNormalUnspecified
}

// Error is a protocol error: one of the stable codes plus a human message.
// Decode returns it for invalid input; the client returns it when the server
// refuses something.
type Error struct {
	Code    string // one of the Code* constants
	Message string // human text, may be empty
	CallID  string // set when the error is about one call
}

func (e *Error) Error() string {
	s := "signalling error " + e.Code
	if e.CallID != "" {
		s += " (call " + e.CallID + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// ErrorCode returns the stable code inside err if it wraps an *Error, else "".
func ErrorCode(err error) string {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func errorf(code, callID, format string, args ...any) *Error {
	return &Error{Code: code, CallID: callID, Message: fmt.Sprintf(format, args...)}
}

// Sentinel errors of Session.Send and the client.
var (
	ErrSessionClosed = errors.New("signalling session is closed")
	ErrQueueFull     = errors.New("signalling send queue is full: the peer does not read fast enough, session closed")
	ErrConnClosed    = errors.New("signalling connection is closed")
)
