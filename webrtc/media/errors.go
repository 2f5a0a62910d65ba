package media

import (
	"errors"

	"github.com/patchbay/patchbay/wire"
)

// Error is a media negotiation failure with a stable code that the signalling
// layer sends to the browser unchanged.
type Error struct {
	Code string
	msg  string
}

func (e *Error) Error() string { return e.msg }

// Sentinel errors; match them with errors.Is and read Code with errors.As or
// ErrorCode.
var (
	// ErrNoAudio: the offer has no usable audio section.
	ErrNoAudio = &Error{Code: wire.CodeNoAudio, msg: "offer carries no audio: add an audio track (getUserMedia audio or addTransceiver('audio'))"}
	// ErrUnsupportedMedia: audio is offered, but in no codec Patchbay carries (PCMU, PCMA, Opus).
	ErrUnsupportedMedia = &Error{Code: wire.CodeUnsupportedMedia, msg: "offer has no PCMU, PCMA or Opus audio: Patchbay carries G.711 untouched and Opus between browsers; enable one of them in the client"}
	// ErrInvalidSDP: the SDP could not be parsed.
	ErrInvalidSDP = &Error{Code: wire.CodeBadMessage, msg: "session description could not be parsed"}
	// ErrClosed: the API or peer was already closed.
	ErrClosed = errors.New("media: closed")
	// ErrNoVideo: the peer negotiated no video (the offer had none, or the
	// API was built without Options.Video).
	ErrNoVideo = errors.New("media: no video negotiated with this browser")
	// ErrNotStable: an offer is already outstanding on the peer.
	ErrNotStable = errors.New("media: an offer is already outstanding")
)

// ErrorCode returns the stable code of a media error in err's chain, or "".
func ErrorCode(err error) string {
	var me *Error
	if errors.As(err, &me) {
		return me.Code
	}
	return ""
}
