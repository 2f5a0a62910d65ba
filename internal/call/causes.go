package call

import "github.com/patchbay/patchbay/webrtc/signal"

// dialStatusCause maps ARI's DIALSTATUS to the hangup cause the browser sees.
func dialStatusCause(status string) string {
	switch status {
	case "BUSY":
		return signal.CauseUserBusy
	case "NOANSWER":
		return signal.CauseNoAnswer
	case "CONGESTION":
		return signal.CauseCongestion
	case "CHANUNAVAIL":
		return signal.CauseSubscriberAbsent
	case "CANCEL":
		return signal.CauseNormalClearing
	default:
		return signal.CauseTemporaryFailure
	}
}

// ariReason maps a cause to the reason ARI's hangup takes, which Asterisk turns into the SIP response or
// Q.850 cause the far party sees.
func ariReason(cause string) string {
	switch cause {
	case signal.CauseUserBusy:
		return "busy"
	case signal.CauseNoAnswer, signal.CauseNoUserResponse:
		return "no_answer"
	case signal.CauseCongestion, signal.CauseSwitchCongestion, signal.CauseSubscriberAbsent:
		return "congestion"
	case signal.CauseCallRejected:
		return "rejected"
	case signal.CauseUnallocatedNumber:
		return "unallocated"
	case signal.CauseAnsweredElsewhere:
		return "answered_elsewhere"
	case signal.CauseTemporaryFailure:
		return "failure"
	default:
		return "normal"
	}
}
