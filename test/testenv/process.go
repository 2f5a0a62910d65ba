package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/certs"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// PatchbayProcess is `patchbay serve` running as its own process, for tests that kill it (kill -9, SIGTERM) and
// start it again with the same configuration and ports.
type PatchbayProcess struct {
	Config *config.Config
	// URL is the wss:// URL of /ws; BaseURL the https:// origin.
	URL, BaseURL string
	TLS          *tls.Config
	Signer       *auth.Signer // same secret as the process: mints tokens it accepts
	LogPath      string

	bin, cfgPath string
	mu           sync.Mutex
	cmd          *exec.Cmd
	done         chan struct{}
	exit         error
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// patchbayBinary builds cmd/patchbay once per test process.
func patchbayBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "patchbay-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "patchbay")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/patchbay")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/patchbay: %w: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build patchbay: %v", buildErr)
	}
	return builtBin
}

// StartPatchbayProcess starts `patchbay serve` against a with the same configuration StartPatchbay would use
// (fixed free ports so a restart gets the same ones), and stops it at cleanup.
func StartPatchbayProcess(t testing.TB, a *Asterisk, opts PatchbayOptions) *PatchbayProcess {
	t.Helper()
	cfg := testConfig(t, a)
	ports, err := astFreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Listen = "127.0.0.1:" + strconv.Itoa(ports[0])
	cfg.Media.ICEPort = ports[1]
	if opts.Config != nil {
		opts.Config(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test Patchbay config: %v", err)
	}
	dir := t.TempDir()
	p := &PatchbayProcess{Config: &cfg, bin: patchbayBinary(t), cfgPath: filepath.Join(dir, "patchbay.yaml"),
		LogPath: filepath.Join(dir, "patchbay.log")}
	if err := writeConfig(p.cfgPath, &cfg); err != nil {
		t.Fatal(err)
	}
	pool, err := certs.CertPool(filepath.Join(a.CertDir, certs.CACertFile))
	if err != nil {
		t.Fatalf("trust test CA: %v", err)
	}
	p.TLS = &tls.Config{RootCAs: pool, ServerName: "localhost"}
	p.BaseURL = fmt.Sprintf("https://localhost:%d", ports[0])
	p.URL = fmt.Sprintf("wss://localhost:%d/ws", ports[0])
	if p.Signer, err = auth.NewSigner([]byte(cfg.Auth.TokenSecret.Reveal()), cfg.Auth.TokenIssuer); err != nil {
		t.Fatal(err)
	}
	p.Start(t)
	t.Cleanup(func() {
		p.Kill(t)
		if t.Failed() {
			t.Logf("patchbay log (%s), last lines:\n%s", p.LogPath, tailFile(p.LogPath, 60))
		}
	})
	return p
}

// Start runs the process and waits until it serves (its /healthz answers).
func (p *PatchbayProcess) Start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p.bin, "serve", "--config", p.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start patchbay: %v", err)
	}
	logf.Close()
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	go func() { // owned by p: ends when the process exits (Kill, Wait, cleanup)
		err := cmd.Wait()
		p.mu.Lock()
		p.exit = err
		p.mu.Unlock()
		close(done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("patchbay exited at start: %v\n%s", p.exitErr(), tailFile(p.LogPath, 40))
		default:
		}
		if p.healthy() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("patchbay did not serve within 30 s\n%s", tailFile(p.LogPath, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *PatchbayProcess) healthy() bool {
	c, err := tls.Dial("tcp", strings.TrimPrefix(p.Config.HTTP.Listen, ""), p.TLS)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.Contains(line, " 200 ")
}

// PID is the process id, or 0 when it is not running.
func (p *PatchbayProcess) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to the process.
func (p *PatchbayProcess) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if pid := p.PID(); pid != 0 {
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatalf("signal %v to patchbay %d: %v", sig, pid, err)
		}
	}
}

// Wait waits for the process to exit and returns its exit code (-1 if killed by a signal).
func (p *PatchbayProcess) Wait(t testing.TB, within time.Duration) int {
	t.Helper()
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return 0
	}
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("patchbay did not exit within %v\n%s", within, tailFile(p.LogPath, 40))
	}
	var ee *exec.ExitError
	if err := p.exitErr(); errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

func (p *PatchbayProcess) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

// Kill sends SIGKILL (like a crash) and waits for the process to be gone.
func (p *PatchbayProcess) Kill(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("patchbay %d still running after SIGKILL", cmd.Process.Pid)
	}
}

// RSS is the process's resident memory in bytes (VmRSS).
func (p *PatchbayProcess) RSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
	if err != nil {
		t.Fatalf("read patchbay status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// Token mints a browser token the process accepts.
func (p *PatchbayProcess) Token(t testing.TB, user string, dial ...string) string {
	t.Helper()
	c := auth.Claims{Name: user, Dial: dial}
	c.Subject = user
	tok, err := p.Signer.Mint(c, time.Hour)
	if err != nil {
		t.Fatalf("mint token: %v", err)
	}
	return tok
}

// Dial opens an authenticated signalling connection as user.
func (p *PatchbayProcess) Dial(t testing.TB, ctx context.Context, user string, dial ...string) *signal.Conn {
	t.Helper()
	c, err := signal.Dial(ctx, p.URL, p.Token(t, user, dial...), signal.DialOptions{TLSConfig: p.TLS})
	if err != nil {
		t.Fatalf("signal dial as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// writeConfig writes cfg as the YAML `patchbay serve` reads, secrets revealed, mode 0600.
func writeConfig(path string, cfg *config.Config) error {
	b, err := yaml.Marshal(toYAML(reflect.ValueOf(*cfg)))
	if err != nil {
		return fmt.Errorf("encode test config: %w", err)
	}
	return os.WriteFile(path, b, 0o600)
}

// toYAML turns a config value into plain maps keyed by the yaml tags, revealing secrets (the YAML encoder would
// redact them) and writing durations as Go duration strings.
func toYAML(v reflect.Value) any {
	switch x := v.Interface().(type) {
	case config.Secret:
		return x.Reveal()
	case time.Duration:
		return x.String()
	}
	switch v.Kind() {
	case reflect.Struct:
		out := map[string]any{}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			out[name] = toYAML(v.Field(i))
		}
		return out
	case reflect.Map:
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			out[fmt.Sprint(k.Interface())] = toYAML(v.MapIndex(k))
		}
		return out
	case reflect.Slice:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = toYAML(v.Index(i))
		}
		return out
	default:
		return v.Interface()
	}
}

func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return astTail(string(b), lines)
}
