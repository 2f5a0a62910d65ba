package signal

// Codes of call limits and caller-ID refusals (internal/limits, internal/call). Stable like those in errors.go;
// they are also the REST API's codes for the same refusals.
const (
	CodeCallRateLimited   = "call_rate_limited"   // more new calls than this token, key or phone may start per minute
	CodeTooManyCalls      = "too_many_calls"      // as many calls in progress as allowed
	CodeBudgetExhausted   = "budget_exhausted"    // today's outbound minutes are used up
	CodeMaxDuration       = "max_duration"        // the call reached the maximum duration and was ended
	CodeForbiddenCallerID = "forbidden_caller_id" // no allowed caller ID for an outside call, or one not allowed
)

// TypeProgress (server→browser) reports the progress of a call the REST API placed for this browser user:
// Event is ProgressRinging, ProgressAnswered or ProgressEnded (then with Cause and Code); CallID is the API's
// call ID and To the destination.
const TypeProgress = "progress"

// Progress events carried in Message.Event of a "progress" message.
const (
	ProgressRinging  = "ringing"
	ProgressAnswered = "answered"
	ProgressEnded    = "ended"
)
