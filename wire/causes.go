package wire

// Hangup causes: Asterisk's cause names in snake case, each with its Q.850 cause code, carried in "cause" and
// "code" of a signalling "hangup" message, in API call states, webhooks and call records.
const (
	CauseUnallocatedNumber     = "unallocated_number"              // 1
	CauseNoRouteDestination    = "no_route_destination"            // 3
	CauseNormalClearing        = "normal_clearing"                 // 16
	CauseUserBusy              = "user_busy"                       // 17
	CauseNoUserResponse        = "no_user_response"                // 18
	CauseNoAnswer              = "no_answer"                       // 19
	CauseSubscriberAbsent      = "subscriber_absent"               // 20
	CauseCallRejected          = "call_rejected"                   // 21
	CauseNumberChanged         = "number_changed"                  // 22
	CauseAnsweredElsewhere     = "answered_elsewhere"              // 26
	CauseDestinationOutOfOrder = "destination_out_of_order"        // 27
	CauseInvalidNumberFormat   = "invalid_number_format"           // 28
	CauseNormalUnspecified     = "normal_unspecified"              // 31
	CauseCongestion            = "normal_circuit_congestion"       // 34
	CauseNetworkOutOfOrder     = "network_out_of_order"            // 38
	CauseTemporaryFailure      = "temporary_failure"               // 41
	CauseSwitchCongestion      = "switch_congestion"               // 42
	CauseChannelUnavailable    = "requested_chan_unavail"          // 44
	CauseBearerNotAvailable    = "bearer_capability_not_available" // 58
	CauseIncompatibleDest      = "incompatible_destination"        // 88
	CauseRecoveryOnTimerExpire = "recovery_on_timer_expire"        // 102
	CauseInterworking          = "interworking"                    // 127

	// Patchbay's own causes, each carried with the Q.850 code that tells a phone or carrier the same thing.
	CauseServerShutdown = "server_shutdown" // 41: Patchbay is stopping; the call may be placed again
	CauseAsteriskLost   = "asterisk_lost"   // 38: Asterisk stopped answering (crashed, frozen or unreachable)
	CauseMediaTimeout   = "media_timeout"   // 41: the browser's media never flowed, or stopped (ICE failed)
	// CauseSignallingLost: the browser's signalling connection dropped and was not resumed within the grace
	// period (signal.ServerOptions.ResumeGrace), so its held calls ended.
	CauseSignallingLost = "signalling_lost" // 41
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

	CauseServerShutdown: 41,
	CauseAsteriskLost:   38,
	CauseMediaTimeout:   41,
	CauseSignallingLost: 41,
}

// causeNames maps a Q.850 code to Asterisk's name for it; Patchbay's own causes share codes and are left out.
var causeNames = func() map[int]string {
	m := make(map[int]string, len(causeCodes))
	for name, code := range causeCodes {
		switch name {
		case CauseServerShutdown, CauseAsteriskLost, CauseMediaTimeout, CauseSignallingLost:
			continue
		}
		m[code] = name
	}
	return m
}()

// Causes lists every cause name, for docs and tests.
func Causes() []string {
	out := make([]string, 0, len(causeCodes))
	for name := range causeCodes {
		out = append(out, name)
	}
	return out
}

// CauseCode returns the Q.850 code of a cause name, or 31 (normal, unspecified) for a name it does not know.
func CauseCode(cause string) int {
	if c, ok := causeCodes[cause]; ok {
		return c
	}
	return 31
}

// CauseName returns the cause name for a Q.850 code (as in an ARI ChannelDestroyed event's "cause"), or
// normal_unspecified for a code it does not know.
func CauseName(code int) string {
	if n, ok := causeNames[code]; ok {
		return n
	}
	return CauseNormalUnspecified
}
