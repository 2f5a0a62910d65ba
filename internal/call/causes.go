package call

import "github.com/patchbay/patchbay/wire"

// dialStatusCause maps ARI's DIALSTATUS to the hangup cause the browser sees.
func dialStatusCause(status string) string {
	switch status {
	case "BUSY":
		return wire.CauseUserBusy
	case "NOANSWER":
		return wire.CauseNoAnswer
	case "CONGESTION":
		return wire.CauseCongestion
	case "CHANUNAVAIL":
		return wire.CauseSubscriberAbsent
	case "CANCEL":
		return wire.CauseNormalClearing
	default:
		return wire.CauseTemporaryFailure
	}
}

// ariReason maps a cause to the reason ARI's hangup takes, which Asterisk turns into the SIP response or
// Q.850 cause the far party sees.
func ariReason(cause string) string {
	switch cause {
	case wire.CauseUserBusy:
		return "busy"
	case wire.CauseNoAnswer, wire.CauseNoUserResponse:
		return "no_answer"
	case wire.CauseCongestion, wire.CauseSwitchCongestion, wire.CauseSubscriberAbsent:
		return "congestion"
	case wire.CauseCallRejected:
		return "rejected"
	case wire.CauseUnallocatedNumber:
		return "unallocated"
	case wire.CauseAnsweredElsewhere:
		return "answered_elsewhere"
	case wire.CauseTemporaryFailure:
		return "failure"
	default:
		return "normal"
	}
}
