package aritest

// Q.850 hangup causes as Asterisk numbers them (include/asterisk/causes.h).
const (
	CauseUnallocated        = 1
	CauseNoRouteDestination = 3
	CauseNormalClearing     = 16
	CauseUserBusy           = 17
	CauseNoUserResponse     = 18
	CauseNoAnswer           = 19
	CauseSubscriberAbsent   = 20
	CauseCallRejected       = 21
	CauseAnsweredElsewhere  = 26
	CauseInvalidNumber      = 28
	CauseNormalUnspecified  = 31
	CauseCongestion         = 34
	CauseNetworkOutOfOrder  = 38
	CauseTemporaryFailure   = 41
	CauseBearerNotAvail     = 58
	CauseInterworking       = 127
)

// causeText is Asterisk's ast_cause2str text, which ChannelDestroyed carries as cause_txt.
var causeText = map[int]string{
	0:                       "Unknown",
	CauseUnallocated:        "Unallocated (unassigned) number",
	2:                       "No route to specified transmit network",
	CauseNoRouteDestination: "No route to destination",
	6:                       "Channel unacceptable",
	CauseNormalClearing:     "Normal Clearing",
	CauseUserBusy:           "User busy",
	CauseNoUserResponse:     "No user responding",
	CauseNoAnswer:           "User alerting, no answer",
	CauseSubscriberAbsent:   "Subscriber absent",
	CauseCallRejected:       "Call Rejected",
	22:                      "Number changed",
	CauseAnsweredElsewhere:  "Answered elsewhere",
	27:                      "Destination out of order",
	CauseInvalidNumber:      "Invalid number format",
	29:                      "Facility rejected",
	CauseNormalUnspecified:  "Normal, unspecified",
	CauseCongestion:         "Circuit/channel congestion",
	CauseNetworkOutOfOrder:  "Network out of order",
	CauseTemporaryFailure:   "Temporary failure",
	42:                      "Switching equipment congestion",
	44:                      "Requested channel not available",
	CauseBearerNotAvail:     "Bearer capability not available",
	CauseInterworking:       "Interworking, unspecified",
}

// CauseText returns Asterisk's text for a hangup cause, as ChannelDestroyed's cause_txt.
func CauseText(cause int) string {
	if t, ok := causeText[cause]; ok {
		return t
	}
	return "Unknown"
}

// hangupReasons maps DELETE /channels/{id}?reason= to a cause exactly as
// res/ari/resource_channels.c convert_reason_to_hangup_code does ("failure"
// is AST_CAUSE_FAILURE, an alias of NETWORK_OUT_OF_ORDER, 38).
var hangupReasons = map[string]int{
	"normal":             CauseNormalClearing,
	"busy":               CauseUserBusy,
	"congestion":         CauseCongestion,
	"no_answer":          CauseNoAnswer,
	"timeout":            CauseNoUserResponse,
	"rejected":           CauseCallRejected,
	"unallocated":        CauseUnallocated,
	"normal_unspecified": CauseNormalUnspecified,
	"number_incomplete":  CauseInvalidNumber,
	"codec_mismatch":     CauseBearerNotAvail,
	"interworking":       CauseInterworking,
	"failure":            CauseNetworkOutOfOrder,
	"answered_elsewhere": CauseAnsweredElsewhere,
}

// knownFormats are the format names originate, create and externalMedia accept.
var knownFormats = map[string]bool{
	"ulaw": true, "alaw": true, "gsm": true, "g722": true, "g729": true, "g726": true, "ilbc": true,
	"speex": true, "opus": true, "slin": true, "slin12": true, "slin16": true, "slin24": true,
	"slin32": true, "slin44": true, "slin48": true, "slin96": true, "slin192": true, "h264": true, "vp8": true,
}

// recordingFormats are the file formats record accepts (others get 422).
var recordingFormats = map[string]bool{
	"wav": true, "WAV": true, "wav16": true, "gsm": true, "ulaw": true, "alaw": true, "sln": true,
	"sln16": true, "g722": true, "ogg": true,
}
