package main

import (
	"testing"

	"github.com/patchbay/patchbay/internal/config"
)

// TestLocalSignalURL: `call`, `bench` and `doctor --call` reach the Patchbay the config describes: ws:// with TLS
// off, the address http.listen names, localhost when it names every address.
func TestLocalSignalURL(t *testing.T) {
	for _, tc := range []struct {
		listen string
		tls    bool
		want   string
	}{
		{":8443", true, "wss://localhost:8443/ws"},
		{"0.0.0.0:8443", true, "wss://localhost:8443/ws"},
		{"[::]:8443", true, "wss://localhost:8443/ws"},
		{"127.0.0.1:9000", false, "ws://127.0.0.1:9000/ws"},
		{"10.0.0.5:8443", true, "wss://10.0.0.5:8443/ws"},
		{"[2001:db8::1]:8443", true, "wss://[2001:db8::1]:8443/ws"},
		{"pbx.example.com:443", true, "wss://pbx.example.com:443/ws"},
	} {
		cfg := &config.Config{}
		cfg.HTTP.Listen, cfg.HTTP.TLS = tc.listen, tc.tls
		if got := localSignalURL(cfg); got != tc.want {
			t.Errorf("listen %q tls %v: %s, want %s", tc.listen, tc.tls, got, tc.want)
		}
	}
}
