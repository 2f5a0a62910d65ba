package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"
)

// Tab is one page of a browser under test: Chromium (chromedp, *Page) or Firefox ESR (WebDriver BiDi).
type Tab interface {
	// TabName is the name the tab was opened with (for logs).
	TabName() string
	Navigate(ctx context.Context, u string) error
	// Click clicks the element matching the CSS selector, as a user would.
	Click(ctx context.Context, css string) error
	// Type types text into the element matching the CSS selector, key by key.
	Type(ctx context.Context, css, text string) error
	// Screenshot saves a PNG of the viewport as ArtifactsDir()/name.png and returns its path.
	Screenshot(ctx context.Context, name string) (string, error)
	// RecordRemoteAudio captures d of the call's received audio as the page plays it (<audio id="remote">).
	RecordRemoteAudio(ctx context.Context, d time.Duration) (RemoteAudio, error)
	// Eval runs a JavaScript expression, awaits it if it is a promise, and decodes its JSON value into out.
	Eval(ctx context.Context, expr string, out any) error
	// WaitFor polls the condition until it is true or timeout passes; the error carries the page state.
	WaitFor(ctx context.Context, what, cond string, timeout time.Duration) error
	// OpenPatchbay opens pb's page signed in with token (microphone processing off) and waits until connected.
	OpenPatchbay(ctx context.Context, pb *Patchbay, token string, params url.Values) error
	State(ctx context.Context) (PageState, error)
	ConsoleErrors() []string
}

// Browser is a running browser that opens tabs.
type Browser interface {
	BrowserName() string
	NewTab(t testing.TB, name string) Tab
	// Kill ends every process of the browser at once with SIGKILL, as a crash would.
	Kill() error
}

// BrowserNames are the browsers every page test runs in, by the names StartBrowser takes.
var BrowserNames = []string{"chromium", "firefox"}

// BrowserOptions are what both browsers share in page tests.
type BrowserOptions struct {
	// Name labels the instance in logs (default: the browser's name).
	Name string
	// TrustCA is the PEM CA the page's certificate chains to (Chromium trusts it; Firefox accepts the test
	// certificates anyway).
	TrustCA string
	// FakeMicWAV is Chromium's fake microphone; Firefox plays a steady tone of FakeToneHz (default 1000 Hz).
	FakeMicWAV string
	FakeToneHz int
}

// EachBrowser runs fn as a subtest in Chromium and in Firefox ESR, each started on the host for it.
func EachBrowser(t *testing.T, o BrowserOptions, fn func(t *testing.T, b Browser)) {
	for _, name := range BrowserNames {
		t.Run(name, func(t *testing.T) { fn(t, StartBrowser(t, name, o)) })
	}
}

// StartBrowser starts Chromium or Firefox ESR (by name: "chromium" or "firefox") on the host; t.Cleanup stops it.
// Both gather loopback ICE candidates, so they call a Patchbay that offers 127.0.0.1.
func StartBrowser(t testing.TB, name string, o BrowserOptions) Browser {
	t.Helper()
	switch name {
	case "chromium":
		return StartChromium(t, ChromiumOptions{Name: o.Name, TrustCA: o.TrustCA, FakeMicWAV: o.FakeMicWAV})
	case "firefox":
		return StartFirefox(t, FirefoxOptions{Name: o.Name, FakeToneHz: o.FakeToneHz})
	}
	t.Fatalf("no browser named %q (want one of %v)", name, BrowserNames)
	return nil
}

// BrowserName is "chromium".
func (c *Chromium) BrowserName() string { return "chromium" }

// NewTab opens a tab as a Tab.
func (c *Chromium) NewTab(t testing.TB, name string) Tab { return c.NewPage(t, name) }

func pollTab(ctx context.Context, p Tab, what, cond string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		err := p.Eval(ctx, "Boolean("+cond+")", &ok)
		if err == nil && ok {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			var st json.RawMessage
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = p.Eval(sctx, `window.patchbayState || null`, &st)
			cancel()
			return fmt.Errorf("waiting for %s (%s) for %v: last error %v; patchbayState %s", what, cond, timeout, err, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func openPatchbay(ctx context.Context, p Tab, pb *Patchbay, token string, params url.Values) error {
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

// InboundAudio is what a tab's current call receives, from getStats.
type InboundAudio struct {
	Packets int     `json:"packets"`
	Energy  float64 `json:"energy"`
	Level   float64 `json:"level"`
	// Path is the selected candidate pair's local candidate type and protocol, e.g. "relay/udp", "host/tcp".
	Path string `json:"path"`
}

// inboundJS reads the call's inbound-rtp audio and the selected pair through patchbayApp.stats().
const inboundJS = `(async () => {
  const r = await window.patchbayApp.stats();
  if (!r) return { packets: 0, energy: 0, level: 0, path: "" };
  let packets = 0, energy = 0, level = 0, pair = null, path = "";
  const byId = new Map();
  r.forEach((s) => byId.set(s.id, s));
  r.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      packets += s.packetsReceived || 0; energy += s.totalAudioEnergy || 0; level = Math.max(level, s.audioLevel || 0);
    }
    if (s.type === "candidate-pair" && (s.selected || s.nominated) && s.state === "succeeded") pair = pair || s;
    if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId) || pair;
  });
  if (pair) {
    const l = byId.get(pair.localCandidateId);
    if (l) path = (l.candidateType || "") + "/" + (l.relayProtocol || l.protocol || "");
  }
  return { packets, energy, level, path };
})()`

// Inbound reads the current call's received audio and path.
func Inbound(ctx context.Context, p Tab) (InboundAudio, error) {
	var in InboundAudio
	err := p.Eval(ctx, inboundJS, &in)
	return in, err
}

// WaitAudioFlowing waits until the call's inbound packet count grows by at least 25 (half a second of audio)
// within d and returns the count.
func WaitAudioFlowing(ctx context.Context, p Tab, d time.Duration) (InboundAudio, error) {
	first, err := Inbound(ctx, p)
	if err != nil {
		return first, err
	}
	deadline := time.Now().Add(d)
	for {
		in, err := Inbound(ctx, p)
		if err == nil && in.Packets >= first.Packets+25 {
			return in, nil
		}
		if time.Now().After(deadline) {
			return in, fmt.Errorf("inbound audio did not flow within %v: %d → %d packets (%v)", d, first.Packets, in.Packets, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartBrowserInNetNS starts Chromium or Firefox ESR inside ns (by name: "chromium" or "firefox").
func StartBrowserInNetNS(t *testing.T, name string, ns *NetNS, o BrowserOptions) Browser {
	t.Helper()
	if name == "firefox" {
		return StartFirefox(t, FirefoxOptions{Name: o.Name, FakeToneHz: o.FakeToneHz, NetNS: ns})
	}
	return StartChromium(t, ChromiumOptions{Name: o.Name, FakeMicWAV: o.FakeMicWAV, IgnoreCertErrors: true, NetNS: ns})
}
