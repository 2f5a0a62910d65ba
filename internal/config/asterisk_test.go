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
