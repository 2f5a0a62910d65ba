package dialplan

import (
	"errors"
	"fmt"
	"strings"

	"github.com/patchbay/patchbay/wire"
)

// Verdict is a routing decision told to an admin (`patchbay route`): what a call to Input would get, by the same
// Route and Allowed that decide real calls.
type Verdict struct {
	Input    string `json:"input"`
	Decision string `json:"decision"` // "allow" or "refuse"
	Kind     Kind   `json:"kind,omitempty"`
	Number   string `json:"number,omitempty"`
	// E164, Class and Country are set for outside numbers, refused ones included when they parsed.
	E164    string `json:"e164,omitempty"`
	Class   Class  `json:"class,omitempty"`
	Country string `json:"country,omitempty"`
	// Trunk is the first trunk tried, Trunks the whole failover list, Route the rule that chose them.
	Trunk  string   `json:"trunk,omitempty"`
	Trunks []string `json:"trunks,omitempty"`
	Route  string   `json:"route,omitempty"`
	// Endpoint is the dial string of the first attempt.
	Endpoint string `json:"endpoint,omitempty"`
	// Grants are the grants checked (absent: none were given, so only the rules were applied).
	Grants []string `json:"grants,omitempty"`
	// CallerID is the caller ID an outside call would present, when caller IDs were checked.
	CallerID string `json:"caller_id,omitempty"`
	// Code and Message say why a call is refused: the code and text a browser or API client would get.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Decision values of a Verdict.
const (
	VerdictAllow  = "allow"
	VerdictRefuse = "refuse"
)

// Explain routes input as a call would be, and when grants is not nil also checks them as a token's dial claim
// (or an API key's api.dial) would be.
func (r *Router) Explain(input string, grants []string) Verdict {
	v := Verdict{Input: input, Decision: VerdictRefuse, Grants: grants}
	d, err := r.Route(input)
	if err != nil {
		v.Code, v.Message = wire.CodeInternal, err.Error()
		var re *RouteError
		if errors.As(err, &re) {
			v.Code, v.Message = re.Code, re.Reason
			v.E164, v.Class, v.Country = re.E164, re.Class, re.Country
			if v.E164 != "" {
				v.Kind, v.Number = KindPSTN, re.E164
			}
		}
		return v
	}
	v.Kind, v.Number = d.Kind, d.Number
	v.E164, v.Class, v.Country = d.E164, d.Class, d.Country
	v.Trunk, v.Trunks, v.Route = d.Trunk, d.Trunks, d.Route
	v.Endpoint = d.Endpoint
	if d.Kind == KindPSTN {
		if ep, err := r.TrunkEndpoint(d, d.Trunk); err == nil {
			v.Endpoint = ep
		}
	}
	if grants != nil && !Allowed(d, grants) {
		v.Code = wire.CodeForbiddenDestination
		v.Message = "your token does not allow calling " + string(d.Kind) + " destinations"
		return v
	}
	v.Decision = VerdictAllow
	return v
}

// CheckCallerID applies PickCallerID to an allowed outside call, as call control does for a token's caller_ids
// and the call's caller_id: the verdict becomes a refusal with forbidden_caller_id when the pick fails or finds
// nothing.
func (v *Verdict) CheckCallerID(allowed []string, requested string) {
	if v.Decision != VerdictAllow || v.Kind != KindPSTN {
		return
	}
	id, err := PickCallerID(allowed, requested)
	if err == nil && id == "" {
		err = newRouteError(wire.CodeForbiddenCallerID, "", "outside calls need a caller ID: have the backend mint the token with caller_ids")
	}
	var re *RouteError
	if errors.As(err, &re) {
		v.Decision, v.Code, v.Message = VerdictRefuse, re.Code, re.Reason
		return
	}
	v.CallerID = id
}

// Words says the verdict in one or two lines for a terminal.
func (v Verdict) Words() string {
	var b strings.Builder
	what := ""
	if v.E164 != "" {
		what = fmt.Sprintf("%s (%s, %s)", v.E164, v.Class, countryName(v.Country))
	} else if v.Number != "" {
		what = fmt.Sprintf("%s %s", v.Kind, v.Number)
	}
	if v.Decision == VerdictAllow {
		fmt.Fprintf(&b, "allow: %q is %s", v.Input, what)
		if len(v.Trunks) > 0 {
			fmt.Fprintf(&b, "\n  trunks: %s, by %s", strings.Join(v.Trunks, " then "), v.Route)
		}
		if v.Endpoint != "" {
			fmt.Fprintf(&b, "\n  dials: %s", v.Endpoint)
		}
		if v.CallerID != "" {
			fmt.Fprintf(&b, "\n  caller ID: %s", v.CallerID)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "refuse: %q: %s (%s)", v.Input, v.Message, v.Code)
	if what != "" {
		fmt.Fprintf(&b, "\n  number: %s", what)
	}
	return b.String()
}
