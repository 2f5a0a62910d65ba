package testenv

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is Debian's Chromium binary (/usr/bin/chromium is a wrapper script that prints a
// harmless shell error).
const ChromiumPath = "/usr/lib/chromium/chromium"

// ChromiumOptions describe one headless Chromium.
type ChromiumOptions struct {
	Name string // label for logs; default "chromium"
	// FakeMicWAV is what the fake microphone captures; Chromium loops it. Empty: Chromium's own
	// fake device (a beep every second).
	FakeMicWAV string
	// TrustCA is a PEM CA certificate that Chromium trusts through an NSS database under a
	// temporary HOME (needs certutil from libnss3-tools).
	TrustCA string
	// IgnoreCertErrors starts Chromium with --ignore-certificate-errors instead: the fallback
	// when real trust cannot be set up. TrustCA is then not used.
	IgnoreCertErrors bool
	// NetNS runs Chromium inside this network namespace (chromedp still drives it over its pipe).
	NetNS *NetNS
}

// Chromium is a running headless Chromium driven through chromedp. Each Page is one tab.
type Chromium struct {
	Name string
	// Dir holds home/ (with .pki/nssdb), profile/ (--user-data-dir), chromium.log (the browser's
	// own output) and console-*.log (each page's console).
	Dir     string
	LogPath string

	t         testing.TB
	profile   string
	pid       int
	logf      *os.File
	browser   context.Context // the first tab; the browser lives as long as it
	cancelBr  context.CancelFunc
	cancelAll context.CancelFunc
	killed    atomic.Bool
	closeOnce sync.Once

	mu    sync.Mutex
	pages []*Page
}

// StartChromium starts headless Chromium with a fresh profile, a fake microphone and loopback
// WebRTC allowed. t.Cleanup stops it; a missing binary or certutil fails t.
func StartChromium(t testing.TB, o ChromiumOptions) *Chromium {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Fatalf("chromium not found at %s: apt-get install chromium (%v)", ChromiumPath, err)
	}
	if o.Name == "" {
		o.Name = "chromium"
	}
	c := &Chromium{Name: o.Name, Dir: t.TempDir(), t: t}
	c.LogPath = filepath.Join(c.Dir, "chromium.log")
	c.profile = filepath.Join(c.Dir, "profile")
	home := filepath.Join(c.Dir, "home")
	for _, d := range []string{c.profile, home} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
	}
	if o.TrustCA != "" && !o.IgnoreCertErrors {
		if err := chromiumTrustCA(home, o.TrustCA); err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
	}
	if o.FakeMicWAV != "" {
		if _, err := os.Stat(o.FakeMicWAV); err != nil {
			t.Fatalf("%s: fake microphone WAV: %v", c.Name, err)
		}
	}
	logf, err := os.Create(c.LogPath)
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	c.logf = logf

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(ChromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(c.profile),
		chromedp.WindowSize(900, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		// Nothing off this machine: Chromium's own services (autofill, sign-in, updates) resolve to nothing instead of
		// asking the network's DNS and connecting out. Tests reach only localhost, loopback and their namespaces.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.*, EXCLUDE 10.254.*"),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// Raw host candidates instead of mDNS .local names: nothing goes to the multicast group.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("enable-logging", "stderr"),
		chromedp.Flag("log-level", "1"),
		chromedp.Env("HOME="+home),
		chromedp.CombinedOutput(logf),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			// Its own process group, so Kill takes every Chromium process at once; and killed
			// with the test process (Pdeathsig, as chromedp does by default).
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			// Without CAP_SYS_NICE: run as root, Chromium raises its browser and IO threads to nice -8 by itself,
			// above everything else in its session (the test binary with Patchbay in it). It was not what
			// starved the test Asterisks in CI runs 40-46: that was the tests' whole session reniced to -20 by a
			// bench script (see shareAutogroupNice in asterisk.go).
			if setpriv, err := exec.LookPath("setpriv"); err == nil {
				cmd.Args = append([]string{setpriv, "--bounding-set", "-sys_nice", "--"}, cmd.Args...)
				cmd.Path = setpriv
			}
			if o.NetNS != nil { // `ip netns exec` keeps the DevTools pipe's descriptors
				if ip, err := exec.LookPath("ip"); err == nil {
					cmd.Args = append([]string{ip, "netns", "exec", o.NetNS.Name}, cmd.Args...)
					cmd.Path = ip
				}
			}
		}),
	)
	if o.FakeMicWAV != "" {
		opts = append(opts, chromedp.Flag("use-file-for-fake-audio-capture", o.FakeMicWAV))
	}
	if o.IgnoreCertErrors {
		opts = append(opts, chromedp.IgnoreCertErrors)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	c.browser, c.cancelBr = chromedp.NewContext(allocCtx)
	c.cancelAll = cancelAlloc
	t.Cleanup(c.Close)
	// The first Run starts the browser; it must not have a timeout (that would stop the browser).
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(c.browser) }()
	select {
	case err = <-started:
	case <-time.After(30 * time.Second):
		err = errors.New("no DevTools connection within 30 s")
	}
	if err != nil {
		t.Fatalf("%s: start %s: %v\n%s", c.Name, ChromiumPath, err, c.logTail())
	}
	if p := chromedp.FromContext(c.browser).Browser.Process(); p != nil {
		c.pid = p.Pid
	}
	return c
}

// chromiumTrustCA creates an NSS database under home and adds the CA as trusted for TLS servers.
func chromiumTrustCA(home, caPath string) error {
	certutil, err := exec.LookPath("certutil")
	if err != nil {
		return fmt.Errorf("certutil not found: apt-get install libnss3-tools (or use IgnoreCertErrors): %w", err)
	}
	db := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"-d", "sql:" + db, "-N", "--empty-password"},
		{"-d", "sql:" + db, "-A", "-t", "C,,", "-n", "patchbay-test-ca", "-i", caPath},
	} {
		if out, err := exec.Command(certutil, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("certutil %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// PID is the browser process's id (also its process group).
func (c *Chromium) PID() int { return c.pid }

// Kill ends every Chromium process at once with SIGKILL, as a crash or a killed laptop would: no
// WebSocket close frame, no BYE, no DTLS close_notify.
func (c *Chromium) Kill() error {
	if c.pid <= 0 {
		return errors.New("chromium: no process to kill")
	}
	c.killed.Store(true)
	if err := syscall.Kill(-c.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill chromium process group %d: %w", c.pid, err)
	}
	c.killStragglers()
	return nil
}

// killStragglers SIGKILLs processes of this browser that left its process group: only those
// started with this instance's own --user-data-dir, by pid.
func (c *Chromium) killStragglers() {
	want := []byte("--user-data-dir=" + c.profile + "\x00")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(append(cmdline, 0), want) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Close closes every page and stops the browser. Safe to call more than once.
func (c *Chromium) Close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		pages := c.pages
		c.mu.Unlock()
		for _, p := range pages {
			p.close()
		}
		done := make(chan struct{})
		go func() {
			c.cancelBr()  // graceful: closes the browser
			c.cancelAll() // kills what is left and waits for the process
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.t.Logf("%s: did not stop within 10 s: killing it", c.Name)
			_ = c.Kill()
			<-done
		}
		c.killStragglers() // children that outlived the browser process
		_ = c.logf.Close()
		if c.t.Failed() {
			c.keepLogs()
		}
	})
}

// keepLogs copies the browser's and the pages' logs into ArtifactsDir()/<test>-<name>/, since the
// test's temp dir is removed.
func (c *Chromium) keepLogs() {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(c.t.Name()) + "-" + c.Name
	dst := filepath.Join(ArtifactsDir(), name)
	logs, _ := filepath.Glob(filepath.Join(c.Dir, "*.log"))
	if len(logs) == 0 || os.MkdirAll(dst, 0o755) != nil {
		return
	}
	for _, l := range logs {
		if data, err := os.ReadFile(l); err == nil {
			_ = os.WriteFile(filepath.Join(dst, filepath.Base(l)), data, 0o644)
		}
	}
	c.t.Logf("%s: logs kept in %s", c.Name, dst)
}

func (c *Chromium) logTail() string {
	data, _ := os.ReadFile(c.LogPath)
	return "--- " + c.Name + " log " + c.LogPath + ":\n" + astTail(string(data), 25)
}

// Page is one tab.
type Page struct {
	Name string
	c    *Chromium
	ctx  context.Context // chromedp context of the tab
	stop context.CancelFunc

	consoleDone chan struct{}
	mu          sync.Mutex
	errs        []string // console errors and uncaught exceptions
}

// NewPage opens a new tab (about:blank). Its console goes to Dir/console-<name>.log; errors and
// exceptions are also kept for ConsoleErrors.
func (c *Chromium) NewPage(t testing.TB, name string) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(c.browser)
	p := &Page{Name: name, c: c, ctx: ctx, stop: cancel, consoleDone: make(chan struct{})}
	if err := chromedp.Do(ctx); err != nil { // creates the tab
		cancel()
		t.Fatalf("%s: open tab %s: %v\n%s", c.Name, name, err, c.logTail())
	}
	logf, err := os.Create(filepath.Join(c.Dir, "console-"+name+".log"))
	if err != nil {
		cancel()
		t.Fatalf("%s: %v", c.Name, err)
	}
	msgs := chromedp.Console(ctx)
	go func() { // owned by p: ends when the tab's context ends (close)
		defer close(p.consoleDone)
		defer logf.Close()
		for m, err := range msgs {
			if err != nil {
				return
			}
			fmt.Fprintf(logf, "%s %s\n", m.Time.Format("15:04:05.000"), m.String())
			if m.Type == chromedp.ConsoleError || m.IsException() {
				p.mu.Lock()
				p.errs = append(p.errs, m.String())
				p.mu.Unlock()
			}
		}
	}()
	c.mu.Lock()
	c.pages = append(c.pages, p)
	c.mu.Unlock()
	return p
}

func (p *Page) close() {
	p.stop()
	select {
	case <-p.consoleDone:
	case <-time.After(5 * time.Second):
	}
}

// ConsoleErrors are the console errors and uncaught exceptions seen so far.
func (p *Page) ConsoleErrors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errs...)
}

// bound derives a context for one action on the tab that also ends with ctx.
func (p *Page) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	var tctx context.Context
	var cancel context.CancelFunc
	if dl, ok := ctx.Deadline(); ok {
		tctx, cancel = context.WithDeadline(p.ctx, dl)
	} else {
		tctx, cancel = context.WithCancel(p.ctx)
	}
	stop := context.AfterFunc(ctx, cancel)
	return tctx, func() { stop(); cancel() }
}

// Navigate loads u in the tab.
func (p *Page) Navigate(ctx context.Context, u string) error {
	tctx, cancel := p.bound(ctx)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(u)); err != nil {
		return fmt.Errorf("%s: navigate: %w", p.Name, err)
	}
	return nil
}

// Do runs chromedp actions (clicks, keys) in the tab.
func (p *Page) Do(ctx context.Context, actions ...chromedp.Action[chromedp.Void]) error {
	tctx, cancel := p.bound(ctx)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	return nil
}

// Click clicks the element matching the CSS selector.
func (p *Page) Click(ctx context.Context, css string) error {
	return p.Do(ctx, chromedp.Click(chromedp.CSS(css)))
}

// Type types text into the element matching the CSS selector, key by key.
func (p *Page) Type(ctx context.Context, css, text string) error {
	return p.Do(ctx, chromedp.SendKeys(chromedp.CSS(css), text))
}

// TabName is the name the tab was opened with.
func (p *Page) TabName() string { return p.Name }

// Eval runs the JavaScript expression, awaits it if it is a promise, and decodes its JSON value
// into out (nil: ignore the value).
func (p *Page) Eval(ctx context.Context, expr string, out any) error {
	tctx, cancel := p.bound(ctx)
	defer cancel()
	raw, err := chromedp.Run(tctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return fmt.Errorf("%s: eval %.60q: %w", p.Name, expr, err)
	}
	if out == nil {
		return nil
	}
	if len(raw) == 0 {
		return fmt.Errorf("%s: eval %.60q: no value", p.Name, expr)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: eval %.60q: decode %s: %w", p.Name, expr, raw, err)
	}
	return nil
}

// PageState mirrors window.patchbayState of the Patchbay page.
type PageState struct {
	Status           string `json:"status"`
	User             string `json:"user"`
	LastError        string `json:"lastError"`
	LastErrorMessage string `json:"lastErrorMessage"`
	CallState        string `json:"callState"`
	CallID           string `json:"callId"`
	Peer             string `json:"peer"`
	Direction        string `json:"direction"`
	Cause            string `json:"cause"`
	Code             int    `json:"code"`
	Muted            bool   `json:"muted"`
	DTMFReceived     string `json:"dtmfReceived"`
}

// State reads window.patchbayState.
func (p *Page) State(ctx context.Context) (PageState, error) {
	var s PageState
	err := p.Eval(ctx, `window.patchbayState || null`, &s)
	return s, err
}

// WaitFor polls the JavaScript condition (e.g. `window.patchbayState.callState === "answered"`)
// until it is true or timeout passes; the error then carries the page state.
func (p *Page) WaitFor(ctx context.Context, what, cond string, timeout time.Duration) error {
	tctx, cancel := p.bound(ctx)
	defer cancel()
	_, err := chromedp.Run(tctx, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(20*time.Millisecond)))
	if err != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		var st json.RawMessage
		_ = p.Eval(sctx, `window.patchbayState || null`, &st)
		return fmt.Errorf("%s: waiting for %s (%s): %w; patchbayState %s", p.Name, what, cond, err, st)
	}
	return nil
}

// OpenPatchbay opens pb's page signed in with token. params adds URL parameters (e.g.
// autoanswer=1); the microphone processing is turned off so test tones stay intact. It waits
// until the page says it is connected.
func (p *Page) OpenPatchbay(ctx context.Context, pb *Patchbay, token string, params url.Values) error {
	q := url.Values{"echoCancellation": {"0"}, "noiseSuppression": {"0"}, "autoGainControl": {"0"}}
	for k, v := range params {
		q[k] = v
	}
	q.Set("token", token)
	if err := p.Navigate(ctx, pb.BaseURL+"/?"+q.Encode()); err != nil {
		return err
	}
	return p.WaitFor(ctx, "sign-in", `window.patchbayState && window.patchbayState.status === "connected"`, 15*time.Second)
}

// ArtifactsDir is /work/main/artifacts (the repository's git-ignored artifacts/ folder).
func ArtifactsDir() string { return filepath.Join(astRepoRoot(), "artifacts") }

// Screenshot saves a PNG of the tab's viewport as ArtifactsDir()/name.png and returns its path.
func (p *Page) Screenshot(ctx context.Context, name string) (string, error) {
	tctx, cancel := p.bound(ctx)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
	if err != nil {
		return "", fmt.Errorf("%s: screenshot: %w", p.Name, err)
	}
	return saveScreenshot(name, png)
}

// saveScreenshot writes png as ArtifactsDir()/name.png.
func saveScreenshot(name string, png []byte) (string, error) {
	if err := os.MkdirAll(ArtifactsDir(), 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(ArtifactsDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", fmt.Errorf("save screenshot %s: %w", name, err)
	}
	return path, nil
}

// recordJS captures %d ms of the remote stream of the page's <audio id="remote"> through WebAudio:
// raw samples with a ScriptProcessor, and the loudest bin of an AnalyserNode at the end. The
// stream must also play in the <audio> element, or Chromium delivers silence. Firefox needs an audio
// output device for WebAudio to run (its harness gives it a PulseAudio null sink), and its first
// AudioContext's clock starts slowly (seen: 1 s of audio in 3 s of wall time on a busy machine): so
// the recording counts samples, not wall time, with a wall-time bound.
//
// Recording starts only once the element plays the stream in step with the wall clock. When a call's (or a room's)
// audio first arrives, Firefox plays its first 50-80 ms and then holds the element's clock, and stops pulling its
// jitter buffer, while it opens the audio output: measured here 1-3.5 s in each of three Firefoxes joining a room
// on the busy 2-core host (its packets kept coming, 50 a second, none lost), after which it plays on in real time
// and works off the backlog by acceleration. A capture started in that window records silence with bursts of
// sound, which is the harness's own start-up, not what the call carries. The capture's own AudioContext then goes
// through the same start-up (seen: up to a second of silence and then sound with gaps, although the element was
// playing in step and the call's packets kept coming): so the samples kept start with the first 5 chunks in a row
// (0.5 s) that carry sound, and what came before is dropped, 10 s of it at most (a silent call is still recorded,
// and fails its checks).
const recordJS = `(async (ms) => {
  const el = document.getElementById("remote");
  const stream = el && el.srcObject;
  if (!stream || stream.getAudioTracks().length === 0) throw new Error("no remote audio stream on #remote");
  const waitFrom = performance.now(), waitUntil = waitFrom + 20000;
  let t0 = waitFrom, c0 = el.currentTime;
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const t = performance.now(), c = el.currentTime;
    if (t - t0 >= 500) {
      if ((c - c0) * 1000 >= 0.8 * (t - t0)) break;
      t0 = t;
      c0 = c;
    }
    if (t > waitUntil) throw new Error("#remote does not play the call's audio: its clock is at " + c.toFixed(3) +
      " s after 20 s (paused " + el.paused + ", readyState " + el.readyState + ")");
  }
  const waitedMs = performance.now() - waitFrom;
  const ac = new AudioContext();
  await Promise.race([ac.resume(), new Promise((_, no) => setTimeout(() => no(new Error("AudioContext did not start within 10 s (no audio output?)")), 10000))]);
  const src = ac.createMediaStreamSource(stream);
  const an = ac.createAnalyser();
  an.fftSize = 8192;
  const proc = ac.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  // Until the capture hears sound in primeChunks chunks in a row (or for 10 s at most), chunks are dropped.
  const primeChunks = 5, primeMax = 10 * ac.sampleRate;
  let run = [], skipped = 0;
  proc.onaudioprocess = (e) => {
    const d = new Float32Array(e.inputBuffer.getChannelData(0));
    if (run !== null) {
      let sum = 0;
      for (const v of d) sum += v * v;
      if (Math.sqrt(sum / d.length) > 0.001) run.push(d);
      else { skipped += run.reduce((n, c) => n + c.length, 0) + d.length; run = []; }
      if (run.length < primeChunks && skipped < primeMax) return;
      for (const c of run) chunks.push(c);
      run = null;
      return;
    }
    chunks.push(d);
  };
  const mute = ac.createGain();
  mute.gain.value = 0;
  src.connect(an);
  src.connect(proc);
  proc.connect(mute);
  mute.connect(ac.destination);
  const want = ac.sampleRate * ms / 1000, deadline = performance.now() + 3 * ms + 15000;
  let have = 0;
  while (have < want && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    have = 0;
    for (const c of chunks) have += c.length;
  }
  const bins = new Float32Array(an.frequencyBinCount);
  an.getFloatFrequencyData(bins);
  let peak = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[peak]) peak = i;
  const rate = ac.sampleRate;
  src.disconnect();
  proc.disconnect();
  await ac.close();
  let n = 0;
  for (const c of chunks) n += c.length;
  const pcm = new Int16Array(n);
  let i = 0;
  for (const c of chunks) for (const v of c) pcm[i++] = Math.max(-32768, Math.min(32767, Math.round(v * 32767)));
  const bytes = new Uint8Array(pcm.buffer);
  let bin = "";
  for (let j = 0; j < bytes.length; j += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(j, j + 0x8000));
  return { rate, peakHz: peak * rate / an.fftSize, peakDb: bins[peak], pcm: btoa(bin), waitedMs, skipped };
})(%d)`

// RemoteAudio is what the page heard.
type RemoteAudio struct {
	Samples []int16
	Rate    int
	// PeakHz is the loudest frequency the AnalyserNode saw at the end (bin resolution Rate/8192).
	PeakHz, PeakDB float64
	// Waited is how long the element took to play in step with the clock before the capture began, and
	// SkippedLead how much of the capture's start was dropped before it carried sound steadily.
	Waited, SkippedLead time.Duration
}

// RecordRemoteAudio captures d of the call's received audio as the page plays it.
func (p *Page) RecordRemoteAudio(ctx context.Context, d time.Duration) (RemoteAudio, error) {
	return recordRemoteAudio(ctx, p, d)
}

func recordRemoteAudio(ctx context.Context, p Tab, d time.Duration) (RemoteAudio, error) {
	var r struct {
		Rate   float64 `json:"rate"`
		PeakHz float64 `json:"peakHz"`
		PeakDB any     `json:"peakDb"` // -Infinity on silence arrives as null
		PCM    string  `json:"pcm"`
		Waited float64 `json:"waitedMs"`
		Skip   float64 `json:"skipped"`
	}
	if err := p.Eval(ctx, fmt.Sprintf(recordJS, d.Milliseconds()), &r); err != nil {
		return RemoteAudio{}, fmt.Errorf("record remote audio: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(r.PCM)
	if err != nil {
		return RemoteAudio{}, fmt.Errorf("%s: decode recorded audio: %w", p.TabName(), err)
	}
	out := RemoteAudio{Samples: make([]int16, len(raw)/2), Rate: int(r.Rate), PeakHz: r.PeakHz,
		Waited: time.Duration(r.Waited * float64(time.Millisecond))}
	if r.Rate > 0 {
		out.SkippedLead = time.Duration(r.Skip / r.Rate * float64(time.Second))
	}
	if db, ok := r.PeakDB.(float64); ok {
		out.PeakDB = db
	}
	for i := range out.Samples {
		out.Samples[i] = int16(binary.LittleEndian.Uint16(raw[2*i:]))
	}
	return out, nil
}
