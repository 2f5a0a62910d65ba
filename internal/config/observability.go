package config

import (
	"net"
	"net/url"
	"time"
)

// Metrics is the Prometheus endpoint.
type Metrics struct {
	// Listen is host:port of the /metrics listener, separate from http.listen so it never faces browsers.
	// Default 127.0.0.1:9464 (loopback); empty turns metrics off.
	Listen string `mapstructure:"listen" yaml:"listen"`
}

// Records are the call records: one JSON object per ended or refused call.
type Records struct {
	// File is where records are appended as JSON lines; "-" writes them to standard output; empty: no file.
	File string `mapstructure:"file" yaml:"file"`
	// MaxSizeMB rotates the file once it reaches this size (FILE → FILE.1 …); Backups rotated files are kept.
	MaxSizeMB int `mapstructure:"max_size_mb" yaml:"max_size_mb"`
	Backups   int `mapstructure:"backups" yaml:"backups"`
	// Keep is how many recent records stay in memory for GET /api/v1/calls; 0: none.
	Keep int `mapstructure:"keep" yaml:"keep"`
	// Instance names this Patchbay in each record; default the host name.
	Instance string `mapstructure:"instance" yaml:"instance"`
	// WebhookURL, if set, receives each record as a signed POST (event call.record, signed like webhook.*).
	WebhookURL    string `mapstructure:"webhook_url" yaml:"webhook_url"`
	WebhookSecret Secret `mapstructure:"webhook_secret" yaml:"webhook_secret"`
}

// DefaultMetrics and DefaultCalls are the defaults of this file.
func DefaultMetrics() Metrics { return Metrics{Listen: "127.0.0.1:9464"} }

// DefaultCalls keeps 1000 records in memory and writes none to disk until calls.records.file is set.
func DefaultCalls() Calls {
	c := defaultLifecycle()
	c.OneWayAfter, c.Records = 4*time.Second, Records{MaxSizeMB: 100, Backups: 5, Keep: 1000}
	return c
}

func (c *Config) validateObservability(bad func(key, format string, args ...any)) {
	if l := c.Metrics.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			bad("metrics.listen", "%q is not host:port (e.g. 127.0.0.1:9464), or empty to turn metrics off: %v", l, err)
		} else if _, port, _ := net.SplitHostPort(l); l == c.HTTP.Listen && port != "0" {
			bad("metrics.listen", "%q is also http.listen: metrics need a listener of their own", l)
		}
	}
	if c.Calls.OneWayAfter < time.Second || c.Calls.OneWayAfter > 5*time.Minute {
		bad("calls.one_way_after", "%v must be between 1s and 5m, e.g. 4s", c.Calls.OneWayAfter)
	}
	r := c.Calls.Records
	if r.MaxSizeMB < 1 || r.MaxSizeMB > 1<<20 {
		bad("calls.records.max_size_mb", "%d must be between 1 and 1048576", r.MaxSizeMB)
	}
	if r.Backups < 1 || r.Backups > 1000 {
		bad("calls.records.backups", "%d must be between 1 and 1000", r.Backups)
	}
	if r.Keep < 0 || r.Keep > 1_000_000 {
		bad("calls.records.keep", "%d must be between 0 and 1000000", r.Keep)
	}
	if r.WebhookURL != "" {
		u, err := url.Parse(r.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("calls.records.webhook_url", "%q is not an http(s) URL", r.WebhookURL)
		}
		if len(r.WebhookSecret) < 32 {
			bad("calls.records.webhook_secret", "must be at least 32 characters when calls.records.webhook_url is set (e.g. `openssl rand -hex 32`)")
		}
	}
}
