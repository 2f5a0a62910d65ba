// Package deploy holds the production container files. No Docker engine runs in CI, so this test keeps
// docker-compose.yml consistent with the configuration Patchbay renders for Asterisk.
package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/turnconf"
)

type compose struct {
	Services map[string]struct {
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Image       string            `yaml:"image"`
		CapAdd      []string          `yaml:"cap_add"`
		NetworkMode string            `yaml:"network_mode"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		DependsOn   map[string]any    `yaml:"depends_on"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func load(t *testing.T) compose {
	t.Helper()
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	return c
}

func TestComposeServices(t *testing.T) {
	c := load(t)
	for _, name := range []string{"asterisk", "redis", "coturn", "patchbay"} {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("service %s missing", name)
		}
		// SIP, RTP and ICE use the host's addresses: anything else breaks media behind NAT.
		if s.NetworkMode != "host" {
			t.Errorf("service %s: network_mode %q, want host", name, s.NetworkMode)
		}
		for _, v := range s.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if !strings.HasPrefix(src, "./") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("service %s mounts undeclared volume %q", name, src)
				}
			}
		}
	}
	if deps := c.Services["patchbay"].DependsOn; deps["asterisk"] == nil || deps["redis"] == nil || deps["coturn"] == nil {
		t.Error("patchbay must wait for asterisk, redis and coturn")
	}
}

// TestCoturnService: coturn runs the config `patchbay turn-config` renders (use-auth-secret, private ranges denied,
// no loopback relay), as the turnserver user, with the TLS key it needs.
func TestCoturnService(t *testing.T) {
	c := load(t)
	s := c.Services["coturn"]
	if s.Build == nil || s.Build.Dockerfile != "coturn.Dockerfile" {
		t.Fatal("coturn is not built from deploy/coturn.Dockerfile")
	}
	df, err := os.ReadFile(filepath.Join("..", s.Build.Context, s.Build.Dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(df), "coturn") || !strings.Contains(string(df), "debian:") {
		t.Error("coturn image must install Debian's coturn")
	}
	for _, mount := range []string{"/etc/coturn/turnserver.conf", "/etc/coturn/certs"} {
		if !slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasSuffix(v, ":"+mount+":ro") }) {
			t.Errorf("%s is not mounted read-only", mount)
		}
	}
	entry, err := os.ReadFile("coturn-entrypoint.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--reuid=turnserver", "/etc/coturn/turnserver.conf", "/run/coturn/certs", "+net_bind_service"} {
		if !strings.Contains(string(entry), want) {
			t.Errorf("coturn entrypoint lacks %q", want)
		}
	}
	header, _ := os.ReadFile("../docker-compose.yml")
	if !strings.Contains(string(header), "turn-config --out deploy/turnserver.conf --cert-dir /run/coturn/certs") {
		t.Error("the compose header must say how to render deploy/turnserver.conf for the entrypoint's cert dir")
	}
	// What turn-config renders from a starter config: safe for production.
	cfg := config.Defaults()
	cfg.TURN.URLs = []string{"turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:443?transport=tcp"}
	cfg.TURN.Secret = "0123456789abcdef0123456789abcdef"
	cfg.Media.PublicIPs = []string{"203.0.113.5"}
	p := cfg.TURNParams("/run/coturn/certs")
	conf, err := turnconf.Render(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"use-auth-secret", "tls-listening-port=443", "cert=/run/coturn/certs/server.crt",
		"denied-peer-ip=10.0.0.0-10.255.255.255", "allowed-peer-ip=203.0.113.5", "no-multicast-peers", "fingerprint", "realm=localhost"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("rendered turnserver.conf lacks %q", want)
		}
	}
	if strings.Contains(string(conf), "allow-loopback-peers") {
		t.Error("production turnserver.conf relays to loopback")
	}
}

func TestAsteriskImageFromDebianSid(t *testing.T) {
	c := load(t)
	b := c.Services["asterisk"].Build
	if b == nil {
		t.Fatal("asterisk service is not built from our Dockerfile")
	}
	df, err := os.ReadFile(filepath.Join("..", b.Context, b.Dockerfile))
	if err != nil {
		t.Fatal(err)
	}
	s := string(df)
	for _, want := range []string{"FROM debian:sid", "asterisk-modules", "Check-Valid-Until=false"} {
		if !strings.Contains(s, want) {
			t.Errorf("asterisk Dockerfile lacks %q", want)
		}
	}
	// The rendered configs are mounted at /etc/asterisk; the certificates are mounted where the entrypoint copies
	// them from, and it installs them where the header's --cert-dir points, for the asterisk user.
	vols := c.Services["asterisk"].Volumes
	if !slices.ContainsFunc(vols, func(v string) bool { return strings.HasSuffix(v, ":/etc/asterisk:ro") }) {
		t.Error("rendered Asterisk configs are not mounted at /etc/asterisk")
	}
	if !slices.ContainsFunc(vols, func(v string) bool { return strings.HasSuffix(v, ":/run/patchbay-certs:ro") }) {
		t.Error("certificates are not mounted at /run/patchbay-certs, where the entrypoint reads them")
	}
	entry, err := os.ReadFile("asterisk-entrypoint.sh")
	if err != nil {
		t.Fatal(err)
	}
	header, _ := os.ReadFile("../docker-compose.yml")
	if !strings.Contains(string(header), "--cert-dir /var/lib/asterisk/keys") || !strings.Contains(string(entry), "/var/lib/asterisk/keys/") {
		t.Error("the header's --cert-dir and the entrypoint's install directory must both be /var/lib/asterisk/keys")
	}
	if !strings.Contains(string(entry), "-U asterisk -G asterisk") {
		t.Error("Asterisk must drop to the asterisk user")
	}
}

func TestPatchbayServiceMatchesConfig(t *testing.T) {
	c := load(t)
	p := c.Services["patchbay"]
	if len(p.Command) < 1 || p.Command[0] != "serve" {
		t.Fatalf("patchbay command %v, want serve", p.Command)
	}
	entry, err := os.ReadFile("patchbay-entrypoint.sh")
	if err != nil {
		t.Fatal(err)
	}
	// The entrypoint reads the config and certificates from these mounts, then drops to the patchbay user.
	for _, mount := range []string{"/etc/patchbay/patchbay.yaml", "/etc/patchbay/certs"} {
		if !slices.ContainsFunc(p.Volumes, func(v string) bool { return strings.HasSuffix(v, ":"+mount+":ro") }) {
			t.Errorf("%s is not mounted read-only", mount)
		}
		if !strings.Contains(string(entry), mount) {
			t.Errorf("the entrypoint does not read %s", mount)
		}
	}
	if !strings.Contains(string(entry), "--reuid=patchbay") {
		t.Error("the entrypoint must drop to the patchbay user")
	}
	// Patchbay's defaults talk to the services as compose starts them.
	def := config.Defaults()
	if def.ARI.URL != "http://127.0.0.1:8088" || def.Asterisk.HTTPPort != 8088 {
		t.Errorf("default ARI URL %s / http_port %d no longer match the Asterisk service", def.ARI.URL, def.Asterisk.HTTPPort)
	}
	redis := strings.Join(c.Services["redis"].Command, " ")
	if !strings.Contains(redis, "--bind 127.0.0.1") || !strings.Contains(redis, "--port 6379") {
		t.Errorf("redis must bind loopback:6379 (what config init --redis 127.0.0.1:6379 writes): %s", redis)
	}
}
