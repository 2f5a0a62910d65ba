package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patchbay/patchbay/turnconf"
)

// CoturnPath is Debian's coturn binary.
const CoturnPath = "/usr/bin/turnserver"

// CoturnOptions tune a test coturn.
type CoturnOptions struct {
	// CertDir holds server.crt/server.key for TURN over TLS (the test Asterisk's CertDir); empty: no TLS.
	CertDir string
	// ExtraIPs are addresses of the test's own namespaces (NetNS.HostIP) coturn also listens on and may relay to.
	ExtraIPs []string
}

// Coturn is a coturn on loopback with its own config: random ports, use-auth-secret with a random secret, relay
// to loopback allowed (tests only: Patchbay is on 127.0.0.1).
type Coturn struct {
	Port, TLSPort int
	Secret        string
	Realm         string
	LogPath       string
	cmd           *exec.Cmd
	done          chan struct{}
}

// StartCoturn starts coturn and waits until it listens; t.Cleanup stops it. A missing binary fails t.
func StartCoturn(t testing.TB, o CoturnOptions) *Coturn {
	t.Helper()
	if _, err := os.Stat(CoturnPath); err != nil {
		t.Fatalf("coturn not found at %s: run scripts/provision.sh (apt-get install coturn): %v", CoturnPath, err)
	}
	dir := t.TempDir()
	c := &Coturn{Secret: randomSecret(), Realm: "patchbay.test", LogPath: filepath.Join(dir, "turnserver.log"), done: make(chan struct{})}
	c.Port = freeUDPTCPPort(t)
	relay := 45000 + rand.IntN(40)*100
	p := turnconf.Params{
		ListenIPs: append([]string{"127.0.0.1"}, o.ExtraIPs...), RelayIPs: []string{"127.0.0.1"},
		Port: c.Port, MinPort: relay, MaxPort: relay + 99,
		Secret: c.Secret, Realm: c.Realm,
		AllowLoopback: true, AllowedPeerIPs: append([]string{"127.0.0.1"}, o.ExtraIPs...),
		PidFile: filepath.Join(dir, "turnserver.pid"), LogFile: c.LogPath, Verbose: true,
	}
	if o.CertDir != "" {
		c.TLSPort = freeUDPTCPPort(t)
		p.TLSPort = c.TLSPort
		p.CertFile, p.KeyFile = filepath.Join(o.CertDir, "server.crt"), filepath.Join(o.CertDir, "server.key")
	}
	conf := filepath.Join(dir, "turnserver.conf")
	if err := turnconf.Write(p, conf); err != nil {
		t.Fatalf("coturn config: %v", err)
	}
	c.cmd = exec.Command(CoturnPath, "-c", conf, "--no-stdout-log")
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start coturn: %v", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.Stop(t) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-c.done:
			t.Fatalf("coturn exited at start:\n%s", c.LogTail())
		default:
		}
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", c.Port), 200*time.Millisecond); err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("coturn did not listen on %d within 10 s:\n%s", c.Port, c.LogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// URLs are the TURN URLs on host (e.g. "localhost" or "127.0.0.1"): UDP, TCP and, with TLS, turns.
func (c *Coturn) URLs(host string) []string {
	u := []string{
		fmt.Sprintf("turn:%s:%d?transport=udp", host, c.Port),
		fmt.Sprintf("turn:%s:%d?transport=tcp", host, c.Port),
	}
	if c.TLSPort > 0 {
		u = append(u, fmt.Sprintf("turns:%s:%d?transport=tcp", host, c.TLSPort))
	}
	return u
}

// LogTail is the end of coturn's log.
func (c *Coturn) LogTail() string {
	b, _ := os.ReadFile(c.LogPath)
	return astTail(string(b), 30)
}

// Log is coturn's whole log.
func (c *Coturn) Log() string {
	b, _ := os.ReadFile(c.LogPath)
	return string(b)
}

// Allocations counts successful allocations in the log, e.g. to prove a call went through the relay.
func (c *Coturn) Allocations() int {
	return strings.Count(c.Log(), "ALLOCATE processed, success")
}

// Refusals counts requests refused for their credentials (401).
func (c *Coturn) Refusals() int {
	return strings.Count(c.Log(), "error 401")
}

// Stop ends coturn and waits for it.
func (c *Coturn) Stop(t testing.TB) {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	if t.Failed() || os.Getenv("PATCHBAY_TEST_COTURN_LOG") != "" {
		t.Logf("coturn log:\n%s", c.Log())
	}
}

// freeUDPTCPPort finds a loopback port free for both UDP and TCP.
func freeUDPTCPPort(t testing.TB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		port := 20000 + rand.IntN(9000)
		ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return port
	}
	t.Fatal("no free UDP+TCP port")
	return 0
}
