// Package wire defines, once, every code Patchbay puts on the wire: the stable error codes of the signalling
// protocol and the REST API, and the hangup causes with their Q.850 numbers. Browsers, API clients and tests
// branch on these strings: never rename one. Every other package refers to these constants; none repeats them.
package wire

// Error codes carried in the "error" field of a signalling "error" message, in a REST error body, and as the
// reason of a WebSocket close frame.
const (
	CodeBadMessage           = "bad_message"           // malformed JSON, unknown type, bad field
	CodeTooLarge             = "too_large"             // frame or body above the size limit
	CodeRateLimited          = "rate_limited"          // too many messages; sustained abuse closes
	CodeUnauthorized         = "unauthorized"          // no auth first, bad, forged or over-long token; closes
	CodeTokenExpired         = "token_expired"         // token past its exp, at auth or later; closes
	CodeTooManyConnections   = "too_many_connections"  // too many unauthenticated connections from one address or in all
	CodeForbiddenDestination = "forbidden_destination" // the token or key may not dial this number, or policy denies it
	CodeInvalidNumber        = "invalid_number"        // "to" empty, too long, with bad characters, or not a number
	CodeUnknownCall          = "unknown_call"          // call_id not known on this connection (or API call ID unknown)
	CodeDuplicateCall        = "duplicate_call"        // call_id already used on this connection
	CodeUnsupportedMedia     = "unsupported_media"     // SDP without a codec Patchbay can carry
	CodeNoAudio              = "no_audio"              // media never flowed from the browser
	CodeUnavailable          = "unavailable"           // Asterisk, Redis or Patchbay unavailable, shutting down, at capacity
	CodeInternal             = "internal"              // a bug or unexpected failure on the server

	// Limits and caller ID (per token, API key or phone).
	CodeCallRateLimited   = "call_rate_limited"   // more new calls than this token, key or phone may start per minute
	CodeTooManyCalls      = "too_many_calls"      // as many calls in progress as allowed
	CodeBudgetExhausted   = "budget_exhausted"    // today's outbound minutes are used up
	CodeMaxDuration       = "max_duration"        // the call reached the maximum duration and was ended
	CodeForbiddenCallerID = "forbidden_caller_id" // no allowed caller ID for an outside call, or one not allowed

	// Rooms.
	CodeUnknownRoom   = "unknown_room"   // the room does not exist or has ended, or the number maps to none
	CodeInvalidTicket = "invalid_ticket" // a one-time ticket that is unknown, expired, used, or not for this identity
	CodeShareBusy     = "share_busy"     // another participant is sharing their screen: one sharer at a time

	// Contact center.
	CodeNotAllowed     = "not_allowed"     // the token's role does not allow this (supervise, moderate, record, console)
	CodeTransferFailed = "transfer_failed" // a transfer was refused or could not start; the call goes on

	// REST API only.
	CodeBadRequest = "bad_request" // the request body or a parameter is not valid
	CodeNotFound   = "not_found"   // no such resource for this key
	CodeNotMapped  = "not_mapped"  // the number is not mapped to a room
	CodeConflict   = "conflict"    // the resource already exists
)

// Codes lists every error code, for docs and tests.
var Codes = []string{
	CodeBadMessage, CodeTooLarge, CodeRateLimited, CodeUnauthorized, CodeTokenExpired, CodeTooManyConnections,
	CodeForbiddenDestination, CodeInvalidNumber, CodeUnknownCall, CodeDuplicateCall,
	CodeUnsupportedMedia, CodeNoAudio, CodeUnavailable, CodeInternal,
	CodeCallRateLimited, CodeTooManyCalls, CodeBudgetExhausted, CodeMaxDuration, CodeForbiddenCallerID,
	CodeUnknownRoom, CodeInvalidTicket, CodeShareBusy, CodeNotAllowed, CodeTransferFailed,
	CodeBadRequest, CodeNotFound, CodeNotMapped, CodeConflict,
}
