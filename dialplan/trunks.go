package dialplan

import (
	"fmt"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/patchbay/patchbay/wire"
)

// Trunk returns the routing settings of the named trunk.
func (r *Router) Trunk(name string) (Trunk, bool) {
	i, ok := r.c.trunkByName[name]
	if !ok {
		return Trunk{}, false
	}
	return r.c.trunks[i], true
}

// Trunks returns every trunk in order of preference.
func (r *Router) Trunks() []Trunk {
	return append([]Trunk(nil), r.c.trunks...)
}

// TrunkEndpoint is what Patchbay originates to reach d (an outside number) over trunk, one of d.Trunks:
// "PJSIP/<number>@<trunk>", the number written in the trunk's DialFormat. It is built from the validated
// E.164 number and a configured trunk name only.
func (r *Router) TrunkEndpoint(d Decision, trunk string) (string, error) {
	t, ok := r.Trunk(trunk)
	if d.Kind != KindPSTN || !E164Re.MatchString(d.E164) {
		return "", fmt.Errorf("dialplan: trunk endpoint for a %s decision %q: only outside numbers go to trunks", d.Kind, d.Number)
	}
	if !ok {
		return "", fmt.Errorf("dialplan: trunk endpoint: no trunk %q", trunk)
	}
	num, err := formatNumber(d.E164, t.DialFormat)
	if err != nil {
		return "", err
	}
	return "PJSIP/" + num + "@" + t.Name, nil
}

// PresentCallerID returns the caller ID to present on trunk for a caller whose (already permitted) caller ID is
// callerID, in E.164 or empty: callerID in the trunk's CallerIDFormat when the carrier accepts it (CallerIDs),
// else the trunk's DefaultCallerID. It fails with ErrForbiddenCallerID when the trunk can present neither: pass
// the call to the next trunk, or refuse it when none is left.
func (r *Router) PresentCallerID(trunk, callerID string) (string, error) {
	t, ok := r.Trunk(trunk)
	if !ok {
		return "", fmt.Errorf("dialplan: caller ID for trunk %q: no such trunk", trunk)
	}
	id := callerID
	if id != "" && len(t.CallerIDs) > 0 && !hasPrefix(id, t.CallerIDs) {
		id = ""
	}
	if id == "" {
		id = t.DefaultCallerID
	}
	if id == "" {
		what := "no caller ID"
		if callerID != "" {
			what = "caller ID " + quoteInput(callerID)
		}
		return "", newRouteError(wire.CodeForbiddenCallerID, callerID, fmt.Sprintf("trunk %s does not present %s and has no default_caller_id", trunk, what))
	}
	return formatNumber(id, t.CallerIDFormat)
}

// formatNumber writes an E.164 number (or a plain digit string, left as is) in f.
func formatNumber(e164 string, f NumberFormat) (string, error) {
	if !strings.HasPrefix(e164, "+") {
		if onlyASCIIDigits(e164) {
			return e164, nil
		}
		return "", fmt.Errorf("dialplan: %s is not a number", quoteInput(e164))
	}
	switch f {
	case FormatDigits:
		return e164[1:], nil
	case FormatNational:
		n, err := phonenumbers.Parse(e164, "")
		if err != nil {
			return "", fmt.Errorf("dialplan: national form of %s: %w", e164, err)
		}
		national := phonenumbers.NormalizeDigitsOnly(phonenumbers.Format(n, phonenumbers.NATIONAL))
		if !onlyASCIIDigits(national) {
			return "", fmt.Errorf("dialplan: national form of %s is not digits", e164)
		}
		return national, nil
	default:
		return e164, nil
	}
}

func onlyASCIIDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// TrunkOutcome is how one attempt on a trunk ended before it was answered, as call control saw it.
type TrunkOutcome struct {
	// DialStatus is ARI's Dial event dialstatus (CONGESTION, CHANUNAVAIL, BUSY, NOANSWER, ...), if any.
	DialStatus string
	// Cause is the Q.850 cause of the far channel's hangup (ChannelDestroyed cause), 0 if unknown.
	Cause int
	// SIPCode is the carrier's final SIP response, 0 if unknown; without it a SIP code in the policy is
	// matched through the Q.850 cause Asterisk maps it to.
	SIPCode int
	// TimedOut: the trunk did not ring within FailoverTimeout. AtLimit: the trunk was at MaxChannels and was
	// not tried.
	TimedOut, AtLimit bool
}

// Failover reports whether the call passes to the next trunk after o. A trunk at its channel limit or silent
// past FailoverTimeout always passes the call on; other outcomes do when FailoverCauses name them. An answered
// call, or one the caller ended, never fails over.
func (r *Router) Failover(o TrunkOutcome) bool {
	if o.AtLimit || o.TimedOut {
		return true
	}
	for _, f := range r.c.failover {
		switch {
		case strings.EqualFold(f, o.DialStatus) && o.DialStatus != "":
			return true
		case sipCodeRe.MatchString(f):
			if o.SIPCode != 0 {
				if matchSIP(f, o.SIPCode) {
					return true
				}
				continue
			}
			if o.Cause != 0 && sipCauseMatches(f, o.Cause) {
				return true
			}
		}
	}
	return false
}

// FailoverTimeout is how long a trunk may stay silent (no 180/183) before the call passes on; 0: no timer.
func (r *Router) FailoverTimeout() time.Duration { return r.c.failoverTimeout }

// FailoverCauses are the outcomes that pass a call on, as configured (lower case).
func (r *Router) FailoverCauses() []string { return append([]string(nil), r.c.failover...) }

func matchSIP(pattern string, code int) bool {
	if strings.HasSuffix(pattern, "xx") {
		return code/100 == int(pattern[0]-'0')
	}
	return fmt.Sprint(code) == pattern
}

// sipCauseMatches reports whether a hangup with Q.850 cause could come from a SIP response that pattern names,
// by chan_pjsip's mapping of responses to causes.
func sipCauseMatches(pattern string, cause int) bool {
	for code := 400; code < 700; code++ {
		if matchSIP(pattern, code) && SIPToCause(code) == cause {
			return true
		}
	}
	return false
}

// SIPToCause is the Q.850 cause chan_pjsip gives a call ended by a SIP final response (hangup_sip2cause).
func SIPToCause(code int) int {
	switch code {
	case 401, 403, 407, 603:
		return 21 // call rejected
	case 404, 485, 604:
		return 1 // unallocated
	case 408:
		return 18 // no user response
	case 409:
		return 41 // temporary failure
	case 410:
		return 22 // number changed
	case 420:
		return 3 // no route to destination
	case 480, 483:
		return 19 // no answer
	case 484:
		return 28 // invalid number format
	case 486:
		return 17 // user busy
	case 488, 606:
		return 58 // bearer capability not available
	case 500:
		return 38 // network out of order
	case 501:
		return 29 // facility rejected
	case 502:
		return 27 // destination out of order
	case 503:
		return 34 // congestion
	case 504:
		return 102 // recovery on timer expiry
	case 600:
		return 17 // busy everywhere
	}
	switch {
	case code >= 500 && code < 600:
		return 34
	case code >= 400 && code < 700:
		return 127 // interworking
	}
	return 16
}
