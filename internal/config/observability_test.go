package config

import (
	"strings"
	"testing"
	"time"
)

func TestObservabilityKeysValidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		key  string
	}{
		{"metrics listen not host:port", func(c *Config) { c.Metrics.Listen = "9464" }, "metrics.listen"},
		{"metrics on the page's listener", func(c *Config) { c.Metrics.Listen = c.HTTP.Listen }, "metrics.listen"},
		{"one-way threshold too short", func(c *Config) { c.Calls.OneWayAfter = 100 * time.Millisecond }, "calls.one_way_after"},
		{"no rotation size", func(c *Config) { c.Calls.Records.MaxSizeMB = 0 }, "calls.records.max_size_mb"},
		{"no backups", func(c *Config) { c.Calls.Records.Backups = 0 }, "calls.records.backups"},
		{"negative keep", func(c *Config) { c.Calls.Records.Keep = -1 }, "calls.records.keep"},
		{"records webhook without secret", func(c *Config) { c.Calls.Records.WebhookURL = "https://crm.example.com/cdr" }, "calls.records.webhook_secret"},
		{"records webhook not http", func(c *Config) {
			c.Calls.Records.WebhookURL = "mailto:x"
			c.Calls.Records.WebhookSecret = Secret(strings.Repeat("w", 32))
		}, "calls.records.webhook_url"},
	} {
		c := validBase()
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "config key "+tc.key+":") {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.key)
		}
	}
	c := validBase()
	c.Metrics.Listen = "" // off is valid
	if err := c.Validate(); err != nil {
		t.Fatalf("metrics off: %v", err)
	}
}

func TestObservabilityFromEnvironment(t *testing.T) {
	env := map[string]string{
		"PATCHBAY_ARI_PASSWORD": "0123456789abcdef", "PATCHBAY_AUTH_TOKEN_SECRET": strings.Repeat("s", 32),
		"PATCHBAY_METRICS_LISTEN": "", "PATCHBAY_CALLS_RECORDS_FILE": "-", "PATCHBAY_CALLS_ONE_WAY_AFTER": "6s",
	}
	c, err := Load(LoadOptions{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Listen != "" || c.Calls.Records.File != "-" || c.Calls.OneWayAfter != 6*time.Second || c.Calls.Records.Keep != 1000 {
		t.Errorf("loaded %+v %+v", c.Metrics, c.Calls)
	}
}
