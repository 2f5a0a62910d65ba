package dialplan

import (
	"strings"
	"unicode/utf8"
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
// name; Endpoint is built from Number alone.
type Decision struct {
	Kind   Kind   `json:"kind"`
	Number string `json:"number"`
	// Trunk is the trunk serving a PSTN number (longest prefix match).
	Trunk string `json:"trunk,omitempty"`
	// Endpoint is what Patchbay originates: "Local/<Number>@<context>" for
	// extensions and PSTN, empty for users and rooms.
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

// E.164 allows at most 15 digits after '+'; fewer than 8 is no real
// international number.
const (
	e164Min = 8
	e164Max = 15
)

// Route classifies input. Numbers are tried against Extensions, UserNumbers
// and Rooms in that order, then as PSTN numbers. Only surrounding spaces, and spaces, dashes, dots
// and parentheses inside numbers, are dropped; any other character is
// refused. Errors are *RouteError with code invalid_number or
// forbidden_destination.
func (r *Router) Route(input string) (Decision, error) {
	c := r.c
	s := strings.Trim(input, " ")
	if s == "" {
		return Decision{}, invalidNumber(input, "empty destination")
	}
	if len(s) > c.maxLen {
		return Decision{}, invalidNumber(input, "longer than %d characters", c.maxLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return Decision{}, invalidNumber(input, "non-ASCII character at byte %d; dial with ASCII digits", i)
		}
		if s[i] < 0x20 || s[i] == 0x7f {
			return Decision{}, invalidNumber(input, "control character at byte %d", i)
		}
	}
	if s[0] >= 'a' && s[0] <= 'z' {
		return r.routeUser(input, s)
	}
	num, err := cleanNumber(input, s)
	if err != nil {
		return Decision{}, err
	}
	if num[0] == '+' {
		return r.routePSTN(input, num)
	}
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
	for _, ip := range c.intl {
		if strings.HasPrefix(num, ip) && len(num) > len(ip) {
			return r.routePSTN(input, "+"+num[len(ip):])
		}
	}
	if c.natPrefix != "" && strings.HasPrefix(num, c.natPrefix) && len(num) > len(c.natPrefix) {
		return r.routePSTN(input, "+"+c.country+num[len(c.natPrefix):])
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
// leading '+'.
func cleanNumber(input, s string) (string, error) {
	if s[0] == '+' {
		// "+44 (0)20 7946 0000": the bracketed 0 is the national trunk
		// prefix, never dialled after a country code.
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

func (r *Router) routePSTN(input, num string) (Decision, error) {
	digits := len(num) - 1
	if digits < e164Min || digits > e164Max {
		return Decision{}, invalidNumber(input, "international numbers have %d to %d digits after '+', got %d", e164Min, e164Max, digits)
	}
	if num[1] == '0' {
		return Decision{}, invalidNumber(input, "country codes do not start with 0")
	}
	c := r.c
	if len(c.allow) == 0 {
		return Decision{}, forbidden(input, "outside (PSTN) calls are disabled")
	}
	for _, d := range c.deny {
		if strings.HasPrefix(num, d) {
			return Decision{}, forbidden(input, "numbers starting %s are blocked (premium-rate or fraud-prone)", d)
		}
	}
	allowed := false
	for _, a := range c.allow {
		if strings.HasPrefix(num, a) {
			allowed = true
			break
		}
	}
	if !allowed {
		return Decision{}, forbidden(input, "number is not in the PSTN allow list")
	}
	trunk, best := "", -1
	for pre, t := range c.trunks {
		if strings.HasPrefix(num, pre) && len(pre) > best {
			trunk, best = t, len(pre)
		}
	}
	if trunk == "" {
		return Decision{}, forbidden(input, "no trunk serves this number")
	}
	return Decision{Kind: KindPSTN, Number: num, Trunk: trunk, Endpoint: r.endpoint(num)}, nil
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
