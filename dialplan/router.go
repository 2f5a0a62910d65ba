package dialplan

import (
	"slices"
	"strings"
)

// Kind says what a routed input is.
type Kind string

// Kinds of destination.
const (
	KindExtension Kind = "extension" // a PBX extension, originated via Local
	KindUser      Kind = "user"      // a browser user, handled by Patchbay
	KindRoom      Kind = "room"      // a Patchbay room, handled by Patchbay
	KindPSTN      Kind = "pstn"      // an outside number in E.164
)

// Decision is what an input was routed to. Number holds only [0-9+] or a user
// name; every endpoint is built from Number and configured names alone.
type Decision struct {
	Kind   Kind   `json:"kind"`
	Number string `json:"number"`
	// E164, Class and Country describe an outside number (Kind pstn): E164 equals Number; Country is the ISO
	// 3166 region ("001" for non-geographic numbers).
	E164    string `json:"e164,omitempty"`
	Class   Class  `json:"class,omitempty"`
	Country string `json:"country,omitempty"`
	// Trunks are the trunks to try for an outside number, in failover order; Trunk is the first.
	Trunk  string   `json:"trunk,omitempty"`
	Trunks []string `json:"trunks,omitempty"`
	// Route says which rule chose the trunks, in words ("route 2 (countries DE)", "default: every trunk").
	Route string `json:"route,omitempty"`
	// Endpoint is "Local/<Number>@<context>" for extensions and PSTN (Asterisk's own dialplan dials the first
	// trunk), empty for users and rooms. Patchbay dials trunks directly with TrunkEndpoint.
	Endpoint string `json:"endpoint,omitempty"`
}

// Router routes dialled input according to validated Rules. It is immutable
// and safe for concurrent use.
type Router struct {
	c *compiled
}

// NewRouter validates r and returns a Router; the error names every bad rule.
func NewRouter(r Rules) (*Router, error) {
	c, err := compileRules(r)
	if err != nil {
		return nil, err
	}
	return &Router{c: c}, nil
}

// maxRawInput bounds the bytes looked at before folding (a full-width digit takes three).
const maxRawInput = 4 * hardMaxLength

// Route classifies input. Numbers are tried against Extensions, UserNumbers
// and Rooms in that order, then as outside numbers. Full-width characters and
// Arabic-Indic digits are folded to ASCII; spaces, dashes, dots and parentheses
// inside numbers are dropped; a "tel:" URI is read as its number; anything
// else is refused. Outside numbers are parsed by libphonenumber, normalised to
// E.164 and checked against the policy (see PSTNRules). Errors are *RouteError
// with code invalid_number or forbidden_destination; a refusal by policy names
// the class or country.
func (r *Router) Route(input string) (Decision, error) {
	c := r.c
	if len(input) > maxRawInput {
		return Decision{}, invalidNumber(input, "longer than %d characters", c.maxLen)
	}
	folded, err := foldInput(input)
	if err != nil {
		return Decision{}, err
	}
	s := strings.Trim(folded, " ")
	if s == "" {
		return Decision{}, invalidNumber(input, "empty destination")
	}
	if len(s) > c.maxLen {
		return Decision{}, invalidNumber(input, "longer than %d characters", c.maxLen)
	}
	tel := false
	if len(s) > 4 && strings.EqualFold(s[:4], "tel:") {
		tel, s = true, strings.Trim(s[4:], " ")
		if strings.ContainsAny(s, ";,") {
			return Decision{}, invalidNumber(input, "tel: URI parameters (;phone-context, ;ext) are not supported; give the number in international form")
		}
		if s == "" {
			return Decision{}, invalidNumber(input, "tel: URI without a number")
		}
	}
	if !tel && s[0] >= 'a' && s[0] <= 'z' {
		return r.routeUser(input, s)
	}
	num, err := cleanNumber(input, s, false)
	if err != nil {
		return Decision{}, err
	}
	if num[0] == '+' {
		return r.routePSTN(input, num, "")
	}
	if !tel {
		for _, p := range c.ext {
			if p.match(num) {
				return Decision{Kind: KindExtension, Number: num, Endpoint: r.endpoint(num)}, nil
			}
		}
		for _, p := range c.userNums {
			if p.match(num) {
				return Decision{Kind: KindUser, Number: num}, nil
			}
		}
		for _, p := range c.rooms {
			if p.match(num) {
				return Decision{Kind: KindRoom, Number: num}, nil
			}
		}
	}
	for _, ip := range c.intl {
		if strings.HasPrefix(num, ip) && len(num) > len(ip) {
			return r.routePSTN(input, "+"+num[len(ip):], "")
		}
	}
	if c.region != "" {
		return r.routePSTN(input, num, c.region)
	}
	return Decision{}, invalidNumber(input, "not a known extension, user or room, nor a phone number in international format (+CC...)")
}

func (r *Router) routeUser(input, s string) (Decision, error) {
	if r.c.userName == nil {
		return Decision{}, forbidden(input, "calling users by name is disabled")
	}
	if !r.c.userName.MatchString(s) || !safeName(s) {
		return Decision{}, invalidNumber(input, "not a valid user name (lowercase letter first, then a-z 0-9 . _ -)")
	}
	return Decision{Kind: KindUser, Number: s}, nil
}

// safeName holds accepted names to a fixed alphabet whatever the configured
// pattern allows.
func safeName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// cleanNumber drops visual separators and refuses anything but digits and a
// leading '+'. dropTrunkZero removes "(0)" after a country code, as numbers
// kept in a store are written ("+44 (0)20 …"); Route leaves that to
// libphonenumber, which knows where a 0 after the country code is really dialled
// (Italy).
func cleanNumber(input, s string, dropTrunkZero bool) (string, error) {
	if dropTrunkZero && s[0] == '+' {
		s = strings.ReplaceAll(s, "(0)", "")
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '+':
			if b.Len() != 0 {
				return "", invalidNumber(input, "'+' is only allowed at the start")
			}
			b.WriteByte(c)
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
			return "", invalidNumber(input, "letter %q in a number; user names start with a lowercase letter", c)
		default:
			return "", invalidNumber(input, "character %q is not allowed in a destination", c)
		}
	}
	num := b.String()
	if num == "" || num == "+" {
		return "", invalidNumber(input, "no digits")
	}
	return num, nil
}

// routePSTN parses num (international with '+', or national for region), applies the policy and picks trunks.
func (r *Router) routePSTN(input, num, region string) (Decision, error) {
	c := r.c
	p, err := parsePhone(input, num, region)
	if err != nil {
		return Decision{}, err
	}
	if len(c.allow) == 0 && len(c.allowPrefixes) == 0 {
		return Decision{}, refuse(input, p, "outside (PSTN) calls are disabled")
	}
	for _, d := range c.deny {
		if strings.HasPrefix(p.e164, d) {
			return Decision{}, refuse(input, p, "numbers starting %s are blocked (dialplan.pstn.deny)", d)
		}
	}
	if !hasPrefix(p.e164, c.allowPrefixes) {
		if !hasPrefix(p.e164, c.allow) {
			return Decision{}, refuse(input, p, "number is not in the PSTN allow list")
		}
		if c.denyClass[p.class] {
			return Decision{}, refuse(input, p, "%s are not allowed", p.class.Noun())
		}
		if !c.allCountries && !c.countries[p.country] {
			return Decision{}, refuse(input, p, "calls to %s are not allowed", countryName(p.country))
		}
	}
	trunks, why := r.trunksFor(p)
	if len(trunks) == 0 {
		return Decision{}, refuse(input, p, "no trunk serves this number")
	}
	return Decision{
		Kind: KindPSTN, Number: p.e164, E164: p.e164, Class: p.class, Country: p.country,
		Trunk: trunks[0], Trunks: trunks, Route: why, Endpoint: r.endpoint(p.e164),
	}, nil
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func countryName(region string) string {
	if region == NonGeoRegion {
		return "non-geographic numbers (001)"
	}
	return region
}

// trunksFor returns the failover list of the first route matching p, or every trunk in order.
func (r *Router) trunksFor(p phoneNumber) ([]string, string) {
	for _, rt := range r.c.routes {
		if len(rt.Countries) > 0 && !slices.Contains(rt.Countries, p.country) {
			continue
		}
		if len(rt.Classes) > 0 && !slices.Contains(rt.Classes, p.class) {
			continue
		}
		if len(rt.Prefixes) > 0 && !hasPrefix(p.e164, rt.Prefixes) {
			continue
		}
		return slices.Clone(rt.Trunks), rt.desc
	}
	return r.c.trunkNames(), "no route matched: every trunk in order"
}

// describeRoute names a route for `patchbay route` and logs.
func describeRoute(field string, rt Route) string {
	var parts []string
	if len(rt.Countries) > 0 {
		parts = append(parts, "countries "+strings.Join(rt.Countries, ","))
	}
	if len(rt.Classes) > 0 {
		cl := make([]string, len(rt.Classes))
		for j, c := range rt.Classes {
			cl[j] = string(c)
		}
		parts = append(parts, "classes "+strings.Join(cl, ","))
	}
	if len(rt.Prefixes) > 0 {
		parts = append(parts, "prefixes "+strings.Join(rt.Prefixes, ","))
	}
	if len(parts) == 0 {
		parts = append(parts, "every number")
	}
	return field + " (" + strings.Join(parts, "; ") + ")"
}

func (r *Router) endpoint(num string) string {
	return "Local/" + num + "@" + r.c.context
}

// Allowed reports whether grants permit d. A grant is a kind ("ext", "user",
// "room", "pstn"), "*" for everything, or an exact number or user name.
func Allowed(d Decision, grants []string) bool {
	if d.Number == "" {
		return false
	}
	var kind string
	switch d.Kind {
	case KindExtension:
		kind = "ext"
	case KindUser:
		kind = "user"
	case KindRoom:
		kind = "room"
	case KindPSTN:
		kind = "pstn"
	default:
		return false
	}
	for _, g := range grants {
		switch g {
		case "*", kind:
			return true
		case "ext", "user", "room", "pstn":
			// A kind keyword never doubles as an exact grant, or "room"
			// would also admit a user named "room".
		default:
			if g == d.Number {
				return true
			}
		}
	}
	return false
}
