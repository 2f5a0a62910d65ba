package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
)

var (
	appNameRe    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)
	phoneNameRe  = regexp.MustCompile(`^[0-9]{2,8}$`)
	trunkNameRe  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)
	hostNameRe   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}$`)
	ariUserRe    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,63}$`)
	userNumberRe = regexp.MustCompile(`^[0-9]{2,15}$`)
	userNameRe   = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)
)

// asteriskSecretRule says what asteriskconfigs.ValidSecret allows (Asterisk ends a value at ';' or a newline, and
// spaces confuse its parsers), for error messages.
const asteriskSecretRule = "printable ASCII without spaces or ';', at most 128 characters: it is written into Asterisk's configuration"

// fillDerived sets values that default from other values.
func (c *Config) fillDerived() {
	if c.HTTP.CertFile == "" {
		c.HTTP.CertFile = filepath.Join(c.Certs.Dir, "server.crt")
	}
	if c.HTTP.KeyFile == "" {
		c.HTTP.KeyFile = filepath.Join(c.Certs.Dir, "server.key")
	}
	if len(c.Certs.Hosts) == 0 {
		hosts := []string{"localhost", "127.0.0.1"}
		if c.PublicHost != "" && c.PublicHost != "localhost" {
			hosts = append([]string{c.PublicHost}, hosts...)
		}
		c.Certs.Hosts = hosts
	}
}

// Validate checks every value and returns all problems at once, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config key %s: "+format, append([]any{key}, args...)...))
	}

	if c.PublicHost == "" {
		bad("public_host", "must be set to the name browsers use to reach Patchbay")
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		bad("http.listen", "%q is not host:port (e.g. \":8443\"): %v", c.HTTP.Listen, err)
	}
	for i, o := range c.HTTP.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" {
			bad(fmt.Sprintf("http.allowed_origins[%d]", i), "%q is not an origin like https://app.example.com", o)
		}
	}
	if c.HTTP.ShutdownTimeout < 0 {
		bad("http.shutdown_timeout", "must not be negative")
	}

	if u, err := url.Parse(c.ARI.URL); err == nil && u.User != nil {
		// Not quoted: the URL holds a password, and it would be printed wherever ari.url is (logs, doctor).
		bad("ari.url", "must not hold a user or password: set them in ari.user and ari.password")
	} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("ari.url", "%q is not an http(s) URL like http://127.0.0.1:8088", c.ARI.URL)
	}
	if !ariUserRe.MatchString(c.ARI.User) {
		bad("ari.user", "%q must be letters, digits, '-' or '_'", c.ARI.User)
	}
	if !c.ARI.Password.IsSet() {
		bad("ari.password", "must be set (PATCHBAY_ARI_PASSWORD, or `make run` generates one)")
	} else if len(c.ARI.Password) < 12 {
		bad("ari.password", "is too short: use at least 12 characters (e.g. `openssl rand -hex 16`)")
	} else if !asteriskconfigs.ValidSecret(c.ARI.Password.Reveal()) {
		bad("ari.password", "must be %s (e.g. `openssl rand -hex 16`)", asteriskSecretRule)
	}
	if c.ARI.ConnectTimeout <= 0 {
		bad("ari.connect_timeout", "must be positive, e.g. 15s")
	}
	if !appNameRe.MatchString(c.ARI.App) {
		bad("ari.app", "%q must start with a letter and hold only letters, digits, '-' or '_'", c.ARI.App)
	}

	a := c.Asterisk
	if net.ParseIP(a.BindAddress) == nil {
		bad("asterisk.bind_address", "%q is not an IP address", a.BindAddress)
	}
	for key, p := range map[string]int{
		"asterisk.http_port": a.HTTPPort, "asterisk.https_port": a.HTTPSPort, "asterisk.sip_port": a.SIPPort,
		"asterisk.sip_tls_port": a.SIPTLSPort, "asterisk.rtp_start": a.RTPStart, "asterisk.rtp_end": a.RTPEnd,
		"media.ice_port": c.Media.ICEPort, "media.relay_port_start": c.Media.RelayPortStart,
		"media.relay_port_end": c.Media.RelayPortEnd,
	} {
		if p < 0 || p > 65535 || (p == 0 && key != "media.ice_port") {
			bad(key, "%d is not a port number (1–65535)", p)
		}
	}
	if c.Media.MemoryLimitMiB < 0 {
		bad("media.memory_limit_mib", "%d is negative (0 means no limit)", c.Media.MemoryLimitMiB)
	}
	if c.Media.GCPercent < 10 || c.Media.GCPercent > 1000 {
		bad("media.gc_percent", "%d out of range 10–1000 (Go's own default is 100)", c.Media.GCPercent)
	}
	if a.BenchWebRTCEndpoints < 0 || a.BenchWebRTCEndpoints > 5000 {
		bad("asterisk.bench_webrtc_endpoints", "%d out of range 0-5000", a.BenchWebRTCEndpoints)
	}
	if a.HTTPSPort == a.HTTPPort {
		bad("asterisk.https_port", "%d is also asterisk.http_port: Asterisk's HTTP and TLS listeners need a port each", a.HTTPSPort)
	}
	if a.SIPTLSPort == a.SIPPort {
		bad("asterisk.sip_tls_port", "%d is also asterisk.sip_port: SIP over TLS needs a port of its own", a.SIPTLSPort)
	}
	if a.RTPEnd <= a.RTPStart {
		bad("asterisk.rtp_end", "%d must be above asterisk.rtp_start %d", a.RTPEnd, a.RTPStart)
	}
	if a.ExternalAddress != "" && net.ParseIP(a.ExternalAddress) == nil {
		bad("asterisk.external_address", "%q is not an IP address", a.ExternalAddress)
	}
	for i, n := range a.LocalNets {
		if _, _, err := net.ParseCIDR(n); err != nil {
			bad(fmt.Sprintf("asterisk.local_nets[%d]", i), "%q is not a CIDR like 192.168.0.0/16", n)
		}
	}
	seen := map[string]bool{}
	for i, p := range a.Phones {
		key := fmt.Sprintf("asterisk.phones[%d]", i)
		if !phoneNameRe.MatchString(p.Name) {
			bad(key+".name", "%q must be an extension number of 2–8 digits", p.Name)
		}
		if seen[p.Name] {
			bad(key+".name", "%q is listed twice", p.Name)
		}
		seen[p.Name] = true
		if len(p.Password) < 12 {
			bad(key+".password", "must be at least 12 characters (phones are brute-forced on the internet)")
		} else if !asteriskconfigs.ValidSecret(p.Password.Reveal()) {
			bad(key+".password", "must be %s", asteriskSecretRule)
		}
		switch p.Transport {
		case "udp", "tcp", "tls", "wss":
		default:
			bad(key+".transport", "%q must be udp, tcp, tls or wss", p.Transport)
		}
		if p.SRTP && p.Transport != "tls" {
			bad(key+".srtp", "SDES-SRTP sends its keys in the SDP, so it needs transport tls")
		}
	}
	m := c.Media
	for i, ip := range m.PublicIPs {
		if net.ParseIP(ip) == nil {
			bad(fmt.Sprintf("media.public_ips[%d]", i), "%q is not an IP address", ip)
		}
	}
	for i, ip := range m.ICEIPs {
		switch a := net.ParseIP(ip); {
		case a == nil || a.To4() == nil:
			bad(fmt.Sprintf("media.ice_ips[%d]", i), "%q is not an IPv4 address (the ICE socket is IPv4)", ip)
		case a.IsLoopback() && !m.IncludeLoopback:
			bad(fmt.Sprintf("media.ice_ips[%d]", i), "%s is a loopback address: set media.include_loopback too (single-host tests only)", ip)
		case a.IsUnspecified():
			bad(fmt.Sprintf("media.ice_ips[%d]", i), "%s is no address to offer: list the host's own addresses, or leave ice_ips empty for all", ip)
		}
	}
	if net.ParseIP(m.RelayHost) == nil {
		bad("media.relay_host", "%q is not an IP address", m.RelayHost)
	}
	if m.MaxCalls < 0 {
		bad("media.max_calls", "%d is negative (0 means no limit)", m.MaxCalls)
	}
	if m.RelayPortEnd < m.RelayPortStart {
		bad("media.relay_port_end", "%d must not be below media.relay_port_start %d", m.RelayPortEnd, m.RelayPortStart)
	}
	if m.RelayDrain < 0 {
		bad("media.relay_drain", "must not be negative")
	}
	if m.Pace < 0 || m.Pace > 5*time.Millisecond {
		bad("media.pace", "%s must be between 0 (off) and 5ms: a packet may wait this long in Patchbay", m.Pace)
	}
	if m.PaceAbove < 0 {
		bad("media.pace_above", "%d is negative", m.PaceAbove)
	}
	for i, s := range m.ICEServers {
		for j, u := range s.URLs {
			if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") {
				bad(fmt.Sprintf("media.ice_servers[%d].urls[%d]", i, j), "%q must start with stun:, turn: or turns:", u)
			}
		}
	}

	if !c.Auth.TokenSecret.IsSet() {
		bad("auth.token_secret", "must be set: 32 or more random bytes (e.g. `openssl rand -hex 32`)")
	} else if len(c.Auth.TokenSecret) < 32 {
		bad("auth.token_secret", "is %d bytes; use at least 32 (e.g. `openssl rand -hex 32`)", len(c.Auth.TokenSecret))
	}
	if c.Auth.TokenTTL <= 0 {
		bad("auth.token_ttl", "must be positive, e.g. 1h")
	}
	for name, k := range c.Auth.APIKeys {
		if len(k) < 24 {
			bad("auth.api_keys."+name, "is too short: use at least 24 random characters")
		}
	}

	c.validateRedis(bad)
	if c.Redis.DB < 0 {
		bad("redis.db", "must not be negative")
	}
	c.validateRooms(bad)
	for num, user := range c.Users {
		if !userNumberRe.MatchString(num) {
			bad("users."+num, "the number must be 2–15 digits")
		}
		if !userNameRe.MatchString(user) {
			bad("users."+num, "%q is not a browser user name (lower-case letters, digits, . _ -; starting with a letter)", user)
		}
	}
	c.validateCalls(bad)
	c.validateCluster(bad)
	c.validateLifecycle(bad)
	c.validateObservability(bad)
	c.validateNetwork(bad)
	c.validateRecording(bad)
	if c.Certs.Dir == "" {
		bad("certs.dir", "must be set")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q must be debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q must be text or json", c.Log.Format)
	}
	return errors.Join(errs...)
}

func checkHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("not host:port: %w", err)
	}
	if host == "" {
		return errors.New("no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not 1–65535", port)
	}
	return nil
}

func (c *Config) validateRedis(bad func(key, format string, args ...any)) {
	r := c.Redis
	modes := 0
	for _, set := range []bool{r.Addr != "", len(r.Addrs) > 0, r.MasterName != "" || len(r.Sentinels) > 0} {
		if set {
			modes++
		}
	}
	if modes > 1 {
		bad("redis", "set one of redis.addr (one server), redis.addrs (Redis Cluster) or redis.master_name with redis.sentinels (Sentinel)")
	}
	if r.Addr != "" {
		if err := checkHostPort(r.Addr); err != nil {
			bad("redis.addr", "%q: %v", r.Addr, err)
		}
	}
	for i, a := range r.Addrs {
		if err := checkHostPort(a); err != nil {
			bad(fmt.Sprintf("redis.addrs[%d]", i), "%q: %v", a, err)
		}
	}
	if (r.MasterName == "") != (len(r.Sentinels) == 0) {
		bad("redis.master_name", "Sentinel needs both redis.master_name and redis.sentinels")
	}
	for i, a := range r.Sentinels {
		if err := checkHostPort(a); err != nil {
			bad(fmt.Sprintf("redis.sentinels[%d]", i), "%q: %v", a, err)
		}
	}
	if len(r.Addrs) > 0 && r.DB != 0 {
		bad("redis.db", "Redis Cluster has only database 0")
	}
	if strings.ContainsAny(r.Prefix, "{}") {
		bad("redis.prefix", "%q must not hold '{' or '}': Patchbay's keys carry Redis Cluster hash tags after it", r.Prefix)
	}
}
