package config

import (
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/patchbay/patchbay/turnconf"
)

// TURN is the TURN relay (coturn with use-auth-secret) browsers fall back to when no direct path works. Patchbay
// never relays through it itself (it is ICE-lite); it mints each browser session time-limited credentials.
type TURN struct {
	// URLs handed to browsers, e.g. turn:turn.example.com:3478?transport=udp, ...?transport=tcp and
	// turns:turn.example.com:443?transport=tcp. Empty: no TURN.
	URLs []string `mapstructure:"urls" yaml:"urls"`
	// Secret is coturn's static-auth-secret (32+ random characters). Never logged.
	Secret Secret `mapstructure:"secret" yaml:"secret"`
	// TTL is how long minted credentials stay valid; sessions get fresh ones before then. Default 10m.
	TTL time.Duration `mapstructure:"ttl" yaml:"ttl"`
	// The rest renders coturn's own file (`patchbay turn-config`). Realm defaults to public_host.
	Realm          string `mapstructure:"realm" yaml:"realm"`
	RelayPortStart int    `mapstructure:"relay_port_start" yaml:"relay_port_start"`
	RelayPortEnd   int    `mapstructure:"relay_port_end" yaml:"relay_port_end"`
	// AllowedPeerIPs are Patchbay's media addresses that coturn may relay to although they are private (a LAN
	// or same-host deployment); every other private range stays denied. media.public_ips are always allowed.
	AllowedPeerIPs []string `mapstructure:"allowed_peer_ips" yaml:"allowed_peer_ips"`
	// ExternalIP is coturn's external-ip ("PUBLIC" or "PUBLIC/PRIVATE") when it is behind NAT.
	ExternalIP string `mapstructure:"external_ip" yaml:"external_ip"`
}

// Signalling tunes the browser WebSocket sessions.
type Signalling struct {
	// ResumeGrace is how long a browser's calls stay up after its WebSocket dropped, waiting for it to reconnect
	// with its resume token. Default 20s; 0 ends the calls at once.
	ResumeGrace time.Duration `mapstructure:"resume_grace" yaml:"resume_grace"`
	// ResumeTTL is the life of a resume token; sessions get a fresh one before then. Default 5m.
	ResumeTTL time.Duration `mapstructure:"resume_ttl" yaml:"resume_ttl"`
}

// DefaultTURN returns the TURN defaults (no URLs: off).
func DefaultTURN() TURN {
	return TURN{TTL: 10 * time.Minute, RelayPortStart: 49160, RelayPortEnd: 49999}
}

// TURNParams maps the configuration onto coturn's: the listening ports come from turn.urls (turn: → UDP/TCP,
// turns: → TLS), the certificate from certs.dir (certDir overrides it, as coturn may see another path).
func (c *Config) TURNParams(certDir string) turnconf.Params {
	t := c.TURN
	p := turnconf.Params{
		Port: 3478, MinPort: t.RelayPortStart, MaxPort: t.RelayPortEnd,
		Secret: t.Secret.Reveal(), Realm: t.Realm, ExternalIP: t.ExternalIP,
		AllowedPeerIPs: append(append([]string(nil), c.Media.PublicIPs...), t.AllowedPeerIPs...),
	}
	if p.Realm == "" {
		p.Realm = c.PublicHost
	}
	if certDir == "" {
		certDir = c.Certs.Dir
	}
	for _, u := range t.URLs {
		scheme, rest, _ := strings.Cut(u, ":")
		hostPort, _, _ := strings.Cut(rest, "?")
		port := 0
		if _, ps, err := net.SplitHostPort(hostPort); err == nil {
			port, _ = strconv.Atoi(ps)
		}
		switch {
		case scheme == "turns":
			if port == 0 {
				port = 5349
			}
			p.TLSPort = port
			p.CertFile, p.KeyFile = filepath.Join(certDir, "server.crt"), filepath.Join(certDir, "server.key")
		case port != 0:
			p.Port = port
		}
	}
	return p
}

// DefaultSignalling returns the signalling defaults.
func DefaultSignalling() Signalling {
	return Signalling{ResumeGrace: 20 * time.Second, ResumeTTL: 5 * time.Minute}
}

func (c *Config) validateNetwork(bad func(key, format string, args ...any)) {
	t := c.TURN
	for i, u := range t.URLs {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
			bad("turn.urls", "entry %d %q must start with turn: or turns:", i, u)
			continue
		}
		if _, err := url.Parse(u); err != nil {
			bad("turn.urls", "entry %d %q: %v", i, u, err)
		}
	}
	if len(t.URLs) > 0 && len(t.Secret) < 32 {
		bad("turn.secret", "must be set to coturn's static-auth-secret, 32 or more random characters, when turn.urls is")
	}
	if t.RelayPortStart < 1024 || t.RelayPortEnd > 65535 || t.RelayPortEnd < t.RelayPortStart {
		bad("turn.relay_port_start", "%d–%d is not a port range above 1023 (turn.relay_port_end)", t.RelayPortStart, t.RelayPortEnd)
	}
	if t.TTL < 10*time.Second || t.TTL > 24*time.Hour {
		bad("turn.ttl", "must be between 10s and 24h; keep it short, e.g. 10m")
	}
	s := c.Signalling
	if s.ResumeGrace < 0 || s.ResumeGrace > 5*time.Minute {
		bad("signalling.resume_grace", "must be between 0 (off) and 5m, e.g. 20s")
	}
	if s.ResumeTTL < 10*time.Second || s.ResumeTTL > time.Hour {
		bad("signalling.resume_ttl", "must be between 10s and 1h, e.g. 5m")
	}
	if p := c.Media.ICETCPPort; p < 0 || p > 65535 {
		bad("media.ice_tcp_port", "%d is not a port number (1–65535, or 0 for no ICE-TCP)", p)
	}
	a := c.Asterisk
	switch a.Timers {
	case "yes", "always", "no":
	default:
		bad("asterisk.timers", "%q must be yes, always or no", a.Timers)
	}
	if a.TimersMinSE < 90 {
		bad("asterisk.timers_min_se", "%d is below 90 s, the least Asterisk accepts", a.TimersMinSE)
	}
	if a.TimersSessExpires < a.TimersMinSE {
		bad("asterisk.timers_sess_expires", "%d must not be below asterisk.timers_min_se %d", a.TimersSessExpires, a.TimersMinSE)
	}
}
