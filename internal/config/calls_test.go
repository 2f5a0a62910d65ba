package config

import (
	"strings"
	"testing"
	"time"
)

func validBase() Config {
	c := Defaults()
	c.ARI.Password = "0123456789abcdef"
	c.Auth.TokenSecret = Secret(strings.Repeat("s", 32))
	c.fillDerived()
	return c
}

func TestCallsKeysValidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		key  string
	}{
		{"bad allow prefix", func(c *Config) { c.Dialplan.PSTN.Allow = []string{"44"} }, "dialplan.pstn"},
		{"unknown trunk", func(c *Config) { c.Dialplan.PSTN.Trunks = map[string]string{"+44": "other"} }, "dialplan.pstn.trunks.+44"},
		{"bad default caller ID", func(c *Config) { c.Dialplan.PSTN.DefaultCallerID = "alice" }, "dialplan.pstn.default_caller_id"},
		{"caller ID of an unknown phone", func(c *Config) { c.Dialplan.PhoneCallerIDs = map[string]string{"199": "+442071230001"} }, "dialplan.phone_caller_ids.199"},
		{"bad DID target", func(c *Config) { c.Dialplan.DIDs = map[string]string{"+442071230001": "Local/x"} }, "dialplan.dids.+442071230001"},
		{"caller IDs of an unknown key", func(c *Config) { c.API.CallerIDs = map[string][]string{"crm": {"+442071230001"}} }, "api.caller_ids.crm"},
		{"bad API caller ID", func(c *Config) {
			c.Auth.APIKeys = map[string]Secret{"crm": Secret(strings.Repeat("k", 24))}
			c.API.CallerIDs = map[string][]string{"crm": {"100&PJSIP/x"}}
		}, "api.caller_ids.crm[0]"},
		{"long ticket TTL", func(c *Config) { c.API.TicketTTL = time.Hour }, "api.ticket_ttl"},
		{"negative limit", func(c *Config) { c.Limits.PerToken.MaxConcurrent = -1 }, "limits.per_token"},
		{"webhook without secret", func(c *Config) { c.Webhook.URL = "https://crm.example.com/hook" }, "webhook.secret"},
		{"webhook not http", func(c *Config) { c.Webhook.URL = "ftp://x"; c.Webhook.Secret = Secret(strings.Repeat("w", 32)) }, "webhook.url"},
	} {
		c := validBase()
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "config key "+tc.key+":") {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.key)
		}
	}
	c := validBase()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if r := c.Rules(); r.PSTN.Trunks["+"] != c.Asterisk.Trunk.Name {
		t.Errorf("default trunk for every number is %q, want asterisk.trunk.name %q", r.PSTN.Trunks["+"], c.Asterisk.Trunk.Name)
	}
}
