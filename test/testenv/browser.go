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
	Navigate(ctx context.Context, u string) error
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
}

// BrowserOptions are what both browsers share in page tests.
type BrowserOptions struct {
	// TrustCA is the PEM CA the page's certificate chains to (Chromium trusts it; Firefox accepts the test
	// certificates anyway).
	TrustCA string
	// FakeMicWAV is Chromium's fake microphone; Firefox plays a steady tone of FakeToneHz (default 1000 Hz).
	FakeMicWAV string
	FakeToneHz int
}

// EachBrowser runs fn as a subtest in Chromium and in Firefox ESR.
func EachBrowser(t *testing.T, o BrowserOptions, fn func(t *testing.T, b Browser)) {
	t.Run("chromium", func(t *testing.T) {
		fn(t, StartChromium(t, ChromiumOptions{TrustCA: o.TrustCA, FakeMicWAV: o.FakeMicWAV}))
	})
	t.Run("firefox", func(t *testing.T) {
		fn(t, StartFirefox(t, FirefoxOptions{FakeToneHz: o.FakeToneHz}))
	})
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
		return StartFirefox(t, FirefoxOptions{FakeToneHz: o.FakeToneHz, NetNS: ns})
	}
	return StartChromium(t, ChromiumOptions{FakeMicWAV: o.FakeMicWAV, IgnoreCertErrors: true, NetNS: ns})
}
