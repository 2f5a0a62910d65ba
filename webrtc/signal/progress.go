package signal

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
