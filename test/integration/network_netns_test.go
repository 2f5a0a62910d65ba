//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
)

// nsEnv is the real stack reached from a browser in a network namespace of the test's own: Patchbay's page, ICE
// ports and coturn on the namespace link's host address.
type nsEnv struct {
	*networkEnv
	ns   *testenv.NetNS
	page *testenv.Patchbay // BaseURL on the host-side address
}

func newNSEnv(t *testing.T, grace ...time.Duration) *nsEnv {
	t.Helper()
	ns := testenv.NewNetNS(t)
	e := &networkEnv{ast: testenv.StartAsterisk(t, testenv.AsteriskOptions{})}
	e.turn = testenv.StartCoturn(t, testenv.CoturnOptions{ExtraIPs: []string{ns.HostIP}, CertDir: e.ast.CertDir})
	e.pb = testenv.StartPatchbay(t, e.ast, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.HTTP.Listen = ns.HostIP + ":0"
		c.TURN.URLs = e.turn.URLs(ns.HostIP)
		c.TURN.Secret = config.Secret(e.turn.Secret)
		if len(grace) > 0 {
			c.Signalling.ResumeGrace = grace[0]
		}
	}})
	page := *e.pb
	page.BaseURL = strings.Replace(e.pb.BaseURL, "localhost", ns.HostIP, 1)
	return &nsEnv{networkEnv: e, ns: ns, page: &page}
}

func (e *nsEnv) open(t *testing.T, ctx context.Context, b testenv.Browser, name string) testenv.Tab {
	t.Helper()
	p := b.NewTab(t, name)
	if err := p.OpenPatchbay(ctx, e.page, e.pb.Token(t, "alice", "ext"), nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func callAndWaitAudio(t *testing.T, ctx context.Context, p testenv.Tab, js string) testenv.InboundAudio {
	t.Helper()
	if err := p.Eval(ctx, js+`.then(() => true)`, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, "answered", `window.patchbayState.callState === "answered"`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	in, err := testenv.WaitAudioFlowing(ctx, p, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func hangupPage(t *testing.T, ctx context.Context, p testenv.Tab, pb *testenv.Patchbay) {
	t.Helper()
	_ = p.Eval(ctx, `window.patchbayApp.hangup(), true`, nil)
	waitActive(t, pb, 0, 10*time.Second)
}

// TestNetworkBlockedUDP: in a namespace whose UDP to Patchbay is dropped by nftables, a browser (Chromium and
// Firefox ESR) still calls over ICE-TCP; with all UDP dropped it calls over TURN/TCP; and /check says UDP does
// not work while TCP and the TCP relay do, with a plain verdict.
func TestNetworkBlockedUDP(t *testing.T) {
	testenv.Sensitive(t)
	e := newNSEnv(t)
	for _, name := range []string{"chromium", "firefox"} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
			defer cancel()
			b := testenv.StartBrowserInNetNS(t, name, e.ns, testenv.BrowserOptions{FakeMicWAV: micWAV(t, 1000)})
			p := e.open(t, ctx, b, "blocked")

			e.ns.Firewall(fmt.Sprintf("ip daddr %s udp dport %d drop", e.ns.HostIP, e.pb.Server.ICEPort()))
			in := callAndWaitAudio(t, ctx, p, `window.patchbayApp.call("601")`)
			t.Logf("UDP to Patchbay dropped: %+v", in)
			if !strings.Contains(in.Path, "tcp") {
				t.Errorf("path %q: want ICE-TCP", in.Path)
			}
			hearsTone(t, ctx, p, b, 440)
			hangupPage(t, ctx, p, e.pb)

			e.ns.BlockUDP()
			before := e.turn.Allocations()
			in = callAndWaitAudio(t, ctx, p, `window.patchbayApp.call("601", {iceTransportPolicy: "relay",
				iceServers: window.patchbayApp.iceServers().map((s) => ({...s, urls: [].concat(s.urls).filter((u) => /^turn:.*transport=tcp/.test(u))}))})`)
			t.Logf("all UDP dropped, relay only: %+v", in)
			if in.Path != "" && in.Path != "relay/tcp" {
				t.Errorf("path %q: want relay/tcp", in.Path)
			}
			if e.turn.Allocations() == before {
				t.Error("no TURN allocation: the call did not go through the relay")
			}
			hangupPage(t, ctx, p, e.pb)

			// The pre-call check, UDP still blocked.
			c := b.NewTab(t, "check")
			q := url.Values{"token": {e.pb.Token(t, "alice", "ext")}, "duration": {"3000"},
				"echoCancellation": {"0"}, "noiseSuppression": {"0"}, "autoGainControl": {"0"}}
			if err := c.Navigate(ctx, e.page.BaseURL+"/check?"+q.Encode()); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitFor(ctx, "check done", `window.patchbayCheck && window.patchbayCheck.state === "done"`, 60*time.Second); err != nil {
				t.Fatal(err)
			}
			var rep struct {
				Paths map[string]struct {
					OK     bool `json:"ok"`
					Tested bool `json:"tested"`
				} `json:"paths"`
				Call struct {
					OK     bool    `json:"ok"`
					Path   string  `json:"path"`
					RTT    float64 `json:"rttMs"`
					Loss   float64 `json:"lossPct"`
					Jitter float64 `json:"jitterMs"`
				} `json:"call"`
				Verdict string `json:"verdict"`
			}
			if err := c.Eval(ctx, `window.patchbayCheck.report`, &rep); err != nil {
				t.Fatal(err)
			}
			var shown string
			_ = c.Eval(ctx, `document.getElementById("verdict").textContent`, &shown)
			if pg, ok := c.(*testenv.Page); ok {
				if path, err := pg.Screenshot(ctx, "check-udp-blocked-"+name); err == nil {
					t.Logf("screenshot: %s", path)
				}
			}
			t.Logf("check: paths %+v call %+v; page says: %s", rep.Paths, rep.Call, shown)
			if rep.Paths["udp"].OK || !rep.Paths["tcp"].OK || !rep.Paths["turnTcp"].OK || rep.Paths["turnUdp"].OK {
				t.Errorf("paths %+v: want UDP and TURN/UDP failing, ICE-TCP and TURN/TCP working", rep.Paths)
			}
			if !rep.Call.OK || !strings.Contains(shown, "blocks UDP") || shown != rep.Verdict {
				t.Errorf("test call ok=%v, verdict %q", rep.Call.OK, shown)
			}
			waitActive(t, e.pb, 0, 10*time.Second)
			e.ns.Firewall()
		})
	}
}

// TestNetworkLinkDown: a browser's link goes down for 10 s mid-call with a phone and comes back: the call is not
// dropped, audio resumes both ways within 2 s, and the phone never noticed (no BYE, no re-INVITE).
func TestNetworkLinkDown(t *testing.T) {
	testenv.Sensitive(t)
	e := newNSEnv(t)
	tone440 := filepath.Join(t.TempDir(), "440.wav")
	if err := audio.WriteWAV(tone440, audio.Sine(440, 8000, 120*time.Second, 0.3), 8000); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"chromium", "firefox"} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			phone := testenv.StartBaresip(t, testenv.BaresipOptions{User: "101", Password: e.ast.Phone(t, "101").Password,
				PlayWAV: tone440, AutoAnswer: true, Registrar: fmt.Sprintf("127.0.0.1:%d", e.ast.SIPPort)})
			if err := phone.WaitRegistered(ctx); err != nil {
				t.Fatal(err)
			}
			b := testenv.StartBrowserInNetNS(t, name, e.ns, testenv.BrowserOptions{FakeMicWAV: micWAV(t, 1000)})
			p := e.open(t, ctx, b, "linkdown")
			callAndWaitAudio(t, ctx, p, `window.patchbayApp.call("101")`)
			if _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			sdpsBefore := countEvents(phone.Events(), "CALL_REMOTE_SDP")

			e.ns.LinkDown()
			time.Sleep(10 * time.Second)
			e.ns.LinkUp()
			up := time.Now()
			in, err := testenv.WaitAudioFlowing(ctx, p, 2*time.Second)
			if err != nil {
				t.Fatalf("phone→browser audio did not resume within 2 s of the link returning: %v", err)
			}
			t.Logf("audio back after %v: %+v", time.Since(up).Round(10*time.Millisecond), in)
			if st, _ := p.State(ctx); st.CallState != "answered" {
				t.Fatalf("call state %q after the link came back", st.CallState)
			}
			time.Sleep(3 * time.Second) // the phone records what it hears after the link returned
			ev := phone.Events()
			if slices.Contains(ev, "CALL_CLOSED") {
				t.Fatalf("the phone's call ended: events %v", ev)
			}
			if n := countEvents(ev, "CALL_REMOTE_SDP"); n != sdpsBefore {
				t.Errorf("the phone got a re-INVITE (remote SDP events %d → %d): %v", sdpsBefore, n, ev)
			}
			if err := phone.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			pcm, rate, err := phone.Recording(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// The last 2 s the phone heard, all after the link was back for over a second: the browser's 1000 Hz.
			tail := pcm[max(0, len(pcm)-2*rate):]
			if r := audio.Detect(tail, rate, 1000); !r.Detected(10) {
				t.Errorf("browser→phone audio did not resume: last 2 s %+v", r)
			}
			waitActive(t, e.pb, 0, 10*time.Second)
		})
	}
}

func countEvents(ev []string, typ string) int {
	n := 0
	for _, e := range ev {
		if e == typ {
			n++
		}
	}
	return n
}
