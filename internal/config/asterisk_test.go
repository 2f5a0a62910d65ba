package config

import (
	"strings"
	"testing"
)

// TestBenchWebRTCEndpoints: off by default; when asked for, the rendered endpoints and the bench derive the same
// passwords from the token secret, different per endpoint and per secret.
func TestBenchWebRTCEndpoints(t *testing.T) {
	c := Defaults()
	c.Auth.TokenSecret = Secret(strings.Repeat("s", 32))
	c.ARI.Password = "ari-pass"
	if n := len(c.AsteriskParams("").BenchWebRTC); n != 0 {
		t.Fatalf("default renders %d bench endpoints, want 0", n)
	}
	c.Asterisk.BenchWebRTCEndpoints = 3
	p := c.AsteriskParams("")
	if len(p.BenchWebRTC) != 3 {
		t.Fatalf("rendered %d bench endpoints, want 3", len(p.BenchWebRTC))
	}
	name, pass := c.BenchWebRTCEndpoint(2)
	if got := p.BenchWebRTC[1]; got.Name != name || got.Password != pass || name != "bench-webrtc-2" {
		t.Fatalf("endpoint 2: rendered %+v, bench uses %s/%s", got, name, pass)
	}
	if _, other := c.BenchWebRTCEndpoint(3); other == pass {
		t.Fatal("two endpoints share a password")
	}
	c.Auth.TokenSecret = Secret(strings.Repeat("t", 32))
	if _, p2 := c.BenchWebRTCEndpoint(2); p2 == pass {
		t.Fatal("password does not depend on the token secret")
	}
	c.Asterisk.BenchWebRTCEndpoints = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "asterisk.bench_webrtc_endpoints") {
		t.Fatalf("negative count accepted: %v", err)
	}
}

// TestPhoneTransports: the documented phone transports validate and render, wss as an Asterisk-native WebRTC
// endpoint with ICE turned on in rtp.conf; anything else, and SDES on a transport other than TLS, is refused.
func TestPhoneTransports(t *testing.T) {
	for _, tc := range []struct {
		transport string
		srtp      bool
		bad       string // key named in the error, "" when valid
	}{
		{"udp", false, ""},
		{"tcp", false, ""},
		{"tls", true, ""},
		{"wss", false, ""},
		{"ws", false, "asterisk.phones[0].transport"},
		{"", false, "asterisk.phones[0].transport"},
		{"udp", true, "asterisk.phones[0].srtp"},
		{"wss", true, "asterisk.phones[0].srtp"},
	} {
		c := validBase()
		c.Asterisk.Phones = []Phone{{Name: "201", Password: "phone-password-201", Transport: tc.transport, SRTP: tc.srtp}}
		err := c.Validate()
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%s srtp=%v: want an error naming %s, got %v", tc.transport, tc.srtp, tc.bad, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s srtp=%v: %v", tc.transport, tc.srtp, err)
			continue
		}
		p := c.AsteriskParams("")
		if got := p.NeedsICE(); got != (tc.transport == "wss") {
			t.Errorf("%s: ICE in rtp.conf %v", tc.transport, got)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("%s: rendering parameters refused: %v", tc.transport, err)
		}
	}
}

// TestAsteriskValuesValidated: what `patchbay asterisk-config` cannot render is refused when the configuration is
// loaded, naming the key (and never printing a secret); what validates renders.
func TestAsteriskValuesValidated(t *testing.T) {
	const secret = "pass;word-0123456789"
	trunk := func(edit func(*Trunk)) func(*Config) {
		return func(c *Config) {
			tr := Trunk{Name: "uk", Host: "203.0.113.5"}
			edit(&tr)
			c.Asterisk.Trunks = []Trunk{tr}
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		key  string // "" when valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"ari password with ';'", func(c *Config) { c.ARI.Password = secret }, "ari.password"},
		{"ari password with a space", func(c *Config) { c.ARI.Password = "pass word 0123456789" }, "ari.password"},
		{"ari password past 128", func(c *Config) { c.ARI.Password = Secret(strings.Repeat("p", 129)) }, "ari.password"},
		{"phone password with ';'", func(c *Config) {
			c.Asterisk.Phones = []Phone{{Name: "201", Password: secret, Transport: "udp"}}
		}, "asterisk.phones[0].password"},
		{"https port is the http port", func(c *Config) { c.Asterisk.HTTPSPort = c.Asterisk.HTTPPort }, "asterisk.https_port"},
		{"sip tls port is the sip port", func(c *Config) { c.Asterisk.SIPTLSPort = c.Asterisk.SIPPort }, "asterisk.sip_tls_port"},
		{"trunk with credentials", trunk(func(tr *Trunk) { tr.Username, tr.Password = "acct1", "trunk-password-1" }), ""},
		{"trunk password with ';'", trunk(func(tr *Trunk) { tr.Username, tr.Password = "acct1", secret }), "asterisk.trunks[0].password"},
		{"trunk username with a space", trunk(func(tr *Trunk) { tr.Username, tr.Password = "acct 1", "trunk-password-1" }), "asterisk.trunks[0].username"},
		{"trunk host name with match", trunk(func(tr *Trunk) { tr.Host, tr.Match = "sip.example.com", []string{"203.0.113.0/28"} }), ""},
		{"trunk host name without match", trunk(func(tr *Trunk) { tr.Host = "sip.example.com:5060" }), "asterisk.trunks[0].match"},
		{"trunk from_domain not a name", trunk(func(tr *Trunk) { tr.FromDomain = "a b" }), "asterisk.trunks[0].from_domain"},
		{"single trunk host name without match", func(c *Config) { c.Asterisk.Trunk.Host = "sip.example.com" }, "asterisk.trunk.match"},
	} {
		c := validBase()
		tc.edit(&c)
		err := c.Validate()
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error prints the secret: %v", tc.name, err)
		}
		if tc.key != "" {
			if err == nil || !strings.Contains(err.Error(), "config key "+tc.key+":") {
				t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.key)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		} else if err := c.AsteriskParams("/etc/patchbay/certs").Validate(); err != nil {
			t.Errorf("%s: valid, but Asterisk's files cannot be rendered: %v", tc.name, err)
		}
	}
}
