package testenv

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/certs"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/server"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// PatchbayOptions tune an in-process Patchbay.
type PatchbayOptions struct {
	// Config edits the configuration after the harness filled it in.
	Config func(*config.Config)
}

// Patchbay is a Patchbay server running inside the test process against a test Asterisk.
type Patchbay struct {
	Config *config.Config
	Server *server.Server
	// URL is the wss:// URL of /ws; BaseURL the https:// origin of the page.
	URL, BaseURL string
	// TLS trusts the instance's CA.
	TLS *tls.Config
	// CACert is the CA certificate's path, for browsers.
	CACert string

	cancel context.CancelFunc
	done   chan error
}

// StartPatchbay starts Patchbay against a, on a free HTTPS port and a free ICE port, and stops it at cleanup.
func StartPatchbay(t testing.TB, a *Asterisk, opts PatchbayOptions) *Patchbay {
	t.Helper()
	cfg := testConfig(t, a)
	if opts.Config != nil {
		opts.Config(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test Patchbay config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if os.Getenv("PATCHBAY_TEST_QUIET") != "" {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, err := server.New(&cfg, log)
	if err != nil {
		t.Fatalf("start Patchbay: %v", err)
	}
	pool, err := certs.CertPool(filepath.Join(a.CertDir, certs.CACertFile))
	if err != nil {
		t.Fatalf("trust test CA: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Patchbay{
		Config: &cfg,
		Server: srv,
		TLS:    &tls.Config{RootCAs: pool, ServerName: "localhost"},
		CACert: filepath.Join(a.CertDir, certs.CACertFile),
		cancel: cancel,
		done:   make(chan error, 1),
	}
	port := srv.Addr().(*net.TCPAddr).Port
	p.BaseURL = fmt.Sprintf("https://localhost:%d", port)
	p.URL = fmt.Sprintf("wss://localhost:%d/ws", port)
	go func() { p.done <- srv.Run(ctx) }()
	t.Cleanup(func() { p.Stop(t) })
	// Run returns an error at once when ARI does not connect; otherwise it is serving once /healthz answers.
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-p.done:
			t.Fatalf("Patchbay stopped at start: %v", err)
		default:
		}
		if c, err := tls.Dial("tcp", srv.Addr().String(), p.TLS); err == nil {
			c.Close()
			if srv.Ready() {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Patchbay did not become ready within 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// testConfig is the configuration of a test Patchbay against a: free ports where the caller does not fix them,
// a random relay window, the instance's certificates, fresh secrets.
func testConfig(t testing.TB, a *Asterisk) config.Config {
	cfg := config.Defaults()
	cfg.ARI.URL = a.ARIURL()
	cfg.ARI.User = a.ARIUser
	cfg.ARI.Password = config.Secret(a.ARIPassword)
	cfg.ARI.App = a.App
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.ShutdownTimeout = 3 * time.Second
	cfg.Media.ICEPort = 0
	cfg.Media.ICETCPPort = FreeTCPPort(t)
	cfg.Media.IncludeLoopback = true
	// Relay ports: a random window per instance so that concurrent test processes do not collide.
	base := 30000 + rand.IntN(200)*100
	cfg.Media.RelayPortStart, cfg.Media.RelayPortEnd = base, base+99
	cfg.Media.RelayDrain = 200 * time.Millisecond
	cfg.Auth.TokenSecret = config.Secret(randomSecret())
	cfg.Certs.Dir = a.CertDir
	cfg.HTTP.CertFile = filepath.Join(a.CertDir, certs.CertFile)
	cfg.HTTP.KeyFile = filepath.Join(a.CertDir, certs.KeyFile)
	cfg.Log.Level = "debug"
	// Asterisk silent for 5 s, not the default 2, ends the calls with asterisk_lost: on this 2-core host a test
	// Asterisk beside the other lane's browsers now and then went 2 s without answering a ping, and a call in setup
	// then ended with it. The fault tests that time the detection set the default back.
	cfg.ARI.DeadAfter = 5 * time.Second
	cfg.Metrics.Listen = "127.0.0.1:0" // a free port per instance; Server.MetricsAddr tells which
	return cfg
}

// Stop shuts Patchbay down and waits for it.
func (p *Patchbay) Stop(t testing.TB) {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("Patchbay stopped with: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("Patchbay did not stop within 30 s")
	}
}

// Token mints a browser token for user with the given grants.
func (p *Patchbay) Token(t testing.TB, user string, dial ...string) string {
	t.Helper()
	c := auth.Claims{Name: user, Dial: dial}
	c.Subject = user
	tok, err := p.Server.Signer().Mint(c, time.Hour)
	if err != nil {
		t.Fatalf("mint token: %v", err)
	}
	return tok
}

// Dial opens an authenticated signalling connection as user.
func (p *Patchbay) Dial(t testing.TB, ctx context.Context, user string, dial ...string) *signal.Conn {
	t.Helper()
	c, err := signal.Dial(ctx, p.URL, p.Token(t, user, dial...), signal.DialOptions{TLSConfig: p.TLS})
	if err != nil {
		t.Fatalf("signal dial as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// FreeTCPPort returns a port that was free a moment ago, outside the kernel's ephemeral range (astFreePorts).
func FreeTCPPort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}

func randomSecret() string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 48)
	for i := range b {
		b[i] = chars[rand.IntN(len(chars))]
	}
	return string(b)
}
