package wire

// A call-ending error: an "error" message with a call_id and one of these codes means the call is over. The
// message carries "final": true, the server sends a "hangup" with CauseForCode(code) right after it, and a client
// stops trickling candidates for that call. Every other code leaves the call as it was (bad_message on a
// candidate, unknown_call, duplicate_call, rate_limited).
var finalCodes = map[string]string{
	CodeForbiddenDestination: CauseCallRejected,
	CodeInvalidNumber:        CauseInvalidNumberFormat,
	CodeUnsupportedMedia:     CauseIncompatibleDest,
	CodeNoAudio:              CauseMediaTimeout,
	CodeUnavailable:          CauseTemporaryFailure,
	CodeInternal:             CauseTemporaryFailure,
	CodeCallRateLimited:      CauseCallRejected,
	CodeTooManyCalls:         CauseCallRejected,
	CodeBudgetExhausted:      CauseCallRejected,
	CodeMaxDuration:          CauseRecoveryOnTimerExpire,
	CodeForbiddenCallerID:    CauseCallRejected,
	CodeUnknownRoom:          CauseUnallocatedNumber,
	CodeInvalidTicket:        CauseCallRejected,
	CodeTokenExpired:         CauseNormalClearing,
}

// EndsCall reports whether an error with this code, sent about one call, ends that call.
func EndsCall(code string) bool {
	_, ok := finalCodes[code]
	return ok
}

// FinalCodes lists the codes for which EndsCall is true, for docs, clients and tests.
func FinalCodes() []string {
	out := make([]string, 0, len(finalCodes))
	for c := range finalCodes {
		out = append(out, c)
	}
	return out
}

// CauseForCode is the hangup cause the server sends after a call-ending error with this code; normal_unspecified
// for a code that does not end a call.
func CauseForCode(code string) string {
	if c, ok := finalCodes[code]; ok {
		return c
	}
	return CauseNormalUnspecified
}

// RefusalCause is the hangup cause that follows the refusal of a call before it began (a "call", "join" or new
// "supervise" refused by the signalling server or by call control, or a call the API refused): the call-ending
// cause of a final code, else the cause that tells a phone or carrier the same thing. Every refused call gets its
// hangup, whatever the code, so a client can free its call_id on "hangup" alone.
func RefusalCause(code string) string {
	if c, ok := finalCodes[code]; ok {
		return c
	}
	switch code {
	case CodeBadMessage:
		return CauseInterworking // the request itself was malformed
	default: // not allowed, unknown call or target, a limit: the network refused the call
		return CauseCallRejected
	}
}
