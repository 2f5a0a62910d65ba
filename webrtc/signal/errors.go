package signal

import (
	"errors"
	"fmt"
)

// Error is a protocol error: one of the stable codes plus a human message.
// Decode returns it for invalid input; the client returns it when the server
// refuses something.
type Error struct {
	Code    string // one of the Code* constants
	Message string // human text, may be empty
	CallID  string // set when the error is about one call

	msgType string // the type of the refused message, when Decode knew it
	sdp     bool   // the refused message carried an sdp (a "supervise" with one opens a call)
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
