// Package turnconf renders the coturn configuration Patchbay runs beside (turnserver.conf): TURN over UDP, TCP and
// TLS, TURN REST API credentials (use-auth-secret) and peers restricted to Patchbay's own media addresses. Like
// asterisk-configs, it is the one place the file is written, for `make run`, docker-compose and the tests.
package turnconf

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"text/template"
)

//go:embed turnserver.conf.tmpl
var tmpl string

// Params is what the template needs.
type Params struct {
	// ListenIPs and RelayIPs bind the listeners and relay sockets; empty: all addresses.
	ListenIPs, RelayIPs []string
	// ExternalIP is coturn's external-ip ("PUBLIC" or "PUBLIC/PRIVATE") when it is behind NAT.
	ExternalIP string
	// Port is TURN over UDP and TCP (3478). TLSPort is TURN over TLS (443 or 5349); 0 turns TLS off.
	Port, TLSPort int
	// CertFile and KeyFile are the TLS certificate and key (PEM); required with TLSPort.
	CertFile, KeyFile string
	// MinPort and MaxPort bound the relay ports.
	MinPort, MaxPort int
	// Secret is the static-auth-secret shared with Patchbay (turn.secret).
	Secret string
	// Realm names the server in authentication (default: Patchbay's public host).
	Realm string
	// AllowedPeerIPs are Patchbay's media addresses (IP or IP-IP ranges) exempt from the private ranges denied.
	AllowedPeerIPs []string
	// AllowLoopback permits loopback peers: only for tests where Patchbay runs on 127.0.0.1.
	AllowLoopback bool
	// PidFile, if set, is where coturn writes its pid. LogFile defaults to stdout.
	PidFile, LogFile string
	// Verbose logs every request with its outcome (tests count allocations and refusals).
	Verbose bool
}

var (
	secretRE = regexp.MustCompile(`^[!-~]{16,256}$`) // printable ASCII, no spaces or newlines
	realmRE  = regexp.MustCompile(`^[A-Za-z0-9.-]{1,128}$`)
	pathRE   = regexp.MustCompile(`^[A-Za-z0-9_./@:+-]{1,512}$`)
)

// Validate names every bad field.
func (p Params) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("turn config: %s: %s", field, fmt.Sprintf(format, a...)))
	}
	for _, ip := range append(append([]string(nil), p.ListenIPs...), p.RelayIPs...) {
		if _, err := netip.ParseAddr(ip); err != nil {
			bad("ListenIPs/RelayIPs", "%q is not an IP address", ip)
		}
	}
	if p.ExternalIP != "" {
		for _, ip := range strings.SplitN(p.ExternalIP, "/", 2) {
			if _, err := netip.ParseAddr(ip); err != nil {
				bad("ExternalIP", "%q is not PUBLIC or PUBLIC/PRIVATE", p.ExternalIP)
			}
		}
	}
	for name, port := range map[string]int{"Port": p.Port, "MinPort": p.MinPort, "MaxPort": p.MaxPort} {
		if port < 1 || port > 65535 {
			bad(name, "%d is not a port (1-65535)", port)
		}
	}
	if p.TLSPort < 0 || p.TLSPort > 65535 {
		bad("TLSPort", "%d is not a port", p.TLSPort)
	}
	if p.MaxPort < p.MinPort {
		bad("MaxPort", "%d is below MinPort %d", p.MaxPort, p.MinPort)
	}
	if p.TLSPort > 0 && (!pathRE.MatchString(p.CertFile) || !pathRE.MatchString(p.KeyFile)) {
		bad("CertFile/KeyFile", "TLS needs a certificate and key path")
	}
	if !secretRE.MatchString(p.Secret) {
		bad("Secret", "must be 16-256 printable ASCII characters without spaces")
	}
	if !realmRE.MatchString(p.Realm) {
		bad("Realm", "%q must be a host name", p.Realm)
	}
	for _, r := range p.AllowedPeerIPs {
		for _, ip := range strings.SplitN(r, "-", 2) {
			if _, err := netip.ParseAddr(ip); err != nil {
				bad("AllowedPeerIPs", "%q is not an IP or IP-IP range", r)
			}
		}
	}
	for name, v := range map[string]string{"PidFile": p.PidFile, "LogFile": p.LogFile} {
		if v != "" && !pathRE.MatchString(v) {
			bad(name, "%q is not a plain path", v)
		}
	}
	return errors.Join(errs...)
}

// Render returns turnserver.conf for p.
func Render(p Params) ([]byte, error) {
	if p.LogFile == "" {
		p.LogFile = "stdout"
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	t, err := template.New("turnserver.conf").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return nil, fmt.Errorf("parse embedded turnserver.conf template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		return nil, fmt.Errorf("render turnserver.conf: %w", err)
	}
	return b.Bytes(), nil
}

// Write renders p into path with mode 0600 (it holds the secret).
func Write(p Params, path string) error {
	b, err := Render(p)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
