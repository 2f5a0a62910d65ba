package turnconf

import (
	"strings"
	"testing"
)

func good() Params {
	return Params{Port: 3478, TLSPort: 443, CertFile: "/etc/patchbay/certs/server.crt", KeyFile: "/etc/patchbay/certs/server.key",
		MinPort: 49160, MaxPort: 49200, Secret: "0123456789abcdef0123456789abcdef", Realm: "pbx.example.com",
		AllowedPeerIPs: []string{"10.0.0.5"}}
}

func TestRenderSafeDefaults(t *testing.T) {
	b, err := Render(good())
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for _, want := range []string{
		"use-auth-secret", "static-auth-secret=0123456789abcdef0123456789abcdef", "realm=pbx.example.com",
		"fingerprint", "no-multicast-peers", "denied-peer-ip=10.0.0.0-10.255.255.255",
		"denied-peer-ip=127.0.0.0-127.255.255.255", "denied-peer-ip=192.168.0.0-192.168.255.255",
		"denied-peer-ip=172.16.0.0-172.31.255.255", "allowed-peer-ip=10.0.0.5", "tls-listening-port=443",
		"no-tlsv1\n", "no-cli", "listening-port=3478", "log-file=stdout",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("turnserver.conf lacks %q", want)
		}
	}
	if strings.Contains(conf, "allow-loopback-peers") {
		t.Error("production config relays to loopback")
	}
	p := good()
	p.AllowLoopback = true
	p.TLSPort = 0
	b, _ = Render(p)
	if !strings.Contains(string(b), "allow-loopback-peers") || !strings.Contains(string(b), "no-tls\n") {
		t.Errorf("test config:\n%s", b)
	}
}

func TestRenderRefusesBadInput(t *testing.T) {
	for name, mod := range map[string]func(*Params){
		"newline in secret": func(p *Params) { p.Secret = "0123456789abcdef\nallow-loopback-peers" },
		"short secret":      func(p *Params) { p.Secret = "x" },
		"bad realm":         func(p *Params) { p.Realm = "a b" },
		"bad peer":          func(p *Params) { p.AllowedPeerIPs = []string{"10.0.0.0/8\nallow-loopback-peers"} },
		"tls without cert":  func(p *Params) { p.CertFile = "" },
		"port range":        func(p *Params) { p.MinPort, p.MaxPort = 50000, 40000 },
	} {
		p := good()
		mod(&p)
		if _, err := Render(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
