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
		{"bad allow prefix", func(c *Config) { c.Dialplan.PSTN.Allow = []string{"44"} }, "dialplan.pstn.allow[0]"},
		{"bad region", func(c *Config) { c.Dialplan.PSTN.DefaultRegion = "UK" }, "dialplan.pstn.default_region"},
		{"bad country", func(c *Config) { c.Dialplan.PSTN.AllowCountries = []string{"GB", "EU"} }, "dialplan.pstn.allow_countries[1]"},
		{"bad class", func(c *Config) { c.Dialplan.PSTN.DenyClasses = []string{"PREMIUM"} }, "dialplan.pstn.deny_classes[0]"},
		{"bad failover cause", func(c *Config) { c.Dialplan.PSTN.FailoverCauses = []string{"FAILED"} }, "dialplan.pstn.failover_causes[0]"},
		{"route to an unknown trunk", func(c *Config) {
			c.Dialplan.PSTN.Routes = []Route{{Countries: []string{"GB"}, Trunks: []string{"carrier", "backup"}}}
		}, "dialplan.pstn.routes[0].trunks[1]"},
		{"bad trunk dial format", func(c *Config) {
			c.Asterisk.Trunks = []Trunk{{Name: "a", Host: "127.0.0.2"}, {Name: "b", Host: "127.0.0.3", DialFormat: "intl"}}
		}, "asterisk.trunks[1].dial_format"},
		{"bad trunk caller ID", func(c *Config) {
			c.Asterisk.Trunks = []Trunk{{Name: "a", Host: "127.0.0.2", DefaultCallerID: "0207"}}
		}, "asterisk.trunks[0].default_caller_id"},
		{"negative channels", func(c *Config) { c.Asterisk.Trunk.MaxChannels = -1 }, "asterisk.trunk.max_channels"},
		{"trunk without host", func(c *Config) { c.Asterisk.Trunks = []Trunk{{Name: "a"}} }, "asterisk.trunks[0].host"},
		{"trunk twice", func(c *Config) {
			c.Asterisk.Trunks = []Trunk{{Name: "a", Host: "127.0.0.2"}, {Name: "a", Host: "127.0.0.3"}}
		}, "asterisk.trunks[1].name"},
		{"bad codec", func(c *Config) { c.Asterisk.Trunks = []Trunk{{Name: "a", Host: "127.0.0.2", Codecs: []string{"pcma"}}} }, "asterisk.trunks[0].codecs[0]"},
		{"bad transport", func(c *Config) { c.Asterisk.Trunk.Transport = "sctp" }, "asterisk.trunk.transport"},
		{"port twice", func(c *Config) { c.Asterisk.Trunk.Host = "127.0.0.2:5060"; c.Asterisk.Trunk.Port = 5070 }, "asterisk.trunk.host"},
		{"both trunk forms", func(c *Config) {
			c.Asterisk.Trunk.Host = "127.0.0.2"
			c.Asterisk.Trunks = []Trunk{{Name: "a", Host: "127.0.0.3"}}
		}, "asterisk.trunk"},
		{"register without username", func(c *Config) {
			c.Asterisk.Trunks = []Trunk{{Name: "a", Host: "127.0.0.2", Register: true}}
		}, "asterisk.trunks[0].register"},
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
		// The records webhook retries by webhook.max_attempts and webhook.timeout: they are checked without webhook.url.
		{"records webhook attempts past 20", func(c *Config) {
			c.Calls.Records.WebhookURL, c.Calls.Records.WebhookSecret = "https://crm.example.com/cdr", Secret(strings.Repeat("w", 32))
			c.Webhook.MaxAttempts = 50
		}, "webhook.max_attempts"},
		{"negative webhook timeout", func(c *Config) { c.Webhook.Timeout = -time.Second }, "webhook.timeout"},
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
	if r := c.Rules(); len(r.PSTN.Trunks) != 1 || r.PSTN.Trunks[0].Name != c.Asterisk.Trunk.Name {
		t.Errorf("default trunks %+v, want asterisk.trunk.name %q alone", r.PSTN.Trunks, c.Asterisk.Trunk.Name)
	}
}
