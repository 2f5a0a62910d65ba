// Package asteriskconfigs renders the Asterisk 22 configuration Patchbay runs beside: HTTP/ARI on
// loopback, PJSIP for softphones and a trunk, and the dialplan contexts Patchbay relies on
// (internal, from-phones, from-patchbay, from-trunk).
//
// The templates are embedded; every secret comes from Params, never from a template.
package asteriskconfigs

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Transport names accepted in Phone.Transport.
const (
	TransportUDP = "udp"
	TransportTCP = "tcp"
	TransportTLS = "tls"
	// TransportWSS is SIP over secure WebSocket for Asterisk-native WebRTC clients (JsSIP, SIP.js).
	TransportWSS = "wss"
)

// Password formats accepted in Params.ARIPasswordFormat (ari.conf password_format).
const (
	PasswordPlain = "plain"
	// PasswordCrypt means ARIPassword is a crypt(3) hash, e.g. from `mkpasswd -m sha-512`.
	PasswordCrypt = "crypt"
)

// Params is everything the templates need. It is flat on purpose: the Patchbay config maps onto
// it field by field. Start from DefaultParams and call Validate before rendering.
type Params struct {
	// HTTPBindAddr is where Asterisk's HTTP server (ARI, /ws) and its TLS listener bind.
	// Default 127.0.0.1: ARI must not be reachable from the network.
	HTTPBindAddr string
	// HTTPPort is the plain HTTP port (ARI REST + events). Default 8088.
	HTTPPort int
	// HTTPSPort is the TLS listener (WSS for SIP-over-WebSocket clients). Default 8089. 0 disables it.
	HTTPSPort int
	// HTTPSessionLimit caps concurrent HTTP/WebSocket sessions; Asterisk's default of 100 caps
	// WebSocket clients at 100. Default 1000.
	HTTPSessionLimit int

	// SIPBindAddr is the address the PJSIP transports bind. Default 0.0.0.0 (phones on the LAN).
	SIPBindAddr string
	// SIPPort is the UDP and TCP SIP port. Default 5060.
	SIPPort int
	// SIPTLSPort is the SIP TLS port. Default 5061. 0 disables the TLS transport.
	SIPTLSPort int

	// RTPStart and RTPEnd bound the RTP port range (rtp.conf). Default 10000-20000.
	RTPStart, RTPEnd int
	// StrictRTP drops RTP from sources other than the learned one. Default true.
	StrictRTP bool

	// ARIUser is the ARI user Patchbay logs in as. Default "patchbay".
	ARIUser string
	// ARIPassword is the ARI password, or its crypt(3) hash when ARIPasswordFormat is "crypt".
	// Required; never logged.
	ARIPassword string
	// ARIPasswordFormat is "plain" (default) or "crypt". To store a hash instead of the password:
	// `mkpasswd -m sha-512` (Debian package whois) or `openssl passwd -6`, and put the $6$...
	// output in ARIPassword (Patchbay itself still needs the clear password to log in).
	ARIPasswordFormat string
	// App is the Stasis application name used in the dialplan. Default "patchbay".
	App string

	// CertDir holds ca.crt, server.crt and server.key (made by Patchbay's certs package) used by
	// the HTTPS listener, the SIP TLS transport and DTLS for WebRTC endpoints.
	// Default /etc/asterisk/keys.
	CertDir string

	// SessionExpires is PJSIP's timers_sess_expires for phones and the trunk (RFC 4028 session timers): the far
	// end or Asterisk refreshes the session with a re-INVITE or UPDATE about halfway through. Default 1800 s.
	SessionExpires int
	// MinSE is timers_min_se, the shortest session interval accepted; Asterisk's floor is 90. Default 90.
	MinSE int
	// Timers is PJSIP's timers: "yes" (default: refresh when the peer supports session timers), "always"
	// (refresh every peer, also those that do not announce support: finds dead calls on any phone) or "no".
	Timers string

	// ExternalAddress is the public address put in SIP headers and SDP for peers outside LocalNets
	// (NAT 1:1: external_signaling_address and external_media_address). Empty: no NAT rewriting.
	ExternalAddress string
	// LocalNets are the networks reached without NAT (local_net), e.g. 192.168.0.0/16.
	// Default 127.0.0.0/8 plus the RFC 1918 ranges; only used when ExternalAddress is set.
	LocalNets []string

	// Phones are the SIP softphones (Zoiper-style) registering to Asterisk.
	Phones []Phone
	// Trunk is the optional carrier trunk; Trunk.Name == "" means none. It is kept for configurations with
	// one carrier and comes first in AllTrunks.
	Trunk Trunk
	// Trunks are further carriers, each rendered like Trunk.
	Trunks []Trunk
	// BenchWebRTC are Asterisk-native WebRTC endpoints for benchmarks only (SIP over WSS, DTLS-SRTP, PCMU, in a
	// context that reaches nothing but the echo extension 600). Empty in production.
	BenchWebRTC []Phone

	// Directories written to asterisk.conf [directories]; distinct values let several instances
	// run side by side. Defaults are Debian's paths.
	EtcDir, RunDir, DBDir, LogDir, SpoolDir, VarLibDir string

	// MOHDir is the directory of music-on-hold files the default class plays (held calls, transfers). Empty:
	// <EtcDir>/moh, where Render writes Patchbay's own short tune (Debian ships no music); point it at e.g.
	// /usr/share/asterisk/moh after installing asterisk-moh-opsound-wav for real music.
	MOHDir string
	// ClusterNode is this node's ID when Patchbay runs as a cluster of nodes, each beside its own Asterisk; empty:
	// no inter-node trunk and no cluster dialplan. ClusterPeers are the other nodes (ClusterPeerFor).
	ClusterNode  string
	ClusterPeers []ClusterPeer

	// Prometheus loads res_prometheus (Asterisk's own metrics under /metrics on its loopback HTTP server, see
	// prometheus.conf). Default true.
	Prometheus bool
	// Verbose is the console/log verbosity. Default 3.
	Verbose int
}

// Phone is one softphone account: endpoint, auth and AOR share its Name.
type Phone struct {
	// Name is the SIP username and, for 1XX names, the extension dialled to reach it.
	Name string
	// Password is the digest password; required, never logged.
	Password string
	// Transport is udp, tcp, tls or wss. Default udp.
	Transport string
	// SRTP requires SDES-SRTP media (media_encryption=sdes); only with tls, since SDES keys travel
	// in the SDP and must not cross the network in clear text.
	SRTP bool
	// CallerIDName is shown to called parties; default Name.
	CallerIDName string
}

// Trunk is a SIP carrier: outbound registration is optional, inbound calls are matched by IP.
type Trunk struct {
	// Name names the endpoint; calls go out as PJSIP/<number>@Name. Empty: no trunk.
	Name string
	// Host is the carrier's host:port.
	Host string
	// Transport is udp, tcp or tls (default udp); tls needs SIPTLSPort.
	Transport string
	// Codecs are the Asterisk codec names offered and accepted, in order (default ulaw, alaw).
	Codecs []string
	// Username and Password enable digest auth (outbound_auth) when Username is set.
	Username, Password string
	// Register sends an outbound registration (needs Username): for carriers that find us by registration
	// rather than by IP. Params.Trunk (the single trunk) registers whenever it has a Username.
	Register bool
	// Match lists the IPs/CIDRs whose requests are identified as this trunk. Default: Host's IP.
	Match []string
	// FromDomain is the domain in our From header (carriers often demand their own). Optional.
	FromDomain string
	// FromUser is the user part of our From header / caller ID number for outbound calls. Optional.
	FromUser string
}

// ClusterPeer is another node's Asterisk on the inter-node trunk: endpoint cluster-<Name>, identified by Host's IP,
// and authenticated both ways with digest: it proves itself with InUser/InPassword, this node with
// OutUser/OutPassword. Make it with ClusterPeerFor.
type ClusterPeer struct {
	Name                                     string // the peer's node ID
	Host                                     string // IP:port of its SIP transport
	InUser, InPassword, OutUser, OutPassword string
}

// ClusterPeerFor derives the trunk to node peer at host (IP:port) from this node's ID and the cluster's shared
// secret: each direction has its own password, HMAC-SHA256(secret, "from>to"), and the node calling is the
// username, so both sides render matching credentials without exchanging any.
func ClusterPeerFor(self, peer, host, secret string) ClusterPeer {
	pw := func(from, to string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte("patchbay cluster sip/" + from + ">" + to))
		return hex.EncodeToString(m.Sum(nil))[:40]
	}
	return ClusterPeer{Name: peer, Host: host, InUser: peer, InPassword: pw(peer, self), OutUser: self, OutPassword: pw(self, peer)}
}

// ClusterIP is the IP a peer is identified by.
func (c ClusterPeer) ClusterIP() string {
	h, _, _ := net.SplitHostPort(c.Host)
	return h
}

// Codecs Asterisk can offer to a carrier.
var trunkCodecs = []string{"ulaw", "alaw", "g722", "opus", "gsm", "g729", "ilbc", "slin"}

// AllTrunks is Trunk (when named) followed by Trunks: every trunk the templates render, first one first. The
// single Trunk registers whenever it has a Username, as it always did.
func (p Params) AllTrunks() []Trunk {
	var out []Trunk
	if t := p.Trunk; t.Name != "" {
		t.Register = t.Register || t.Username != ""
		out = append(out, t)
	}
	return append(out, p.Trunks...)
}

// NeedsICE reports whether any endpoint Asterisk serves runs ICE itself: a phone over WSS (an Asterisk-native
// WebRTC client) or a bench WebRTC endpoint. Browsers on Patchbay never do: Patchbay terminates their ICE and
// DTLS and hands Asterisk plain RTP. With ICE support on, res_rtp_asterisk gives every RTP instance a pjnath ICE
// session with a candidate per host address, externalMedia channels included, and passes every packet each way
// through it: ~0.7 MiB of Asterisk's memory per Patchbay call (docs/benchmarks.md).
func (p Params) NeedsICE() bool {
	if len(p.BenchWebRTC) > 0 {
		return true
	}
	for _, ph := range p.Phones {
		if ph.Transport == TransportWSS {
			return true
		}
	}
	return false
}

// DefaultParams returns Params with every default filled in and no phones or trunk.
// ARIPassword is left empty: the caller must supply one.
func DefaultParams() Params {
	return Params{
		HTTPBindAddr:      "127.0.0.1",
		HTTPPort:          8088,
		HTTPSPort:         8089,
		HTTPSessionLimit:  1000,
		SIPBindAddr:       "0.0.0.0",
		SIPPort:           5060,
		SIPTLSPort:        5061,
		RTPStart:          10000,
		RTPEnd:            20000,
		StrictRTP:         true,
		ARIUser:           "patchbay",
		ARIPasswordFormat: PasswordPlain,
		App:               "patchbay",
		CertDir:           "/etc/asterisk/keys",
		LocalNets:         []string{"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"},
		EtcDir:            "/etc/asterisk",
		RunDir:            "/var/run/asterisk",
		DBDir:             "/var/lib/asterisk",
		LogDir:            "/var/log/asterisk",
		SpoolDir:          "/var/spool/asterisk",
		VarLibDir:         "/var/lib/asterisk",
		Verbose:           3,
		Prometheus:        true,
		SessionExpires:    1800,
		MinSE:             90,
		Timers:            "yes",
	}
}

var (
	// Names end up as config section names and dialplan targets: keep them to a safe alphabet.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	// Asterisk config values end at ';' and at a newline; quotes and spaces confuse some parsers.
	secretRE = regexp.MustCompile(`^[!-:<-~]{1,128}$`) // printable ASCII minus space and ';'
	// Caller-ID names go into callerid="..." and must not break out of the quotes.
	displayRE  = regexp.MustCompile(`^[A-Za-z0-9 _.+-]{0,64}$`)
	fromUserRE = regexp.MustCompile(`^\+?[A-Za-z0-9_.-]{1,64}$`)
	clusterRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,23}$`)
)

// ValidName reports whether s may be a name the rendered files use (a user, app, phone, trunk, domain).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// ValidSecret reports whether s may be a password written into Asterisk's files.
func ValidSecret(s string) bool { return secretRE.MatchString(s) }

// Validate checks every field and names the first bad one in the error.
func (p Params) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("asterisk params: %s: %s", field, fmt.Sprintf(format, a...)))
	}
	checkIP := func(field, v string) {
		if _, err := netip.ParseAddr(v); err != nil {
			bad(field, "%q is not an IP address", v)
		}
	}
	checkPort := func(field string, v int, allowZero bool) {
		if (v == 0 && !allowZero) || v < 0 || v > 65535 {
			bad(field, "port %d out of range 1-65535", v)
		}
	}
	if p.Timers != "yes" && p.Timers != "always" && p.Timers != "no" {
		bad("Timers", "%q must be yes, always or no", p.Timers)
	}
	if p.MinSE < 90 {
		bad("MinSE", "%d is below 90, the least RFC 4028 and Asterisk accept", p.MinSE)
	}
	if p.SessionExpires < p.MinSE {
		bad("SessionExpires", "%d must not be below MinSE %d", p.SessionExpires, p.MinSE)
	}
	checkDir := func(field, v string) {
		if !path.IsAbs(v) || strings.ContainsAny(v, ";\n\r ") {
			bad(field, "%q must be an absolute path without spaces or ';'", v)
		}
	}

	checkIP("HTTPBindAddr", p.HTTPBindAddr)
	checkPort("HTTPPort", p.HTTPPort, false)
	checkPort("HTTPSPort", p.HTTPSPort, true)
	if p.HTTPSPort != 0 && p.HTTPSPort == p.HTTPPort {
		bad("HTTPSPort", "equals HTTPPort %d", p.HTTPPort)
	}
	if p.HTTPSessionLimit < 1 {
		bad("HTTPSessionLimit", "must be at least 1, got %d", p.HTTPSessionLimit)
	}
	checkIP("SIPBindAddr", p.SIPBindAddr)
	checkPort("SIPPort", p.SIPPort, false)
	checkPort("SIPTLSPort", p.SIPTLSPort, true)
	if p.SIPTLSPort != 0 && p.SIPTLSPort == p.SIPPort {
		bad("SIPTLSPort", "equals SIPPort %d", p.SIPPort)
	}
	checkPort("RTPStart", p.RTPStart, false)
	checkPort("RTPEnd", p.RTPEnd, false)
	if p.RTPEnd <= p.RTPStart {
		bad("RTPEnd", "%d must be above RTPStart %d", p.RTPEnd, p.RTPStart)
	}
	if !nameRE.MatchString(p.ARIUser) {
		bad("ARIUser", "%q must be 1-64 characters of letters, digits, '_', '.', '-'", p.ARIUser)
	}
	switch p.ARIPasswordFormat {
	case PasswordPlain:
		if !secretRE.MatchString(p.ARIPassword) {
			bad("ARIPassword", "required; printable ASCII without spaces or ';', at most 128 characters")
		}
	case PasswordCrypt:
		if !strings.HasPrefix(p.ARIPassword, "$") || !secretRE.MatchString(p.ARIPassword) {
			bad("ARIPassword", "with password_format=crypt it must be a crypt(3) hash such as the output of `mkpasswd -m sha-512`")
		}
	default:
		bad("ARIPasswordFormat", "%q must be %q or %q", p.ARIPasswordFormat, PasswordPlain, PasswordCrypt)
	}
	if !nameRE.MatchString(p.App) {
		bad("App", "%q must be 1-64 characters of letters, digits, '_', '.', '-'", p.App)
	}
	checkDir("CertDir", p.CertDir)
	if p.ExternalAddress != "" {
		if _, err := netip.ParseAddr(p.ExternalAddress); err != nil && !nameRE.MatchString(p.ExternalAddress) {
			bad("ExternalAddress", "%q is neither an IP address nor a host name", p.ExternalAddress)
		}
	}
	for i, n := range p.LocalNets {
		if _, err := netip.ParsePrefix(n); err != nil {
			bad(fmt.Sprintf("LocalNets[%d]", i), "%q is not a CIDR such as 192.168.0.0/16", n)
		}
	}
	for _, d := range []struct{ f, v string }{
		{"EtcDir", p.EtcDir}, {"RunDir", p.RunDir}, {"DBDir", p.DBDir},
		{"LogDir", p.LogDir}, {"SpoolDir", p.SpoolDir}, {"VarLibDir", p.VarLibDir}, {"MOHDir", p.MOHDirectory()},
	} {
		checkDir(d.f, d.v)
	}
	if p.Verbose < 0 || p.Verbose > 10 {
		bad("Verbose", "%d out of range 0-10", p.Verbose)
	}

	seen := map[string]string{}
	claim := func(field, name string) {
		if prev, ok := seen[name]; ok {
			bad(field, "name %q already used by %s", name, prev)
		}
		seen[name] = field
	}
	for i, ph := range p.Phones {
		f := fmt.Sprintf("Phones[%d]", i)
		if !nameRE.MatchString(ph.Name) {
			bad(f+".Name", "%q must be 1-64 characters of letters, digits, '_', '.', '-'", ph.Name)
		} else {
			claim(f+".Name", ph.Name)
		}
		if !secretRE.MatchString(ph.Password) {
			bad(f+".Password", "required; printable ASCII without spaces or ';', at most 128 characters")
		}
		switch ph.Transport {
		case "", TransportUDP, TransportTCP:
			if ph.SRTP {
				bad(f+".SRTP", "SDES-SRTP needs transport tls: its keys travel in the SDP")
			}
		case TransportTLS:
			if p.SIPTLSPort == 0 {
				bad(f+".Transport", "tls but SIPTLSPort is 0 (TLS transport disabled)")
			}
		case TransportWSS:
			if p.HTTPSPort == 0 {
				bad(f+".Transport", "wss but HTTPSPort is 0 (TLS listener disabled)")
			}
			if ph.SRTP {
				bad(f+".SRTP", "wss phones use DTLS-SRTP (webrtc=yes), not SDES")
			}
		default:
			bad(f+".Transport", "%q must be udp, tcp, tls or wss", ph.Transport)
		}
		if !displayRE.MatchString(ph.CallerIDName) {
			bad(f+".CallerIDName", "%q may only hold letters, digits, spaces and _.+-", ph.CallerIDName)
		}
	}

	if len(p.BenchWebRTC) > 0 && p.HTTPSPort == 0 {
		bad("BenchWebRTC", "WebRTC endpoints need the TLS listener, but HTTPSPort is 0")
	}
	for i, ph := range p.BenchWebRTC {
		f := fmt.Sprintf("BenchWebRTC[%d]", i)
		if !nameRE.MatchString(ph.Name) {
			bad(f+".Name", "%q must be 1-64 characters of letters, digits, '_', '.', '-'", ph.Name)
		} else {
			claim(f+".Name", ph.Name)
		}
		if !secretRE.MatchString(ph.Password) {
			bad(f+".Password", "required; printable ASCII without spaces or ';', at most 128 characters")
		}
	}

	if p.ClusterNode != "" && !clusterRE.MatchString(p.ClusterNode) {
		bad("ClusterNode", "%q must be 1-24 of a-z 0-9 '-'", p.ClusterNode)
	}
	if len(p.ClusterPeers) > 0 && p.ClusterNode == "" {
		bad("ClusterPeers", "set ClusterNode too: peers belong to a node")
	}
	for i, c := range p.ClusterPeers {
		f := fmt.Sprintf("ClusterPeers[%d]", i)
		if !clusterRE.MatchString(c.Name) || c.Name == p.ClusterNode {
			bad(f+".Name", "%q must be 1-24 of a-z 0-9 '-' and not this node", c.Name)
		} else {
			claim(f+".Name", "cluster-"+c.Name)
		}
		if ap, err := netip.ParseAddrPort(c.Host); err != nil || ap.Port() == 0 {
			bad(f+".Host", "%q must be IP:port (the peer is identified by its IP)", c.Host)
		}
		for _, v := range []struct{ k, v string }{{"InUser", c.InUser}, {"OutUser", c.OutUser}} {
			if !nameRE.MatchString(v.v) {
				bad(f+"."+v.k, "%q must be letters, digits, '_', '.', '-'", v.v)
			}
		}
		if !secretRE.MatchString(c.InPassword) || !secretRE.MatchString(c.OutPassword) {
			bad(f+".Password", "required; printable ASCII without spaces or ';' (use ClusterPeerFor)")
		}
	}

	for i, t := range p.AllTrunks() {
		f := fmt.Sprintf("Trunks[%d]", i-1)
		if p.Trunk.Name == "" {
			f = fmt.Sprintf("Trunks[%d]", i)
		} else if i == 0 {
			f = "Trunk"
		}
		p.validateTrunk(f, t, claim, bad)
	}
	return errors.Join(errs...)
}

func (p Params) validateTrunk(f string, t Trunk, claim func(field, name string), bad func(field, format string, a ...any)) {
	if !nameRE.MatchString(t.Name) {
		bad(f+".Name", "%q must be 1-64 characters of letters, digits, '_', '.', '-'", t.Name)
	} else {
		claim(f+".Name", t.Name)
	}
	host, port, err := net.SplitHostPort(t.Host)
	if err != nil {
		bad(f+".Host", "%q must be host:port", t.Host)
	} else {
		if _, perr := netip.ParseAddr(host); perr != nil && !nameRE.MatchString(host) {
			bad(f+".Host", "%q: bad host", t.Host)
		}
		if n, perr := strconv.Atoi(port); perr != nil || n < 1 || n > 65535 {
			bad(f+".Host", "%q: bad port", t.Host)
		}
		if len(t.Match) == 0 {
			if _, perr := netip.ParseAddr(host); perr != nil {
				bad(f+".Match", "required when %s.Host %q is a name, not an IP", f, t.Host)
			}
		}
	}
	switch t.Transport {
	case "", TransportUDP, TransportTCP:
	case TransportTLS:
		if p.SIPTLSPort == 0 {
			bad(f+".Transport", "tls but SIPTLSPort is 0 (TLS transport disabled)")
		}
	default:
		bad(f+".Transport", "%q must be udp, tcp or tls", t.Transport)
	}
	for i, c := range t.Codecs {
		if !slices.Contains(trunkCodecs, c) {
			bad(fmt.Sprintf("%s.Codecs[%d]", f, i), "%q must be one of %s", c, strings.Join(trunkCodecs, ", "))
		}
	}
	if t.Username != "" {
		if !nameRE.MatchString(t.Username) {
			bad(f+".Username", "%q must be letters, digits, '_', '.', '-'", t.Username)
		}
		if !secretRE.MatchString(t.Password) {
			bad(f+".Password", "required with %s.Username; printable ASCII without spaces or ';'", f)
		}
	} else if t.Register {
		bad(f+".Register", "registration needs %s.Username and Password", f)
	}
	for i, m := range t.Match {
		if _, err := netip.ParsePrefix(m); err != nil {
			if _, err := netip.ParseAddr(m); err != nil {
				bad(fmt.Sprintf("%s.Match[%d]", f, i), "%q is not an IP or CIDR", m)
			}
		}
	}
	if t.FromDomain != "" && !nameRE.MatchString(t.FromDomain) {
		bad(f+".FromDomain", "%q is not a domain name", t.FromDomain)
	}
	if t.FromUser != "" && !fromUserRE.MatchString(t.FromUser) {
		bad(f+".FromUser", "%q must be letters, digits, '+', '_', '.', '-'", t.FromUser)
	}
}
