package dialplan

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
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
	// MaxLength bounds the input after surrounding spaces are dropped and
	// full-width characters folded to ASCII.
	MaxLength int
	// Context is the Asterisk dialplan context of Decision.Endpoint.
	Context string
}

// PSTNRules describe how outside numbers are read, which are allowed and which trunks carry them. Every number is
// parsed by libphonenumber, normalised to E.164 and classified; prefixes below are E.164 prefixes starting with
// '+', matched against that normalised form (never against what was typed).
//
// A number is refused when, in this order: it matches Deny; it matches none of Allow; its class is in
// DenyClasses; its country is not in AllowCountries. AllowPrefixes lets chosen numbers past the last three (not
// past Deny).
type PSTNRules struct {
	// DefaultRegion (ISO 3166 alpha-2, e.g. "GB") reads national numbers ("020 7946 0000") and that region's own
	// international prefix. Empty: only numbers in international form are outside numbers.
	DefaultRegion string
	// InternationalPrefixes are exit codes replaced by '+' before parsing. Empty: "00" and "011" without a
	// DefaultRegion; with one, that region's own exit codes (libphonenumber knows them).
	InternationalPrefixes []string
	// NationalPrefix and CountryCode are the older way to name the default region ("0" and "44" = GB):
	// CountryCode picks the main region of that calling code. Both or neither; DefaultRegion wins.
	NationalPrefix string
	CountryCode    string
	// AllowCountries lists the regions that may be called (ISO 3166 alpha-2, "001" for non-geographic numbers),
	// or "*" for all. Empty: none (outside calls off unless AllowPrefixes admits some).
	AllowCountries []string
	// DenyClasses are number classes refused (DefaultDenyClasses unless set).
	DenyClasses []Class
	// Allow lists prefixes that may be called at all ("+" for all); empty disables outside calls.
	Allow []string
	// Deny lists prefixes refused whatever else says: deny wins.
	Deny []string
	// AllowPrefixes are exceptions: numbers under them are allowed whatever their class, country or Allow say
	// (e.g. one premium-rate support line). Each must be longer than its country code.
	AllowPrefixes []string
	// Trunks are the trunks outside calls may use, in order of preference. Numbers no route matches use all of
	// them in this order (the first, then failover to the next).
	Trunks []Trunk
	// Routes choose the trunks (with failover order) of a number by country, class or prefix; the first route
	// that matches wins.
	Routes []Route
	// PrefixTrunks is the older form of Routes: prefix → trunk, longest prefix first, tried after Routes.
	PrefixTrunks map[string]string
	// FailoverCauses say which outcomes of a trunk attempt pass the call to the next trunk: ARI dial statuses
	// (CONGESTION, CHANUNAVAIL, BUSY, NOANSWER), SIP status codes ("503") or classes ("5xx").
	FailoverCauses []string
	// FailoverTimeout passes the call to the next trunk when a trunk has not rung (180/183) this long after
	// the INVITE. 0: only PJSIP's own timeout (32 s).
	FailoverTimeout time.Duration
}

// Trunk is one carrier as routing sees it. Its SIP side (host, transport, auth) lives in the Asterisk config.
type Trunk struct {
	// Name is the PJSIP endpoint: calls go out as PJSIP/<number>@<Name>.
	Name string
	// MaxChannels bounds the calls on this trunk at once; a trunk at its limit passes the call to the next.
	// 0: no limit.
	MaxChannels int
	// DialFormat is how the number is written in the Request-URI: e164 ("+442079460000", default), digits
	// ("442079460000") or national ("02079460000").
	DialFormat NumberFormat
	// CallerIDFormat is how the caller ID is written in From and P-Asserted-Identity (same values).
	CallerIDFormat NumberFormat
	// CallerIDs are the E.164 prefixes of caller IDs the carrier accepts; empty: any. A caller ID outside
	// them is replaced by DefaultCallerID, or the trunk is skipped when that is empty.
	CallerIDs []string
	// DefaultCallerID is presented when the caller has none, or one the carrier does not accept.
	DefaultCallerID string
}

// Route sends the numbers it matches to Trunks, in failover order. A route matches a number when every
// criterion it sets matches (a country in Countries, a class in Classes, a prefix in Prefixes); a route setting
// none matches every number.
type Route struct {
	Countries []string
	Classes   []Class
	Prefixes  []string
	Trunks    []string
}

// NumberFormat is how a number is written toward a carrier.
type NumberFormat string

// Number formats.
const (
	FormatE164     NumberFormat = "e164"
	FormatDigits   NumberFormat = "digits"
	FormatNational NumberFormat = "national"
)

// DefaultUserName is the user name syntax shared with the Asterisk dialplan.
const DefaultUserName = `^[a-z][a-z0-9._-]{0,31}$`

// DefaultFailoverCauses pass a call on when the carrier is overloaded or down, never when the callee is busy or
// does not answer (another carrier would ring the same phone).
var DefaultFailoverCauses = []string{"503", "CONGESTION", "CHANUNAVAIL"}

// DefaultFailoverTimeout is how long a trunk may stay silent before the call moves on.
const DefaultFailoverTimeout = 5 * time.Second

// DefaultDeny are prefixes refused outright although libphonenumber does not class them premium: satellite
// and international network ranges, billed at many times a national rate.
var DefaultDeny = []string{"+870", "+881", "+882", "+883"}

// DefaultRules match the shipped Asterisk dialplan: extensions 1XX and
// 600-604, browser users by name or 7XXX, rooms 8XXX, and PSTN to every
// country except premium-rate, shared-cost, personal, pager and invalid
// numbers and the DefaultDeny ranges, over one trunk "pstn".
func DefaultRules() Rules {
	return Rules{
		Extensions:  []string{"_1XX", "_60[0-4]"},
		UserName:    DefaultUserName,
		UserNumbers: []string{"_7XXX"},
		Rooms:       []string{"_8XXX"},
		PSTN: PSTNRules{
			AllowCountries:  []string{"*"},
			DenyClasses:     slices.Clone(DefaultDenyClasses),
			Allow:           []string{"+"},
			Deny:            slices.Clone(DefaultDeny),
			Trunks:          []Trunk{{Name: "pstn"}},
			FailoverCauses:  slices.Clone(DefaultFailoverCauses),
			FailoverTimeout: DefaultFailoverTimeout,
		},
		MaxLength: 32,
		Context:   "from-patchbay",
	}
}

var (
	namePartRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	digitsRe   = regexp.MustCompile(`^[0-9]{1,8}$`)
	prefixRe   = regexp.MustCompile(`^\+[0-9]{0,15}$`)
	// TrunkNameRe is what a trunk name may be: it ends up in a dial string and a config section name.
	TrunkNameRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)
	countryRe   = regexp.MustCompile(`^[1-9][0-9]{0,2}$`)
	sipCodeRe   = regexp.MustCompile(`^[3-6]([0-9]{2}|xx)$`)
)

// compiledRoute is a validated Route with its description.
type compiledRoute struct {
	Route
	desc string
}

// hardMaxLength caps MaxLength: no valid number or user name is longer.
const hardMaxLength = 128

// dialStatuses are the ARI dial statuses a failover cause may name.
var dialStatuses = []string{"CONGESTION", "CHANUNAVAIL", "BUSY", "NOANSWER"}

// compiled is the validated form of Rules used by Router.
type compiled struct {
	ext, userNums, rooms []pattern
	userName             *regexp.Regexp
	region               string
	intl                 []string // longest first
	allCountries         bool
	countries            map[string]bool
	denyClass            map[Class]bool
	allow, deny          []string
	allowPrefixes        []string
	trunks               []Trunk
	trunkByName          map[string]int
	routes               []compiledRoute
	failover             []string
	failoverTimeout      time.Duration
	maxLen               int
	context              string
}

// RulesError lists every problem NewRouter found, each naming its field.
type RulesError struct {
	Problems []RuleProblem
}

// RuleProblem is one bad field of Rules, e.g. Field "PSTN.Routes[0].Trunks[1]".
type RuleProblem struct {
	Field, Problem string
}

func (e *RulesError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = "rules." + p.Field + ": " + p.Problem
	}
	return "dialplan: invalid rules: " + strings.Join(lines, "\n")
}

func compileRules(r Rules) (*compiled, error) {
	var errs []RuleProblem
	bad := func(field string, format string, args ...any) {
		errs = append(errs, RuleProblem{field, fmt.Sprintf(format, args...)})
	}
	c := &compiled{
		maxLen:  r.MaxLength,
		context: r.Context,
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
	compilePSTN(c, r.PSTN, bad)
	if len(errs) > 0 {
		return nil, &RulesError{Problems: errs}
	}
	return c, nil
}

func compilePSTN(c *compiled, p PSTNRules, bad func(field string, format string, args ...any)) {
	c.region = strings.ToUpper(p.DefaultRegion)
	if c.region != "" && !phonenumbers.GetSupportedRegions()[c.region] {
		bad("PSTN.DefaultRegion", "%q is not a region libphonenumber knows (ISO 3166 alpha-2, e.g. GB, US, DE)", p.DefaultRegion)
	}
	for i, s := range p.InternationalPrefixes {
		if !digitsRe.MatchString(s) {
			bad(fmt.Sprintf("PSTN.InternationalPrefixes[%d]", i), "%q must be 1-8 digits", s)
		}
	}
	c.intl = slices.Clone(p.InternationalPrefixes)
	// Longest first so "011" wins over "0".
	slices.SortStableFunc(c.intl, func(a, b string) int { return len(b) - len(a) })
	explicitIntl := len(c.intl) > 0
	if (p.NationalPrefix == "") != (p.CountryCode == "") {
		bad("PSTN.NationalPrefix", "set NationalPrefix and CountryCode together (got %q and %q)", p.NationalPrefix, p.CountryCode)
	} else if p.CountryCode != "" {
		cc, _ := strconv.Atoi(p.CountryCode)
		region := phonenumbers.GetRegionCodeForCountryCode(cc)
		switch {
		case !countryRe.MatchString(p.CountryCode):
			bad("PSTN.CountryCode", "%q must be 1-3 digits without '+' or leading 0", p.CountryCode)
		case region == "ZZ" || region == NonGeoRegion:
			bad("PSTN.CountryCode", "%q is not the calling code of a country", p.CountryCode)
		case !digitsRe.MatchString(p.NationalPrefix):
			bad("PSTN.NationalPrefix", "%q must be 1-8 digits", p.NationalPrefix)
		case phonenumbers.GetNddPrefixForRegion(region, true) != p.NationalPrefix:
			bad("PSTN.NationalPrefix", "%q is not the national prefix of %s (+%s), which is %q", p.NationalPrefix, region, p.CountryCode, phonenumbers.GetNddPrefixForRegion(region, true))
		case c.region == "":
			c.region = region
		}
	}
	if !explicitIntl && c.region == "" {
		c.intl = []string{"011", "00"}
	}
	for _, ip := range c.intl {
		if c.region != "" && strings.HasPrefix(ip, phonenumbers.GetNddPrefixForRegion(c.region, true)) && !regionExits(c.region, ip) {
			// "011" in GB is Sheffield's area code, not an exit: reading it as one would dial abroad.
			bad("PSTN.InternationalPrefixes", "%q starts like a national number of %s; list only exit codes of that region", ip, c.region)
		}
	}

	c.countries = map[string]bool{}
	for i, s := range p.AllowCountries {
		u := strings.ToUpper(s)
		switch {
		case u == "*":
			c.allCountries = true
		case u == NonGeoRegion || phonenumbers.GetSupportedRegions()[u]:
			c.countries[u] = true
		default:
			bad(fmt.Sprintf("PSTN.AllowCountries[%d]", i), "%q is not a region (ISO 3166 alpha-2 such as GB, \"001\" for non-geographic numbers, or \"*\")", s)
		}
	}
	c.denyClass = map[Class]bool{}
	for i, cl := range p.DenyClasses {
		pc, err := ParseClass(string(cl))
		if err != nil {
			bad(fmt.Sprintf("PSTN.DenyClasses[%d]", i), "%v", err)
			continue
		}
		c.denyClass[pc] = true
	}
	prefixes := func(field string, in []string) []string {
		for i, s := range in {
			if !prefixRe.MatchString(s) {
				bad(fmt.Sprintf("%s[%d]", field, i), "%q must be '+' followed by up to 15 digits", s)
			}
		}
		return slices.Clone(in)
	}
	c.allow = prefixes("PSTN.Allow", p.Allow)
	c.deny = prefixes("PSTN.Deny", p.Deny)
	c.allowPrefixes = prefixes("PSTN.AllowPrefixes", p.AllowPrefixes)
	for i, s := range c.allowPrefixes {
		if prefixRe.MatchString(s) && !longerThanCountryCode(s) {
			bad(fmt.Sprintf("PSTN.AllowPrefixes[%d]", i), "%q would admit a whole country's premium-rate numbers; allow countries with AllowCountries and list only specific numbers or ranges here", s)
		}
	}

	c.trunkByName = map[string]int{}
	for i, t := range p.Trunks {
		f := fmt.Sprintf("PSTN.Trunks[%d]", i)
		if !TrunkNameRe.MatchString(t.Name) {
			bad(f+".Name", "%q must match %s", t.Name, TrunkNameRe)
			continue
		}
		if _, dup := c.trunkByName[t.Name]; dup {
			bad(f+".Name", "trunk %q is listed twice", t.Name)
			continue
		}
		if t.MaxChannels < 0 {
			bad(f+".MaxChannels", "%d must not be negative (0: no limit)", t.MaxChannels)
		}
		if t.DialFormat == "" {
			t.DialFormat = FormatE164
		}
		if t.CallerIDFormat == "" {
			t.CallerIDFormat = FormatE164
		}
		for field, nf := range map[string]NumberFormat{".DialFormat": t.DialFormat, ".CallerIDFormat": t.CallerIDFormat} {
			if nf != FormatE164 && nf != FormatDigits && nf != FormatNational {
				bad(f+field, "%q must be e164, digits or national", nf)
			}
		}
		t.CallerIDs = prefixes(f+".CallerIDs", t.CallerIDs)
		if t.DefaultCallerID != "" && !E164Re.MatchString(t.DefaultCallerID) {
			bad(f+".DefaultCallerID", "%q must be E.164: '+' and 7-15 digits", t.DefaultCallerID)
		}
		c.trunkByName[t.Name] = len(c.trunks)
		c.trunks = append(c.trunks, t)
	}
	checkTrunks := func(field string, names []string) {
		if len(names) == 0 {
			bad(field, "a route needs at least one trunk")
		}
		seen := map[string]bool{}
		for j, n := range names {
			if _, ok := c.trunkByName[n]; !ok {
				bad(fmt.Sprintf("%s[%d]", field, j), "no trunk %q; trunks are %s", n, c.trunkList())
			}
			if seen[n] {
				bad(fmt.Sprintf("%s[%d]", field, j), "trunk %q is listed twice", n)
			}
			seen[n] = true
		}
	}
	for i, rt := range p.Routes {
		f := fmt.Sprintf("PSTN.Routes[%d]", i)
		out := Route{Trunks: slices.Clone(rt.Trunks), Prefixes: prefixes(f+".Prefixes", rt.Prefixes)}
		for j, s := range rt.Countries {
			u := strings.ToUpper(s)
			if u != NonGeoRegion && !phonenumbers.GetSupportedRegions()[u] {
				bad(fmt.Sprintf("%s.Countries[%d]", f, j), "%q is not a region (ISO 3166 alpha-2, or \"001\")", s)
			}
			out.Countries = append(out.Countries, u)
		}
		for j, cl := range rt.Classes {
			pc, err := ParseClass(string(cl))
			if err != nil {
				bad(fmt.Sprintf("%s.Classes[%d]", f, j), "%v", err)
			}
			out.Classes = append(out.Classes, pc)
		}
		checkTrunks(f+".Trunks", rt.Trunks)
		c.routes = append(c.routes, compiledRoute{out, describeRoute(fmt.Sprintf("routes[%d]", i), out)})
	}
	legacy := slices.Collect(maps.Keys(p.PrefixTrunks))
	// Longest prefix first, then alphabetical, so the order is stable.
	slices.SortFunc(legacy, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	for _, pre := range legacy {
		trunk := p.PrefixTrunks[pre]
		if !prefixRe.MatchString(pre) {
			bad("PSTN.PrefixTrunks."+pre, "prefix %q must be '+' followed by up to 15 digits", pre)
		}
		if _, ok := c.trunkByName[trunk]; !ok {
			bad("PSTN.PrefixTrunks."+pre, "no trunk %q for prefix %q; trunks are %s", trunk, pre, c.trunkList())
		}
		rt := Route{Prefixes: []string{pre}, Trunks: []string{trunk}}
		c.routes = append(c.routes, compiledRoute{rt, describeRoute("trunks."+pre, rt)})
	}
	if (len(c.allow) > 0 || len(c.allowPrefixes) > 0) && len(c.trunks) == 0 {
		bad("PSTN.Trunks", "outside calls are allowed but no trunk is configured; add one")
	}
	for i, s := range p.FailoverCauses {
		u := strings.ToUpper(s)
		if !slices.Contains(dialStatuses, u) && !sipCodeRe.MatchString(strings.ToLower(s)) {
			bad(fmt.Sprintf("PSTN.FailoverCauses[%d]", i), "%q must be a dial status (%s), a SIP status code such as 503, or a class such as 5xx", s, strings.Join(dialStatuses, ", "))
		}
		c.failover = append(c.failover, strings.ToLower(u))
	}
	if p.FailoverTimeout < 0 {
		bad("PSTN.FailoverTimeout", "%v must not be negative (0: PJSIP's own timeout)", p.FailoverTimeout)
	}
	c.failoverTimeout = p.FailoverTimeout
}

func (c *compiled) trunkNames() []string {
	names := make([]string, len(c.trunks))
	for i, t := range c.trunks {
		names[i] = t.Name
	}
	return names
}

func (c *compiled) trunkList() string {
	if len(c.trunks) == 0 {
		return "(none)"
	}
	return strings.Join(c.trunkNames(), ", ")
}

// regionExits reports whether ip is an international prefix of region: libphonenumber, which knows each region's,
// reads ip followed by a foreign number as that number.
func regionExits(region, ip string) bool {
	n, err := phonenumbers.ParseAndKeepRawInput(ip+"12125550100", region)
	return err == nil && n.GetCountryCodeSource() == phonenumbers.PhoneNumber_FROM_NUMBER_WITH_IDD
}

// longerThanCountryCode reports whether prefix names more than a calling code ("+4490" but not "+44" or "+").
func longerThanCountryCode(prefix string) bool {
	digits := strings.TrimPrefix(prefix, "+")
	for l := 1; l <= 3 && l <= len(digits); l++ {
		cc, _ := strconv.Atoi(digits[:l])
		if phonenumbers.GetRegionCodeForCountryCode(cc) != "ZZ" {
			return len(digits) > l
		}
	}
	return len(digits) > 3
}
