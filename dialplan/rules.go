package dialplan

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Rules configure a Router. The zero value routes nothing; start from
// DefaultRules.
type Rules struct {
	// Extensions are Asterisk-style patterns ("_1XX", "600", "_60[0-3]") of
	// PBX extensions Patchbay originates into through Local channels.
	Extensions []string
	// UserName is an anchored regular expression for browser user names.
	// Whatever it says, accepted names are also held to [a-z][a-z0-9._-]*.
	UserName string
	// UserNumbers are patterns of numbers that reach a browser user.
	UserNumbers []string
	// Rooms are patterns of room numbers.
	Rooms []string
	// PSTN describes outside calls.
	PSTN PSTNRules
	// MaxLength bounds the input after surrounding spaces are dropped.
	MaxLength int
	// Context is the Asterisk dialplan context of Decision.Endpoint.
	Context string
}

// PSTNRules describe how outside numbers are normalised to E.164 and which
// are allowed. All prefixes are E.164 prefixes starting with '+'.
type PSTNRules struct {
	// InternationalPrefixes are dialled before a country code, e.g. "00"
	// or "011"; they are replaced by '+'.
	InternationalPrefixes []string
	// NationalPrefix (e.g. "0") and CountryCode (e.g. "44") turn a national
	// number into E.164: "020 7946 0000" → "+442079460000". Both or neither.
	NationalPrefix string
	CountryCode    string
	// Allow lists the prefixes that may be called; empty disables PSTN.
	Allow []string
	// Deny lists prefixes that are refused even when allowed: deny wins.
	Deny []string
	// Trunks maps a prefix to the trunk name; the longest prefix wins.
	Trunks map[string]string
}

// DefaultUserName is the user name syntax shared with the Asterisk dialplan.
const DefaultUserName = `^[a-z][a-z0-9._-]{0,31}$`

// DefaultRules match the shipped Asterisk dialplan: extensions 1XX and
// 600-603, browser users by name or 7XXX, rooms 8XXX, and PSTN to everything
// except the destinations below.
func DefaultRules() Rules {
	return Rules{
		Extensions:  []string{"_1XX", "_60[0-3]"},
		UserName:    DefaultUserName,
		UserNumbers: []string{"_7XXX"},
		Rooms:       []string{"_8XXX"},
		PSTN: PSTNRules{
			InternationalPrefixes: []string{"00"},
			Allow:                 []string{"+"},
			// Toll fraud goes to numbers whose owner is paid per minute by
			// the caller's carrier; a stolen browser token must not be able
			// to run up such a bill. Refused by default:
			Deny: []string{
				"+1900",  // NANP premium rate
				"+1976",  // NANP pay-per-call (976)
				"+449",   // UK 09x premium rate
				"+4487",  // UK 087 revenue-sharing
				"+4470",  // UK 070 "personal numbers", a common fraud target
				"+339",   // FR 09 non-geographic; denied like the Asterisk dialplan, lift if needed
				"+3389",  // FR 089 premium rate
				"+49900", // DE 0900 premium rate
				"+49137", // DE 0137 mass-calling / televoting
				"+870",   // Inmarsat satellite: very high per-minute cost
				"+881",   // global satellite systems
				"+882",   // international networks, classic revenue-share ranges
				"+883",   // international networks
			},
			Trunks: map[string]string{"+": "pstn"},
		},
		MaxLength: 32,
		Context:   "from-patchbay",
	}
}

var (
	namePartRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	digitsRe   = regexp.MustCompile(`^[0-9]{1,8}$`)
	prefixRe   = regexp.MustCompile(`^\+[0-9]{0,15}$`)
	trunkRe    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	countryRe  = regexp.MustCompile(`^[1-9][0-9]{0,2}$`)
)

// hardMaxLength caps MaxLength: no valid number or user name is longer.
const hardMaxLength = 128

// compiled is the validated form of Rules used by Router.
type compiled struct {
	ext, userNums, rooms []pattern
	userName             *regexp.Regexp
	intl                 []string // longest first
	natPrefix, country   string
	allow, deny          []string
	trunks               map[string]string
	maxLen               int
	context              string
}

func compileRules(r Rules) (*compiled, error) {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("rules.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	c := &compiled{
		natPrefix: r.PSTN.NationalPrefix,
		country:   r.PSTN.CountryCode,
		maxLen:    r.MaxLength,
		context:   r.Context,
		trunks:    map[string]string{},
	}
	pats := func(field string, in []string) []pattern {
		out := make([]pattern, 0, len(in))
		for i, s := range in {
			p, err := compilePattern(s)
			if err != nil {
				bad(fmt.Sprintf("%s[%d]", field, i), "%q: %v", s, err)
				continue
			}
			out = append(out, p)
		}
		return out
	}
	c.ext = pats("Extensions", r.Extensions)
	c.userNums = pats("UserNumbers", r.UserNumbers)
	c.rooms = pats("Rooms", r.Rooms)

	if r.UserName != "" {
		if !strings.HasPrefix(r.UserName, "^") || !strings.HasSuffix(r.UserName, "$") {
			bad("UserName", "%q must be anchored with ^ and $", r.UserName)
		} else if re, err := regexp.Compile(r.UserName); err != nil {
			bad("UserName", "%q: %v", r.UserName, err)
		} else {
			c.userName = re
		}
	}
	if c.maxLen <= 0 || c.maxLen > hardMaxLength {
		bad("MaxLength", "%d is outside 1..%d", c.maxLen, hardMaxLength)
	}
	if !namePartRe.MatchString(c.context) {
		bad("Context", "%q must match %s", c.context, namePartRe)
	}

	p := r.PSTN
	for i, s := range p.InternationalPrefixes {
		if !digitsRe.MatchString(s) {
			bad(fmt.Sprintf("PSTN.InternationalPrefixes[%d]", i), "%q must be 1-8 digits", s)
		}
	}
	c.intl = append([]string(nil), p.InternationalPrefixes...)
	// Longest first so "011" wins over "0".
	slices.SortStableFunc(c.intl, func(a, b string) int { return len(b) - len(a) })
	if (p.NationalPrefix == "") != (p.CountryCode == "") {
		bad("PSTN.NationalPrefix", "set NationalPrefix and CountryCode together (got %q and %q)", p.NationalPrefix, p.CountryCode)
	} else if p.NationalPrefix != "" {
		if !digitsRe.MatchString(p.NationalPrefix) {
			bad("PSTN.NationalPrefix", "%q must be 1-8 digits", p.NationalPrefix)
		}
		if !countryRe.MatchString(p.CountryCode) {
			bad("PSTN.CountryCode", "%q must be 1-3 digits without '+' or leading 0", p.CountryCode)
		}
		for _, ip := range c.intl {
			if ip == p.NationalPrefix {
				bad("PSTN.NationalPrefix", "%q is also an international prefix", p.NationalPrefix)
			}
		}
	}
	prefixes := func(field string, in []string) []string {
		for i, s := range in {
			if !prefixRe.MatchString(s) {
				bad(fmt.Sprintf("%s[%d]", field, i), "%q must be '+' followed by up to 15 digits", s)
			}
		}
		return append([]string(nil), in...)
	}
	c.allow = prefixes("PSTN.Allow", p.Allow)
	c.deny = prefixes("PSTN.Deny", p.Deny)
	trunkPrefixes := slices.Sorted(maps.Keys(p.Trunks)) // stable error order
	for _, pre := range trunkPrefixes {
		trunk := p.Trunks[pre]
		if !prefixRe.MatchString(pre) {
			bad("PSTN.Trunks", "prefix %q must be '+' followed by up to 15 digits", pre)
		}
		if !trunkRe.MatchString(trunk) {
			bad("PSTN.Trunks", "trunk %q for %q must match %s", trunk, pre, trunkRe)
		}
		c.trunks[pre] = trunk
	}
	if len(c.allow) > 0 && len(c.trunks) == 0 {
		bad("PSTN.Trunks", "PSTN is allowed but no trunk is configured; add one, e.g. {\"+\": \"pstn\"}")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("dialplan: invalid rules: %w", err)
	}
	return c, nil
}
