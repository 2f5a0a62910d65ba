package testenv

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// FirefoxPath is Debian's Firefox ESR.
const FirefoxPath = "/usr/bin/firefox-esr"

// FirefoxOptions describe one headless Firefox ESR.
type FirefoxOptions struct {
	Name string // label for logs; default "firefox"
	// FakeToneHz is the frequency of the fake microphone's tone; default Firefox's own 1000 Hz.
	FakeToneHz int
	// Prefs are extra about:config preferences.
	Prefs map[string]any
	// NetNS runs the driver and Firefox inside this namespace (they talk over its loopback; the test over pipes).
	NetNS *NetNS
}

// Firefox is a headless Firefox ESR driven over WebDriver BiDi by puppeteer-core (test/browser/driver.mjs), with
// fake media, no permission prompts, autoplay and loopback ICE allowed, and a PulseAudio null sink of its own as
// its audio output (so WebAudio runs and a page can record what it hears). It gathers loopback candidates like
// Chromium, so page tests run it on the host against Patchbay on 127.0.0.1; tests that firewall or cut the
// browser's network run it in a NetNS (FirefoxOptions.NetNS). Certificates are accepted as the test CA signs them
// (acceptInsecureCerts).
type Firefox struct {
	Name string
	Dir  string

	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	log   *os.File
	pulse *pulseSink
	ffPID atomic.Int64 // Firefox's own process (and group): puppeteer starts it detached from the driver's

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan firefoxReply
	errs    map[string][]string // console errors by page
	readErr error
	once    sync.Once
}

type firefoxReply struct {
	ID    int             `json:"id"`
	OK    bool            `json:"ok"`
	Value json.RawMessage `json:"value"`
	Error string          `json:"error"`
	Event string          `json:"event"`
	Page  string          `json:"page"`
	PID   int             `json:"pid"`
	Type  string          `json:"type"`
	Text  string          `json:"text"`
}

// BrowserDir is test/browser, where the Node driver and its node_modules live.
func BrowserDir() string { return filepath.Join(astRepoRoot(), "test", "browser") }

// ensureBrowserDriver installs puppeteer-core from the npm registry (package-lock.json) when missing.
func ensureBrowserDriver(t testing.TB) {
	t.Helper()
	dir := BrowserDir()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "puppeteer-core", "package.json")); err == nil {
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm not found: run scripts/provision.sh (apt-get install nodejs npm): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}

// StartFirefox starts Firefox ESR; t.Cleanup stops it. A missing binary, node or driver fails t.
func StartFirefox(t testing.TB, o FirefoxOptions) *Firefox {
	t.Helper()
	if _, err := os.Stat(FirefoxPath); err != nil {
		t.Fatalf("firefox-esr not found at %s: run scripts/provision.sh (apt-get install firefox-esr): %v", FirefoxPath, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: run scripts/provision.sh: %v", err)
	}
	ensureBrowserDriver(t)
	if o.Name == "" {
		o.Name = "firefox"
	}
	f := &Firefox{Name: o.Name, Dir: t.TempDir(), t: t, done: make(chan struct{}),
		waiting: map[int]chan firefoxReply{}, errs: map[string][]string{}}
	prefs := map[string]any{
		"media.navigator.streams.fake":        true,
		"media.navigator.permission.disabled": true,
		// A page capturing from fake devices counts as capturing only with this. Otherwise Firefox treats it as a
		// page without microphone access and gathers ICE candidates on the default route's address alone: never
		// on loopback, so no call to Patchbay on 127.0.0.1 could carry media.
		"media.navigator.permission.fake":                   true,
		"media.autoplay.default":                            0,
		"media.autoplay.block-webaudio":                     false,
		"media.peerconnection.ice.loopback":                 true,
		"media.peerconnection.ice.obfuscate_host_addresses": false,
		"media.peerconnection.ice.link_local":               true,
		"network.dns.disableIPv6":                           true,
		"browser.shell.checkDefaultBrowser":                 false,
		"datareporting.policy.dataSubmissionEnabled":        false,
		"toolkit.telemetry.enabled":                         false,
		"app.update.enabled":                                false,
		// Remote settings (blocklists, certificate revocation lists) would fetch from
		// firefox.settings.services.mozilla.com, a DNS query off the machine per fetch. A release build takes this
		// override only with MOZ_REMOTE_SETTINGS_DEVTOOLS=1 (below); an address, not puppeteer's dummy.test, so that
		// nothing is looked up at all.
		"services.settings.server": "http://127.0.0.1:9/v1",
	}
	if o.FakeToneHz > 0 {
		prefs["media.navigator.audio.fake_frequency"] = o.FakeToneHz
	}
	for k, v := range o.Prefs {
		prefs[k] = v
	}
	profile := filepath.Join(f.Dir, "profile")
	if err := os.MkdirAll(profile, 0o700); err != nil {
		t.Fatal(err)
	}
	arg, _ := json.Marshal(map[string]any{"executable": FirefoxPath, "profile": profile, "prefs": prefs})
	f.log, err = os.Create(filepath.Join(f.Dir, "firefox.log"))
	if err != nil {
		t.Fatal(err)
	}
	if o.NetNS != nil {
		f.cmd = o.NetNS.Command(context.Background(), node, filepath.Join(BrowserDir(), "driver.mjs"), string(arg))
	} else {
		f.cmd = exec.Command(node, filepath.Join(BrowserDir(), "driver.mjs"), string(arg))
	}
	f.cmd.Dir = BrowserDir()
	f.pulse, err = startPulseSink(t, filepath.Join(f.Dir, "pulseaudio.log"))
	if err != nil {
		t.Fatalf("%s: audio output: %v", f.Name, err)
	}
	f.cmd.Env = append(os.Environ(), "HOME="+f.Dir, "MOZ_HEADLESS=1", "MOZ_REMOTE_SETTINGS_DEVTOOLS=1", "PULSE_SERVER="+f.pulse.Server)
	f.cmd.Stderr = f.log
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	f.stdin, err = f.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := f.cmd.Start(); err != nil {
		f.pulse.stop()
		t.Fatalf("start the Firefox driver: %v", err)
	}
	ready := make(chan string, 1)
	go f.readLoop(stdout, ready)
	go func() { _ = f.cmd.Wait(); close(f.done) }()
	t.Cleanup(f.Close)
	select {
	case v := <-ready:
		t.Logf("%s: %s in %v", f.Name, v, time.Since(started).Round(time.Millisecond))
	case <-f.done:
		t.Fatalf("%s: driver exited at start:\n%s", f.Name, f.logTail())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: not ready within 60 s:\n%s", f.Name, f.logTail())
	}
	return f
}

func (f *Firefox) readLoop(r io.Reader, ready chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20) // recorded audio comes back as one line
	for sc.Scan() {
		var m firefoxReply
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			fmt.Fprintf(f.log, "driver said: %s\n", sc.Bytes())
			continue
		}
		switch m.Event {
		case "ready":
			f.ffPID.Store(int64(m.PID))
			ready <- fmt.Sprintf("ready (Firefox pid %d)", m.PID)
			continue
		case "console":
			fmt.Fprintf(f.log, "console %s %s: %s\n", m.Page, m.Type, m.Text)
			if m.Type == "error" {
				f.mu.Lock()
				f.errs[m.Page] = append(f.errs[m.Page], m.Text)
				f.mu.Unlock()
			}
			continue
		}
		f.mu.Lock()
		ch := f.waiting[m.ID]
		delete(f.waiting, m.ID)
		f.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
	f.mu.Lock()
	f.readErr = errors.New("firefox driver exited")
	for id, ch := range f.waiting {
		close(ch)
		delete(f.waiting, id)
	}
	f.mu.Unlock()
}

func (f *Firefox) call(ctx context.Context, req map[string]any) (json.RawMessage, error) {
	f.mu.Lock()
	if f.readErr != nil {
		f.mu.Unlock()
		return nil, f.readErr
	}
	f.nextID++
	id := f.nextID
	ch := make(chan firefoxReply, 1)
	f.waiting[id] = ch
	f.mu.Unlock()
	req["id"] = id
	b, _ := json.Marshal(req)
	if _, err := f.stdin.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("%s: write to driver: %w", f.Name, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("%s: driver exited:\n%s", f.Name, f.logTail())
		}
		if !r.OK {
			return nil, fmt.Errorf("%s: %s", f.Name, r.Error)
		}
		return r.Value, nil
	case <-ctx.Done():
		f.mu.Lock()
		delete(f.waiting, id)
		f.mu.Unlock()
		return nil, fmt.Errorf("%s: %v: %w", f.Name, req["op"], ctx.Err())
	}
}

func (f *Firefox) logTail() string {
	b, _ := os.ReadFile(filepath.Join(f.Dir, "firefox.log"))
	return astTail(string(b), 30)
}

// Kill ends Firefox and its driver at once with SIGKILL, as a crash or a killed laptop would: no WebSocket close
// frame, no hangup, no DTLS close_notify.
func (f *Firefox) Kill() error {
	pid := int(f.ffPID.Load())
	if pid <= 0 {
		return errors.New("firefox: no process to kill")
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill firefox process group %d: %w", pid, err)
	}
	_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL) // the driver
	return nil
}

// Close ends the driver (which closes Firefox). Safe to call more than once.
func (f *Firefox) Close() {
	f.once.Do(func() {
		_ = f.stdin.Close()
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
			<-f.done
		}
		if pid := int(f.ffPID.Load()); pid > 0 { // what outlived the driver (Firefox's group of its own)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		f.pulse.stop()
		_ = f.log.Close()
		if f.t.Failed() {
			name := strings.NewReplacer("/", "_", " ", "_").Replace(f.t.Name()) + "-" + f.Name
			dst := filepath.Join(ArtifactsDir(), name)
			if os.MkdirAll(dst, 0o755) == nil {
				for _, name := range []string{"firefox.log", "pulseaudio.log"} {
					if b, err := os.ReadFile(filepath.Join(f.Dir, name)); err == nil {
						_ = os.WriteFile(filepath.Join(dst, name), b, 0o644)
					}
				}
				f.t.Logf("%s: log kept in %s", f.Name, dst)
			}
		}
	})
}

// BrowserName is "firefox".
func (f *Firefox) BrowserName() string { return "firefox" }

// NewTab opens a page (about:blank).
func (f *Firefox) NewTab(t testing.TB, name string) Tab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.call(ctx, map[string]any{"op": "newPage", "page": name}); err != nil {
		t.Fatalf("%v\n%s", err, f.logTail())
	}
	return &firefoxTab{f: f, name: name}
}

type firefoxTab struct {
	f    *Firefox
	name string
}

func (p *firefoxTab) TabName() string { return p.name }

func (p *firefoxTab) Click(ctx context.Context, css string) error {
	if _, err := p.f.call(ctx, map[string]any{"op": "click", "page": p.name, "selector": css}); err != nil {
		return fmt.Errorf("%s: click %s: %w", p.name, css, err)
	}
	return nil
}

func (p *firefoxTab) Type(ctx context.Context, css, text string) error {
	if _, err := p.f.call(ctx, map[string]any{"op": "type", "page": p.name, "selector": css, "text": text}); err != nil {
		return fmt.Errorf("%s: type into %s: %w", p.name, css, err)
	}
	return nil
}

func (p *firefoxTab) Screenshot(ctx context.Context, name string) (string, error) {
	raw, err := p.f.call(ctx, map[string]any{"op": "screenshot", "page": p.name})
	if err != nil {
		return "", fmt.Errorf("%s: screenshot: %w", p.name, err)
	}
	var b64 string
	if err := json.Unmarshal(raw, &b64); err != nil {
		return "", fmt.Errorf("%s: screenshot: %w", p.name, err)
	}
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("%s: screenshot: %w", p.name, err)
	}
	return saveScreenshot(name, png)
}

func (p *firefoxTab) RecordRemoteAudio(ctx context.Context, d time.Duration) (RemoteAudio, error) {
	return recordRemoteAudio(ctx, p, d)
}

func (p *firefoxTab) Navigate(ctx context.Context, u string) error {
	_, err := p.f.call(ctx, map[string]any{"op": "goto", "page": p.name, "url": u})
	return err
}

func (p *firefoxTab) Eval(ctx context.Context, expr string, out any) error {
	raw, err := p.f.call(ctx, map[string]any{"op": "eval", "page": p.name, "expr": expr})
	if err != nil {
		return fmt.Errorf("%s: eval %.60q: %w", p.name, expr, err)
	}
	if out == nil {
		return nil
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil || s == nil {
		return fmt.Errorf("%s: eval %.60q: no value", p.name, expr)
	}
	if err := json.Unmarshal([]byte(*s), out); err != nil {
		return fmt.Errorf("%s: eval %.60q: decode %.200s: %w", p.name, expr, *s, err)
	}
	return nil
}

func (p *firefoxTab) WaitFor(ctx context.Context, what, cond string, timeout time.Duration) error {
	return pollTab(ctx, p, what, cond, timeout)
}

func (p *firefoxTab) OpenPatchbay(ctx context.Context, pb *Patchbay, token string, params url.Values) error {
	return openPatchbay(ctx, p, pb, token, params)
}

func (p *firefoxTab) State(ctx context.Context) (PageState, error) {
	var s PageState
	err := p.Eval(ctx, `window.patchbayState || null`, &s)
	return s, err
}

func (p *firefoxTab) ConsoleErrors() []string {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	return append([]string(nil), p.f.errs[p.name]...)
}
