package doctor

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CertWarnDays is how close to expiry a certificate fails the check.
const CertWarnDays = 14

func checkCerts(_ context.Context, d *run) Result {
	c := d.cfg
	if !c.HTTP.TLS {
		return skip("http.tls is off", "TLS is terminated by a proxy in front of Patchbay: check its certificate there")
	}
	pemBytes, err := os.ReadFile(c.HTTP.CertFile)
	if err != nil {
		return fail(fmt.Sprintf("cannot read http.cert_file %s: %v", c.HTTP.CertFile, err),
			"run `patchbay certs init` (self-signed CA) or point http.cert_file at your certificate; Patchbay's user must be able to read it")
	}
	if _, err := os.ReadFile(c.HTTP.KeyFile); err != nil {
		return fail(fmt.Sprintf("cannot read http.key_file %s: %v", c.HTTP.KeyFile, err),
			"point http.key_file at the certificate's private key, readable by Patchbay's user only (chmod 600)")
	}
	if _, err := tls.LoadX509KeyPair(c.HTTP.CertFile, c.HTTP.KeyFile); err != nil {
		return fail(fmt.Sprintf("certificate and key do not go together: %v", err), "use the key the certificate was issued for")
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return fail(c.HTTP.CertFile+" holds no PEM certificate", "replace it with a PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fail(fmt.Sprintf("parse %s: %v", c.HTTP.CertFile, err), "replace it with a valid certificate")
	}
	now := d.o.Now()
	switch left := cert.NotAfter.Sub(now); {
	case left <= 0:
		return fail(fmt.Sprintf("certificate expired on %s", cert.NotAfter.UTC().Format(time.DateOnly)),
			"renew it: `patchbay certs init` makes a new one from the CA, or renew with your CA / ACME client; then restart Patchbay and Asterisk")
	case left < CertWarnDays*24*time.Hour:
		return fail(fmt.Sprintf("certificate expires in %d days (%s)", int(left.Hours()/24), cert.NotAfter.UTC().Format(time.DateOnly)),
			"renew it within the next days (browsers refuse expired certificates and calls stop)")
	}
	if err := cert.VerifyHostname(c.PublicHost); err != nil {
		names := append([]string{}, cert.DNSNames...)
		for _, ip := range cert.IPAddresses {
			names = append(names, ip.String())
		}
		return fail(fmt.Sprintf("certificate does not cover public_host %q (it names %s)", c.PublicHost, strings.Join(names, ", ")),
			"issue a certificate for public_host: add it to certs.hosts and run `patchbay certs init`, or fix public_host")
	}
	return pass("%s valid until %s, covers %s", filepath.Base(c.HTTP.CertFile), cert.NotAfter.UTC().Format(time.DateOnly), c.PublicHost)
}

// checkPorts: every port Patchbay binds is free, or held by the running Patchbay (the process that answers
// /healthz on http.listen).
func checkPorts(ctx context.Context, d *run) Result {
	c := d.cfg
	type port struct {
		key, proto string
		addr       string
	}
	ports := []port{{"http.listen", "tcp", c.HTTP.Listen}, {"media.ice_port", "udp", ":" + strconv.Itoa(c.Media.ICEPort)}}
	if c.Media.ICETCPPort > 0 { // 0: no ICE-TCP
		ports = append(ports, port{"media.ice_tcp_port", "tcp", ":" + strconv.Itoa(c.Media.ICETCPPort)})
	}
	if c.Metrics.Listen != "" {
		ports = append(ports, port{"metrics.listen", "tcp", c.Metrics.Listen})
	}
	httpHost, httpPort, _ := net.SplitHostPort(c.HTTP.Listen)
	running := d.patchbayAnswers(ctx, httpHost, httpPort)
	ours := 0
	if running {
		ours, _ = portOwner("tcp", atoi(httpPort))
	}
	var notes []string
	for _, p := range ports {
		err := tryBind(p.proto, p.addr)
		if err == nil {
			notes = append(notes, p.key+" free")
			continue
		}
		_, portStr, _ := net.SplitHostPort(p.addr)
		pid, comm := portOwner(p.proto, atoi(portStr))
		if running && (pid == 0 || pid == ours) {
			notes = append(notes, p.key+" held by the running Patchbay")
			continue
		}
		who := "another process"
		if pid != 0 {
			who = fmt.Sprintf("process %d (%s)", pid, comm)
		}
		return fail(fmt.Sprintf("%s %s/%s is taken by %s", p.key, strings.ToUpper(p.proto), portStr, who),
			fmt.Sprintf("stop that process, or give Patchbay another %s", p.key))
	}
	return pass("%s", strings.Join(notes, ", "))
}

// patchbayAnswers reports whether a Patchbay answers /healthz on http.listen: on its host when it names one, else
// on loopback.
func (d *run) patchbayAnswers(ctx context.Context, host, port string) bool {
	if port == "" || port == "0" {
		return false
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		// Only whether it answers like Patchbay matters here, on this host's own listener; the certificate is
		// checked above.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // liveness probe of this host's listener
	}}
	for _, scheme := range []string{"https", "http"} {
		req, _ := http.NewRequestWithContext(ctx, "GET", scheme+"://"+net.JoinHostPort(host, port)+"/healthz", nil)
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		buf := make([]byte, 64)
		n, _ := resp.Body.Read(buf)
		resp.Body.Close()
		// "ok calls=N", or 503 "asterisk unreachable" from a Patchbay that lost Asterisk: ours either way.
		if strings.HasPrefix(string(buf[:n]), "ok calls=") || strings.HasPrefix(string(buf[:n]), "asterisk unreachable") {
			return true
		}
	}
	return false
}

func tryBind(proto, addr string) error {
	if proto == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err == nil {
		l.Close()
	}
	return err
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// portOwner finds the process holding a local TCP listener or UDP socket on port, from /proc (Linux). It returns
// 0 when it cannot tell (another user's process without privileges, or not Linux).
func portOwner(proto string, port int) (pid int, comm string) {
	if port == 0 {
		return 0, ""
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/" + proto, "/proc/net/" + proto + "6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 {
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			p, err := strconv.ParseUint(hexPort, 16, 16)
			if !ok || err != nil || int(p) != port {
				continue
			}
			if proto == "tcp" && fields[3] != "0A" { // LISTEN
				continue
			}
			inodes[fields[9]] = true
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return 0, ""
	}
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", e.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join("/proc", e.Name(), "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
				return n, strings.TrimSpace(string(b))
			}
		}
	}
	return 0, ""
}

func hostAddrs() ([]net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out = append(out, n.IP)
		}
	}
	return out, nil
}

// public reports whether ip is reachable from the internet as is: not loopback, link-local, RFC 1918, CGNAT
// (100.64/10) or IPv6 unique-local.
func public(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsUnspecified() || a.IsMulticast() {
		return false
	}
	if a.Is4() && netip.MustParsePrefix("100.64.0.0/10").Contains(a) {
		return false
	}
	return true
}

func checkPublicIPs(_ context.Context, d *run) Result {
	c := d.cfg
	if len(c.Media.PublicIPs) > 0 {
		for _, s := range c.Media.PublicIPs {
			if net.ParseIP(s) == nil {
				return fail(fmt.Sprintf("media.public_ips has %q, not an IP address", s), "list the public IPv4 addresses browsers reach this host at")
			}
		}
		return pass("media.public_ips %s advertised to browsers", strings.Join(c.Media.PublicIPs, ", "))
	}
	ips, err := d.o.Addrs()
	if err != nil {
		return skip("cannot list this host's addresses: "+err.Error(), "check media.public_ips by hand")
	}
	var private, pub []string
	for _, ip := range ips {
		switch {
		case ip.IsLoopback() || ip.IsLinkLocalUnicast():
		case public(ip):
			pub = append(pub, ip.String())
		default:
			private = append(private, ip.String())
		}
	}
	switch {
	case len(pub) > 0:
		return pass("host has public address %s", strings.Join(pub, ", "))
	case len(private) > 0:
		return fail(fmt.Sprintf("this host only has private addresses (%s) and media.public_ips is empty: browsers outside this network get no usable candidate (no or one-way audio)", strings.Join(private, ", ")),
			"set media.public_ips to the public address that forwards UDP media.ice_port to this host (NAT 1:1), or give browsers a TURN server in media.ice_servers")
	}
	return pass("loopback only: browsers on this host only")
}

// checkICEIPs: media.ice_ips lists addresses this host has (serve refuses to start otherwise); without it every
// address is offered, each a candidate per call.
func checkICEIPs(_ context.Context, d *run) Result {
	c := d.cfg
	ips, err := d.o.Addrs()
	if err != nil {
		return skip("cannot list this host's addresses: "+err.Error(), "check media.ice_ips by hand")
	}
	have := map[string]bool{}
	var offered []string
	for _, ip := range ips {
		if ip4 := ip.To4(); ip4 != nil && (!ip4.IsLoopback() || c.Media.IncludeLoopback) {
			have[ip4.String()] = true
			offered = append(offered, ip4.String())
		}
	}
	if len(c.Media.ICEIPs) == 0 {
		return pass("candidates offered on every address (%s)", strings.Join(offered, ", "))
	}
	for _, s := range c.Media.ICEIPs {
		ip := net.ParseIP(s)
		if ip == nil || ip.To4() == nil || !have[ip.To4().String()] {
			return fail(fmt.Sprintf("media.ice_ips has %s, which is not an IPv4 address of this host (it has %s): Patchbay will not start", s, strings.Join(offered, ", ")),
				"list the host's own address that browsers reach (behind NAT, the private one; the public one goes in media.public_ips)")
		}
	}
	return pass("candidates offered on %s", strings.Join(c.Media.ICEIPs, ", "))
}
