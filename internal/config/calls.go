package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/patchbay/patchbay/dialplan"
)

// Dialplan is what dialled numbers may become: outside (PSTN) numbers, their trunks, caller IDs and DIDs.
type Dialplan struct {
	PSTN PSTN `mapstructure:"pstn" yaml:"pstn"`
	// PhoneCallerIDs maps a softphone (asterisk.phones[].name) to the E.164 number the carrier sees when it calls
	// out; phones without one use pstn.default_caller_id, or are refused.
	PhoneCallerIDs map[string]string `mapstructure:"phone_caller_ids" yaml:"phone_caller_ids"`
	// DIDs routes inbound numbers from the trunk: "user:NAME" rings a browser user, "ext:NUMBER" an extension.
	// Numbers not listed here go to the number→room store.
	DIDs map[string]string `mapstructure:"dids" yaml:"dids"`
}

// PSTN configures outside calls. Every number is parsed by libphonenumber, normalised to E.164 and classified
// (PREMIUM_RATE, MOBILE, ...); prefixes are E.164 prefixes starting with '+', matched against that normalised form.
type PSTN struct {
	// DefaultRegion (ISO 3166, e.g. "GB") reads national numbers ("020 7946 0000"). Empty: international only.
	DefaultRegion string `mapstructure:"default_region" yaml:"default_region"`
	// InternationalPrefixes are exit codes replaced by '+'. Empty: 00 and 011 without a default region, that
	// region's own exit codes with one.
	InternationalPrefixes []string `mapstructure:"international_prefixes" yaml:"international_prefixes"`
	// NationalPrefix and CountryCode are the older way to set the default region ("0" and "44" = GB).
	NationalPrefix string `mapstructure:"national_prefix" yaml:"national_prefix"`
	CountryCode    string `mapstructure:"country_code" yaml:"country_code"`
	// AllowCountries are the regions that may be called ("*": all; "001": non-geographic numbers).
	AllowCountries []string `mapstructure:"allow_countries" yaml:"allow_countries"`
	// DenyClasses are the number classes refused (premium rate, shared cost, personal, pager, invalid).
	DenyClasses []string `mapstructure:"deny_classes" yaml:"deny_classes"`
	// Allow lists prefixes that may be called at all (empty: PSTN off); Deny prefixes refused whatever else says.
	Allow []string `mapstructure:"allow" yaml:"allow"`
	Deny  []string `mapstructure:"deny" yaml:"deny"`
	// AllowPrefixes are exceptions allowed whatever their class or country (never past Deny).
	AllowPrefixes []string `mapstructure:"allow_prefixes" yaml:"allow_prefixes"`
	// Routes pick the trunks of a number (ordered failover list) by country, class or prefix; first match wins.
	// Numbers no route matches use every trunk in asterisk.trunks order.
	Routes []Route `mapstructure:"routes" yaml:"routes"`
	// Trunks is the older form of routes: a prefix → trunk map (longest prefix wins), tried after routes.
	Trunks map[string]string `mapstructure:"trunks" yaml:"trunks"`
	// FailoverCauses pass a call to the next trunk: dial statuses (CONGESTION, CHANUNAVAIL, BUSY, NOANSWER),
	// SIP codes ("503") or classes ("5xx"). FailoverTimeout: a trunk silent (no 180/183) this long is passed over.
	FailoverCauses  []string      `mapstructure:"failover_causes" yaml:"failover_causes"`
	FailoverTimeout time.Duration `mapstructure:"failover_timeout" yaml:"failover_timeout"`
	// DefaultCallerID is sent when the caller has no caller ID of its own (a softphone without
	// dialplan.phone_caller_ids). Empty: such calls are refused.
	DefaultCallerID string `mapstructure:"default_caller_id" yaml:"default_caller_id"`
}

// Route sends the numbers it matches to Trunks, in failover order. Every criterion set must match; a route
// with none matches every number.
type Route struct {
	Countries []string `mapstructure:"countries" yaml:"countries"`
	Classes   []string `mapstructure:"classes" yaml:"classes"`
	Prefixes  []string `mapstructure:"prefixes" yaml:"prefixes"`
	Trunks    []string `mapstructure:"trunks" yaml:"trunks"`
}

// API configures the REST API's calls.
type API struct {
	// CallerIDs maps an API key's name (auth.api_keys) to the caller IDs its calls may present. A request may
	// pick one; without a choice the first is used. A key with none cannot call PSTN numbers.
	CallerIDs map[string][]string `mapstructure:"caller_ids" yaml:"caller_ids"`
	// Dial maps an API key's name to its grants, as in a token's dial claim ("ext", "pstn", "user", "*", or
	// exact numbers). A key with none may call extensions only. (Browser users are reached with connect.user.)
	Dial map[string][]string `mapstructure:"dial" yaml:"dial"`
	// TicketTTL is the lifetime of one-time join tickets the API returns.
	TicketTTL time.Duration `mapstructure:"ticket_ttl" yaml:"ticket_ttl"`
}

// Limits bound calls per browser user (token subject), per API key and per softphone.
type Limits struct {
	PerToken  LimitSet `mapstructure:"per_token" yaml:"per_token"`
	PerAPIKey LimitSet `mapstructure:"per_api_key" yaml:"per_api_key"`
	PerPhone  LimitSet `mapstructure:"per_phone" yaml:"per_phone"`
	// MaxCallDuration ends any call that lasts longer; 0: no limit.
	MaxCallDuration time.Duration `mapstructure:"max_call_duration" yaml:"max_call_duration"`
}

// LimitSet is one set of limits; 0 means unlimited.
type LimitSet struct {
	CallsPerMinute float64 `mapstructure:"calls_per_minute" yaml:"calls_per_minute"`
	Burst          int     `mapstructure:"burst" yaml:"burst"`
	MaxConcurrent  int     `mapstructure:"max_concurrent" yaml:"max_concurrent"`
	// DailyMinutes is the budget of outbound (PSTN) minutes per UTC day.
	DailyMinutes int `mapstructure:"daily_minutes" yaml:"daily_minutes"`
}

// Webhook is where call progress events are posted, signed with HMAC-SHA256.
type Webhook struct {
	URL         string        `mapstructure:"url" yaml:"url"` // empty: no webhooks
	Secret      Secret        `mapstructure:"secret" yaml:"secret"`
	MaxAttempts int           `mapstructure:"max_attempts" yaml:"max_attempts"`
	Timeout     time.Duration `mapstructure:"timeout" yaml:"timeout"`
}

// DefaultDialplan is PSTN to every country except premium-rate, shared-cost, personal, pager and invalid numbers
// and satellite ranges, through the configured trunks.
func DefaultDialplan() Dialplan {
	r := dialplan.DefaultRules().PSTN
	classes := make([]string, len(r.DenyClasses))
	for i, c := range r.DenyClasses {
		classes[i] = string(c)
	}
	return Dialplan{PSTN: PSTN{
		AllowCountries:  r.AllowCountries,
		DenyClasses:     classes,
		Allow:           r.Allow,
		Deny:            r.Deny,
		FailoverCauses:  r.FailoverCauses,
		FailoverTimeout: r.FailoverTimeout,
	}}
}

// DefaultLimits are generous enough for people and tight enough to slow a stolen token down.
func DefaultLimits() Limits {
	return Limits{
		PerToken:        LimitSet{CallsPerMinute: 10, Burst: 5, MaxConcurrent: 4, DailyMinutes: 600},
		PerAPIKey:       LimitSet{CallsPerMinute: 120, Burst: 40, MaxConcurrent: 100, DailyMinutes: 10000},
		PerPhone:        LimitSet{CallsPerMinute: 10, Burst: 5, MaxConcurrent: 4, DailyMinutes: 600},
		MaxCallDuration: 4 * time.Hour,
	}
}

// PSTNTrunks returns the configured trunks: asterisk.trunks, or else the single asterisk.trunk (which registers
// whenever it has a username, as it always did).
func (c *Config) PSTNTrunks() []Trunk {
	if len(c.Asterisk.Trunks) > 0 {
		return c.Asterisk.Trunks
	}
	t := c.Asterisk.Trunk
	t.Register = t.Username != ""
	return []Trunk{t}
}

// trunkKey is the config key of the i-th trunk of PSTNTrunks.
func (c *Config) trunkKey(i int) string {
	if len(c.Asterisk.Trunks) > 0 {
		return fmt.Sprintf("asterisk.trunks[%d]", i)
	}
	return "asterisk.trunk"
}

// Rules returns the router rules this configuration describes: the one source of the router that decides real
// calls and `patchbay route`.
func (c *Config) Rules() dialplan.Rules {
	r := dialplan.DefaultRules()
	p := c.Dialplan.PSTN
	r.PSTN.DefaultRegion = p.DefaultRegion
	r.PSTN.InternationalPrefixes = p.InternationalPrefixes
	r.PSTN.NationalPrefix, r.PSTN.CountryCode = p.NationalPrefix, p.CountryCode
	r.PSTN.AllowCountries = p.AllowCountries
	r.PSTN.DenyClasses = make([]dialplan.Class, len(p.DenyClasses))
	for i, cl := range p.DenyClasses {
		r.PSTN.DenyClasses[i] = dialplan.Class(cl)
	}
	r.PSTN.Allow, r.PSTN.Deny, r.PSTN.AllowPrefixes = p.Allow, p.Deny, p.AllowPrefixes
	r.PSTN.Trunks = nil
	for _, t := range c.PSTNTrunks() {
		r.PSTN.Trunks = append(r.PSTN.Trunks, dialplan.Trunk{
			Name: t.Name, MaxChannels: t.MaxChannels,
			DialFormat: dialplan.NumberFormat(t.DialFormat), CallerIDFormat: dialplan.NumberFormat(t.CallerIDFormat),
			CallerIDs: t.CallerIDs, DefaultCallerID: t.DefaultCallerID,
		})
	}
	r.PSTN.Routes = nil
	for _, rt := range p.Routes {
		out := dialplan.Route{Countries: rt.Countries, Prefixes: rt.Prefixes, Trunks: rt.Trunks}
		for _, cl := range rt.Classes {
			out.Classes = append(out.Classes, dialplan.Class(cl))
		}
		r.PSTN.Routes = append(r.PSTN.Routes, out)
	}
	r.PSTN.PrefixTrunks = p.Trunks
	r.PSTN.FailoverCauses, r.PSTN.FailoverTimeout = p.FailoverCauses, p.FailoverTimeout
	return r
}

// ruleKey maps a dialplan rule field ("PSTN.Routes[0].Trunks[1]") onto the config key it comes from.
func (c *Config) ruleKey(field string) string {
	rest, ok := strings.CutPrefix(field, "PSTN.")
	if !ok {
		return "dialplan"
	}
	if t, ok := strings.CutPrefix(rest, "Trunks["); ok {
		idx, sub, _ := strings.Cut(t, "]")
		i, _ := strconv.Atoi(idx)
		return c.trunkKey(i) + snakeField(sub)
	}
	if strings.HasPrefix(rest, "Trunks") {
		return "asterisk.trunks"
	}
	if pre, ok := strings.CutPrefix(rest, "PrefixTrunks."); ok {
		return "dialplan.pstn.trunks." + pre
	}
	return "dialplan.pstn." + strings.TrimPrefix(snakeField(rest), ".")
}

// snakeField turns ".Routes[0].CallerIDs" into ".routes[0].caller_ids".
func snakeField(f string) string {
	f = strings.NewReplacer("IDs", "Ids", "ID", "Id").Replace(f)
	var b strings.Builder
	for i, r := range f {
		if r >= 'A' && r <= 'Z' {
			if i > 0 && f[i-1] >= 'a' && f[i-1] <= 'z' {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	s := b.String()
	if s != "" && s[0] != '.' && s[0] != '[' {
		s = "." + s
	}
	return s
}

var (
	e164Re   = regexp.MustCompile(`^\+[1-9][0-9]{7,14}$`)
	didDstRe = regexp.MustCompile(`^(user:[a-z][a-z0-9._-]{0,31}|ext:[0-9]{1,15})$`)
)

// validateCalls checks the keys of this file; bad is Validate's reporter.
func (c *Config) validateCalls(bad func(key, format string, args ...any)) {
	if _, err := dialplan.NewRouter(c.Rules()); err != nil {
		var re *dialplan.RulesError
		if !errors.As(err, &re) {
			bad("dialplan.pstn", "%v", err)
		} else {
			for _, p := range re.Problems {
				bad(c.ruleKey(p.Field), "%s", p.Problem)
			}
		}
	}
	c.validateTrunks(bad)
	if id := c.Dialplan.PSTN.DefaultCallerID; id != "" && !e164Re.MatchString(id) {
		bad("dialplan.pstn.default_caller_id", "%q must be E.164: '+' and 8-15 digits", id)
	}
	phones := map[string]bool{}
	for _, p := range c.Asterisk.Phones {
		phones[p.Name] = true
	}
	for _, ph := range sortedKeys(c.Dialplan.PhoneCallerIDs) {
		if !phones[ph] {
			bad("dialplan.phone_caller_ids."+ph, "no phone %q in asterisk.phones", ph)
		}
		if id := c.Dialplan.PhoneCallerIDs[ph]; !e164Re.MatchString(id) {
			bad("dialplan.phone_caller_ids."+ph, "%q must be E.164: '+' and 8-15 digits", id)
		}
	}
	for _, did := range sortedKeys(c.Dialplan.DIDs) {
		if _, err := dialplan.NormalizeNumber(did); err != nil {
			bad("dialplan.dids."+did, "the DID is not a number: %v", err)
		}
		if dst := c.Dialplan.DIDs[did]; !didDstRe.MatchString(dst) {
			bad("dialplan.dids."+did, "%q must be user:NAME or ext:NUMBER", dst)
		}
	}
	for _, name := range sortedKeys(c.API.CallerIDs) {
		if _, ok := c.Auth.APIKeys[name]; !ok {
			bad("api.caller_ids."+name, "no API key %q in auth.api_keys", name)
		}
		for i, id := range c.API.CallerIDs[name] {
			if !e164Re.MatchString(id) {
				bad(fmt.Sprintf("api.caller_ids.%s[%d]", name, i), "%q must be E.164: '+' and 8-15 digits", id)
			}
		}
	}
	for _, name := range sortedKeys(c.API.Dial) {
		if _, ok := c.Auth.APIKeys[name]; !ok {
			bad("api.dial."+name, "no API key %q in auth.api_keys", name)
		}
	}
	if c.API.TicketTTL <= 0 || c.API.TicketTTL > 10*time.Minute {
		bad("api.ticket_ttl", "%v must be above 0 and at most 10m (tickets are short-lived)", c.API.TicketTTL)
	}
	for key, l := range map[string]LimitSet{"limits.per_token": c.Limits.PerToken, "limits.per_api_key": c.Limits.PerAPIKey, "limits.per_phone": c.Limits.PerPhone} {
		if l.CallsPerMinute < 0 || l.Burst < 0 || l.MaxConcurrent < 0 || l.DailyMinutes < 0 {
			bad(key, "values must not be negative (0 means unlimited)")
		}
	}
	if c.Limits.MaxCallDuration < 0 {
		bad("limits.max_call_duration", "must not be negative (0 means unlimited)")
	}
	if w := c.Webhook; w.URL != "" {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("webhook.url", "%q is not an http(s) URL", w.URL)
		}
		if len(w.Secret) < 32 {
			bad("webhook.secret", "must be at least 32 characters when webhook.url is set (e.g. `openssl rand -hex 32`)")
		}
	}
	// Checked with or without webhook.url: the records webhook (calls.records.webhook_url) retries by them too.
	if w := c.Webhook; w.MaxAttempts < 0 || w.MaxAttempts > 20 {
		bad("webhook.max_attempts", "%d must be 0 (default 6) to 20", w.MaxAttempts)
	}
	if c.Webhook.Timeout < 0 {
		bad("webhook.timeout", "must not be negative (0 means 5s)")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// DIDTarget splits a dialplan.dids value into its kind ("user" or "ext") and name.
func DIDTarget(v string) (kind, name string) {
	kind, name, _ = strings.Cut(v, ":")
	return kind, name
}
