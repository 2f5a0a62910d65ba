//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/webrtc/web"
	"github.com/patchbay/patchbay/wire"
)

// refusingCoordinator refuses every call to "refuse-CODE" with CODE, as the call layer does: the error (marked
// final by signal.ErrorMessage) is followed by its hangup, and the browser's late candidates get unknown_call.
type refusingCoordinator struct{}

func (refusingCoordinator) HandleMessage(ctx context.Context, s *signal.Session, m signal.Message) {
	switch m.Type {
	case signal.TypeCall:
		code := m.To[len("refuse-"):]
		_ = s.Send(ctx, signal.ErrorMessage(m.CallID, code, "refused by the test"))
	case signal.TypeCandidate:
		_ = s.Send(ctx, signal.ErrorMessage(m.CallID, wire.CodeUnknownCall, "no call with this call_id on this connection"))
	}
}

func (refusingCoordinator) SessionClosed(*signal.Session) {}

func micWAV(t *testing.T, hz float64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("mic-%.0f.wav", hz))
	if err := audio.WriteWAV(p, audio.Sine(hz, 48000, 10*time.Second, 0.3), 48000); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestNetworkPageRefusalReasons: for every code that ends a call, the page (in Chromium and Firefox ESR) shows that
// code and its sentence, not unknown_call, and ends the call with the documented cause.
func TestNetworkPageRefusalReasons(t *testing.T) {
	signer, err := auth.NewSigner([]byte("page-secret-0123456789abcdef-0123456789abcdef"), "patchbay-test")
	if err != nil {
		t.Fatal(err)
	}
	// Each refused call's trickled candidates draw on the session's message budget too; on a loaded host they
	// bunch up, and the test is about the reasons shown, not about rate limiting (webrtc/signal tests that).
	srv, err := signal.NewServer(signal.ServerOptions{Verifier: signer, Handler: refusingCoordinator{},
		RateLimit: signal.RateLimit{PerSecond: 200, Burst: 400},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	mux.Handle("/", web.Handler())
	ts := httptest.NewServer(mux)
	defer ts.Close()
	defer srv.Close()
	c := auth.Claims{Name: "Alice"}
	c.Subject = "alice"
	tok, err := signer.Mint(c, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pb := &testenv.Patchbay{BaseURL: ts.URL}
	testenv.EachBrowser(t, testenv.BrowserOptions{FakeMicWAV: micWAV(t, 1000)}, func(t *testing.T, b testenv.Browser) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		p := b.NewTab(t, "refusals")
		if err := p.OpenPatchbay(ctx, pb, tok, nil); err != nil {
			t.Fatal(err)
		}
		for _, code := range wire.FinalCodes() {
			if err := p.Eval(ctx, fmt.Sprintf(`window.patchbayApp.call("refuse-%s").then(() => true)`, code), nil); err != nil {
				t.Fatalf("%s: %v", code, err)
			}
			if err := p.WaitFor(ctx, code, `window.patchbayState.callState === "ended" || window.patchbayState.callState === "idle"`, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			// Late candidates and their unknown_call replies must not replace the reason shown.
			time.Sleep(700 * time.Millisecond)
			var got struct {
				LastError string `json:"lastError"`
				Cause     string `json:"cause"`
				Box       string `json:"box"`
			}
			if err := p.Eval(ctx, `({lastError: window.patchbayState.lastError, cause: window.patchbayState.cause,
				box: document.getElementById("error").textContent})`, &got); err != nil {
				t.Fatal(err)
			}
			if got.LastError != code || got.Cause != wire.CauseForCode(code) || len(got.Box) <= len(code)+1 {
				t.Errorf("%s: page shows error %q (%q), cause %q; want %s with a sentence, cause %s",
					code, got.LastError, got.Box, got.Cause, code, wire.CauseForCode(code))
			}
		}
	})
}

// TestNetworkPageRelayAndResume: against the real stack and coturn, in Chromium and Firefox ESR: a relay-only page
// calls 601 through coturn and hears the tone; expired TURN credentials are refused by coturn and the page says so;
// a WebSocket dropped mid-call is resumed and the call goes on; a page away past the grace learns the call ended
// with signalling_lost.
func TestNetworkPageRelayAndResume(t *testing.T) {
	testenv.Sensitive(t)
	// The browsers run in a namespace of the test's own: Firefox gathers no loopback candidates on a host with
	// another interface, and media may only go to loopback or the test's own namespaces.
	e := newNSEnv(t, 4*time.Second)
	for _, name := range []string{"chromium", "firefox"} {
		t.Run(name, func(t *testing.T) {
			relayAndResume(t, e, testenv.StartBrowserInNetNS(t, name, e.ns, testenv.BrowserOptions{FakeMicWAV: micWAV(t, 1000)}))
		})
	}
}

func relayAndResume(t *testing.T, e *nsEnv, b testenv.Browser) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p := e.open(t, ctx, b, "network")

	// Relay only.
	before := e.turn.Allocations()
	if err := p.Eval(ctx, `window.patchbayApp.call("601", {iceTransportPolicy: "relay"}).then(() => true)`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, "answered", `window.patchbayState.callState === "answered"`, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	in, err := testenv.WaitAudioFlowing(ctx, p, 10*time.Second)
	if err != nil {
		t.Fatalf("relay-only call: %v", err)
	}
	t.Logf("relay-only: %+v", in)
	if in.Path != "" && in.Path[:5] != "relay" {
		t.Errorf("selected path %s, want relay", in.Path)
	}
	if e.turn.Allocations() == before {
		t.Error("coturn made no allocation for the relay-only call")
	}
	hearsTone(t, ctx, p, b, 440)

	// The WebSocket drops mid-call and comes back within the grace: same call, audio still flowing.
	if err := p.Eval(ctx, `window.patchbayApp.dropSocket(500)`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, "resumed", `window.patchbayState.resumes >= 1 && window.patchbayState.status === "connected"`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _ := p.State(ctx); st.CallState != "answered" {
		t.Fatalf("call state %q after the resume", st.CallState)
	}
	if _, err := testenv.WaitAudioFlowing(ctx, p, 5*time.Second); err != nil {
		t.Fatalf("after the resume: %v", err)
	}

	// Away longer than the grace: the server ended the call; the page says signalling_lost.
	if err := p.Eval(ctx, `window.patchbayApp.dropSocket(6000)`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, "signalling_lost", `window.patchbayState.cause === "signalling_lost"`, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	waitActive(t, e.pb, 0, 10*time.Second)
	if err := p.WaitFor(ctx, "reconnected", `window.patchbayState.status === "connected"`, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	// Expired TURN credentials: coturn refuses them and the page says why.
	refusedBefore := e.turn.Refusals()
	expired := signal.MintTURN([]byte(e.turn.Secret), "alice", time.Now().Add(-time.Minute), e.turn.URLs(e.ns.HostIP)[:2])
	js := fmt.Sprintf(`window.patchbayApp.call("601", {iceTransportPolicy: "relay", iceServers: [{urls: [%q, %q], username: %q, credential: %q}]}).then(() => true)`,
		expired.URLs[0], expired.URLs[1], expired.Username, expired.Credential)
	if err := p.Eval(ctx, js, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, "turn_refused", `window.patchbayState.lastError === "turn_refused"`, 35*time.Second); err != nil {
		var iceErrs any
		_ = p.Eval(ctx, `window.patchbayState.iceErrors`, &iceErrs)
		t.Fatalf("%v; ICE errors %v; coturn:\n%s", err, iceErrs, e.turn.LogTail())
	}
	var box string
	_ = p.Eval(ctx, `document.getElementById("error").textContent`, &box)
	t.Logf("page says: %s", box)
	if e.turn.Refusals() == refusedBefore {
		t.Error("coturn logged no 401 for the expired credentials")
	}
	waitActive(t, e.pb, 0, 10*time.Second)
}

// hearsTone checks the tone of the far end in what the page plays: Goertzel over 100 ms windows of 2 s of the
// recorded audio, in either browser (Firefox records through its PulseAudio null sink).
func hearsTone(t *testing.T, ctx context.Context, p testenv.Tab, b testenv.Browser, hz float64) {
	t.Helper()
	rec, err := p.RecordRemoteAudio(ctx, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := audio.Detect(rec.Samples, rec.Rate, hz); !r.Detected(5) {
		t.Errorf("%s: %v Hz not heard: %+v (peak %.0f Hz)", b.BrowserName(), hz, r, rec.PeakHz)
	}
}
