package config

import (
	"regexp"
	"time"

	"github.com/patchbay/patchbay/dialplan"
)

// Calls is how calls are set up, watched, torn down and recorded (records: observability.go).
type Calls struct {
	// OneWayAfter is how long one media direction may be silent while the other flows before the call is
	// flagged one_way_audio (quality event to the browser, metric, record flag). Default 4s.
	OneWayAfter time.Duration `mapstructure:"one_way_after" yaml:"one_way_after"`
	Records     Records       `mapstructure:"records" yaml:"records"`

	// SetupTimeout bounds each setup step in Asterisk: a slow or frozen Asterisk fails the call with a clear cause.
	SetupTimeout time.Duration `mapstructure:"setup_timeout" yaml:"setup_timeout"`
	// NoMediaTimeout: browser media must reach Asterisk within this of the answer (the far end is dialled only
	// then); otherwise the call ends with no_audio. Mid-call silence alone ends nothing (browserLeg.watch).
	NoMediaTimeout time.Duration `mapstructure:"no_media_timeout" yaml:"no_media_timeout"`
	// MaxSetups bounds calls being set up at once; past it new calls are refused at once (unavailable).
	MaxSetups int `mapstructure:"max_setups" yaml:"max_setups"`
	// EndpointExtensions are extension patterns that are PJSIP endpoints of the same name (phones): a browser's
	// call to one dials the endpoint straight into a two-party bridge with the browser's channel, with no Local
	// pair and no dialplan. Leave an extension out to keep its dialplan logic (voicemail on no answer…).
	EndpointExtensions []string `mapstructure:"endpoint_extensions" yaml:"endpoint_extensions"`
	// DialplanExtensions are extension patterns the dialplan answers itself (announcements, echo, conferences):
	// a browser's channel runs that extension like a phone's would, with no bridge and no Local pair. DTMF from
	// the browser does not reach the dialplan this way (the RTP channel carries no RFC 4733 events): leave IVRs
	// out.
	DialplanExtensions []string `mapstructure:"dialplan_extensions" yaml:"dialplan_extensions"`
}

func defaultLifecycle() Calls {
	return Calls{SetupTimeout: 10 * time.Second, NoMediaTimeout: 10 * time.Second, MaxSetups: 64,
		// The shipped dialplan: phones 1XX are PJSIP endpoints; 600 (echo), 601 and 603 (tones) answer by
		// themselves; 602 reads DTMF and goes through a Local channel.
		EndpointExtensions: []string{"_1XX"}, DialplanExtensions: []string{"600", "601", "603"}}
}

var instanceRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,23}$`)

func (c *Config) validateLifecycle(bad func(key, format string, args ...any)) {
	l := c.Calls
	if l.SetupTimeout <= 0 {
		bad("calls.setup_timeout", "must be positive, e.g. 10s")
	}
	if l.NoMediaTimeout <= 0 {
		bad("calls.no_media_timeout", "must be positive, e.g. 10s")
	}
	if l.MaxSetups < 1 {
		bad("calls.max_setups", "must be at least 1")
	}
	if _, err := dialplan.CompilePatterns(l.EndpointExtensions); err != nil {
		bad("calls.endpoint_extensions", "%v", err)
	}
	if _, err := dialplan.CompilePatterns(l.DialplanExtensions); err != nil {
		bad("calls.dialplan_extensions", "%v", err)
	}
	o := c.ARI
	if o.Instance != "" && !instanceRe.MatchString(o.Instance) {
		bad("ari.instance", "%q: use 1-24 of a-z 0-9 and '-', starting with a letter or digit", o.Instance)
	}
	if o.SweepInterval < time.Second {
		bad("ari.sweep_interval", "must be at least 1s")
	}
	if o.PingInterval < 100*time.Millisecond {
		bad("ari.ping_interval", "must be at least 100ms")
	}
	if o.DeadAfter < o.PingInterval {
		bad("ari.dead_after", "must be at least ari.ping_interval (%v): no pong could arrive in time", o.PingInterval)
	}
	a := c.HTTP
	if a.MaxUnauthenticatedPerIP < 1 || a.MaxUnauthenticated < a.MaxUnauthenticatedPerIP {
		bad("http.max_unauthenticated_per_ip", "must be at least 1 and at most http.max_unauthenticated (%d)", a.MaxUnauthenticated)
	}
	if c.Auth.MaxTokenLifetime <= 0 {
		bad("auth.max_token_lifetime", "must be positive, e.g. 24h")
	} else if c.Auth.TokenTTL > c.Auth.MaxTokenLifetime {
		bad("auth.token_ttl", "%v is longer than auth.max_token_lifetime %v: tokens minted here would be refused", c.Auth.TokenTTL, c.Auth.MaxTokenLifetime)
	}
}
