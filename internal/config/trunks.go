package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
)

// trunkCodecs are the codec names a trunk may list (Asterisk's names).
var trunkCodecs = []string{"ulaw", "alaw", "g722", "opus", "gsm", "g729", "ilbc"}

// validateTrunks checks the SIP side of every trunk; the routing side (formats, caller IDs, channel limits) is
// checked with the dialplan rules.
func (c *Config) validateTrunks(bad func(key, format string, args ...any)) {
	a := c.Asterisk
	if len(a.Trunks) > 0 && a.Trunk.Host != "" {
		bad("asterisk.trunk", "set asterisk.trunks or the older asterisk.trunk, not both (move this trunk into asterisk.trunks)")
	}
	phones := map[string]bool{}
	for _, p := range a.Phones {
		phones[p.Name] = true
	}
	seen := map[string]bool{}
	for i, t := range c.PSTNTrunks() {
		key := c.trunkKey(i)
		if !trunkNameRe.MatchString(t.Name) {
			bad(key+".name", "%q must start with a letter and hold only letters, digits, '-' or '_'", t.Name)
		}
		if seen[t.Name] {
			bad(key+".name", "%q is listed twice", t.Name)
		}
		seen[t.Name] = true
		if phones[t.Name] {
			bad(key+".name", "%q is also a phone's name; PJSIP endpoints need distinct names", t.Name)
		}
		if t.Host == "" {
			if len(a.Trunks) > 0 {
				bad(key+".host", "must be set: the carrier's host name or IP")
			}
		} else if _, err := trunkHostPort(t); err != nil {
			bad(key+".host", "%q: %v", t.Host, err)
		}
		if t.Port < 0 || t.Port > 65535 {
			bad(key+".port", "%d is not a port number (1–65535)", t.Port)
		}
		switch t.Transport {
		case "", "udp", "tcp", "tls":
		default:
			bad(key+".transport", "%q must be udp, tcp or tls", t.Transport)
		}
		for j, codec := range t.Codecs {
			if !slices.Contains(trunkCodecs, codec) {
				bad(fmt.Sprintf("%s.codecs[%d]", key, j), "%q must be one of %v (Asterisk's names: PCMA is alaw, PCMU ulaw)", codec, trunkCodecs)
			}
		}
		for j, m := range t.Match {
			if net.ParseIP(m) == nil {
				if _, _, err := net.ParseCIDR(m); err != nil {
					bad(fmt.Sprintf("%s.match[%d]", key, j), "%q is not an IP address or CIDR", m)
				}
			}
		}
		if t.Username != "" && !asteriskconfigs.ValidName(t.Username) {
			bad(key+".username", "%q must be letters, digits, '_', '.' or '-' (up to 64)", t.Username)
		}
		if t.Username != "" && !t.Password.IsSet() {
			bad(key+".password", "must be set when %s.username is", key)
		} else if t.Password.IsSet() && !asteriskconfigs.ValidSecret(t.Password.Reveal()) {
			bad(key+".password", "must be %s", asteriskSecretRule)
		}
		if t.Host != "" && len(t.Match) == 0 && net.ParseIP(trunkHost(t.Host)) == nil {
			bad(key+".match", "must be set when %s.host %q is a name: list the carrier's source IPs or CIDRs, which identify its inbound calls", key, t.Host)
		}
		if t.FromDomain != "" && !asteriskconfigs.ValidName(t.FromDomain) {
			bad(key+".from_domain", "%q is not a domain name", t.FromDomain)
		}
		if t.Register && t.Username == "" {
			bad(key+".register", "registration needs %s.username and password", key)
		}
	}
}

// trunkHost is the host part of a trunk's host (host or host:port).
func trunkHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

// trunkHostPort is the trunk's host:port, with the transport's default port when neither host nor port has one.
func trunkHostPort(t Trunk) (string, error) {
	host, port, err := net.SplitHostPort(t.Host)
	if err != nil {
		// No port in host.
		host, port = t.Host, ""
		if net.ParseIP(host) == nil && !hostNameRe.MatchString(host) {
			return "", fmt.Errorf("not a host name or IP address (host or host:port)")
		}
	}
	if host == "" {
		return "", fmt.Errorf("no host")
	}
	switch {
	case port != "" && t.Port != 0:
		return "", fmt.Errorf("gives a port and so does port (%d); give it once", t.Port)
	case port == "" && t.Port != 0:
		port = strconv.Itoa(t.Port)
	case port == "" && t.Transport == "tls":
		port = "5061"
	case port == "":
		port = "5060"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not 1–65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

// asteriskTrunks maps the trunks with a host onto the Asterisk templates' parameters.
func (c *Config) asteriskTrunks() []asteriskconfigs.Trunk {
	var out []asteriskconfigs.Trunk
	for _, t := range c.PSTNTrunks() {
		if t.Host == "" {
			continue
		}
		hp, err := trunkHostPort(t)
		if err != nil {
			continue // Validate reports it
		}
		out = append(out, asteriskconfigs.Trunk{
			Name:       t.Name,
			Host:       hp,
			Transport:  t.Transport,
			Codecs:     t.Codecs,
			Username:   t.Username,
			Password:   t.Password.Reveal(),
			Register:   t.Register,
			Match:      t.Match,
			FromDomain: t.FromDomain,
		})
	}
	return out
}
