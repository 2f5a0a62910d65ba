//go:build integration

package integration

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
)

// loopbackPage configures a Patchbay for browsers on this host. It offers 127.0.0.1 alone: the host's other
// addresses are no test target. And no ICE-TCP: on a host with another interface, Chromium prefers an ICE-TCP pair
// to the loopback UDP one (it files its TCP socket under eth0, whose network cost is lower than loopback's), and
// Patchbay's lean audio path does not carry media that comes over ICE-TCP (the call ends with no_audio; see
// TestNetworkBlockedUDP, whose subject ICE-TCP is). These tests are about calls, not network paths.
func loopbackPage(c *config.Config) {
	c.Media.PublicIPs = []string{"127.0.0.1"}
	c.Media.ICETCPPort = 0
}

// pageEnv is a fresh Asterisk and Patchbay offering 127.0.0.1, shared by the test's browsers (one after the
// other), whose fake microphones play 1000 Hz, and a 440 Hz WAV for the phones.
type pageEnv struct {
	ast     *testenv.Asterisk
	pb      *testenv.Patchbay
	ari     *ari.Client // another app name: sees what Patchbay left behind
	mic     string      // 1000 Hz, 48 kHz: Chromium's fake microphone (Firefox's plays 1000 Hz by itself)
	tone440 string      // 8 kHz, for baresip
}

func newPageEnv(t *testing.T) *pageEnv {
	t.Helper()
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{Config: loopbackPage})
	inspect, err := ari.New(ari.Config{URL: a.ARIURL(), Username: a.ARIUser, Password: a.ARIPassword, Application: "inspector"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mic := filepath.Join(dir, "mic-1000.wav")
	// 10 s, a whole number of cycles: Chromium loops the file without a click.
	if err := audio.WriteWAV(mic, audio.Sine(1000, 48000, 10*time.Second, 0.3), 48000); err != nil {
		t.Fatal(err)
	}
	tone440 := filepath.Join(dir, "440.wav")
	// Longer than any call here: baresip hangs up when its source WAV ends.
	if err := audio.WriteWAV(tone440, audio.Sine(440, 8000, 120*time.Second, 0.3), 8000); err != nil {
		t.Fatal(err)
	}
	return &pageEnv{ast: a, pb: pb, ari: inspect, mic: mic, tone440: tone440}
}

// eachBrowser runs fn as a subtest in Chromium and in Firefox ESR, one after the other against e.
func (e *pageEnv) eachBrowser(t *testing.T, fn func(t *testing.T, b testenv.Browser)) {
	testenv.EachBrowser(t, testenv.BrowserOptions{TrustCA: e.pb.CACert, FakeMicWAV: e.mic, FakeToneHz: 1000}, fn)
}

// phone starts a registered baresip for one of the sample phones, playing 440 Hz.
func (e *pageEnv) phone(t *testing.T, ctx context.Context, user string, autoAnswer bool) *testenv.Baresip {
	t.Helper()
	o := testenv.BaresipOptions{User: user, Password: e.ast.Phone(t, user).Password, PlayWAV: e.tone440, AutoAnswer: autoAnswer}
	for _, p := range testenv.SamplePhones {
		if p.Name != user {
			continue
		}
		o.Transport, o.SRTP = p.Transport, p.SRTP
	}
	port := e.ast.SIPPort
	switch o.Transport {
	case "tls":
		port = e.ast.SIPTLSPort
	case "tcp", "udp":
	default:
		t.Fatalf("phone %s: transport %q not handled here", user, o.Transport)
	}
	o.Registrar = fmt.Sprintf("127.0.0.1:%d", port)
	b := testenv.StartBaresip(t, o)
	if err := b.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// page opens a tab of b signed in as user (may dial extensions).
func (e *pageEnv) page(t *testing.T, ctx context.Context, b testenv.Browser, name, user string, params url.Values) testenv.Tab {
	t.Helper()
	p := b.NewTab(t, name)
	start := time.Now()
	if err := p.OpenPatchbay(ctx, e.pb, e.pb.Token(t, user, "ext"), params); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: page loaded and signed in as %s over WSS in %v", name, user, time.Since(start).Round(time.Millisecond))
	return p
}

// assertClean fails unless Asterisk has no channels or bridges and Patchbay no calls within 5 s.
func (e *pageEnv) assertClean(t *testing.T, what string) {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	var chans []ari.Channel
	var bridges []ari.Bridge
	for {
		var err error
		if chans, err = e.ari.Channels().List(ctx); err != nil {
			t.Fatalf("list channels: %v", err)
		}
		if bridges, err = e.ari.Bridges().List(ctx); err != nil {
			t.Fatalf("list bridges: %v", err)
		}
		if len(chans) == 0 && len(bridges) == 0 && e.pb.Server.ActiveCalls() == 0 {
			t.Logf("%s: no channels, bridges or calls left after %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 5*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var names []string
	for _, c := range chans {
		names = append(names, c.Name)
	}
	t.Fatalf("%s: left behind after 5 s: channels %v, %d bridges, %d active calls", what, names, len(bridges), e.pb.Server.ActiveCalls())
}

// pageHears records the page's received audio for 3 s and checks it carries want, not other.
func pageHears(t *testing.T, ctx context.Context, p testenv.Tab, want, other float64) {
	t.Helper()
	ra, err := p.RecordRemoteAudio(ctx, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rep := audio.Detect(ra.Samples, ra.Rate, want)
	wrong := audio.Detect(ra.Samples, ra.Rate, other)
	t.Logf("%s heard (WebAudio, %d Hz, %d samples): %d Hz in %d/%d voiced windows (fraction %.2f); %d Hz fraction %.2f; analyser peak %.0f Hz at %.1f dB",
		p.TabName(), ra.Rate, len(ra.Samples), int(want), rep.Matching, rep.Voiced, rep.Fraction, int(other), wrong.Fraction, ra.PeakHz, ra.PeakDB)
	if !rep.Detected(20) {
		t.Errorf("%s did not hear %d Hz: %+v", p.TabName(), int(want), rep)
	}
	// The AnalyserNode's loudest bin, as a second witness (bins are rate/8192 wide).
	if bin := float64(ra.Rate) / 8192; math.Abs(ra.PeakHz-want) > 2*bin {
		t.Errorf("%s: analyser peak at %.0f Hz, want %d Hz", p.TabName(), ra.PeakHz, int(want))
	}
	if wrong.Fraction > 0.2 {
		t.Errorf("%s heard %d Hz: %+v", p.TabName(), int(other), wrong)
	}
}

// phoneHeard checks a phone's recording of its last (closed) call carries want, not other.
func phoneHeard(t *testing.T, ctx context.Context, b *testenv.Baresip, want, other float64) {
	t.Helper()
	s, r, err := b.Recording(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep := audio.Detect(s, r, want)
	wrong := audio.Detect(s, r, other)
	t.Logf("%s heard: %d Hz in %d/%d voiced windows (fraction %.2f); %d Hz fraction %.2f",
		b.Name, int(want), rep.Matching, rep.Voiced, rep.Fraction, int(other), wrong.Fraction)
	if !rep.Detected(20) {
		t.Errorf("%s did not hear %d Hz: %+v (%s)", b.Name, int(want), rep, b.RecordingPath())
	}
	if wrong.Fraction > 0.2 {
		t.Errorf("%s heard %d Hz: %+v", b.Name, int(other), wrong)
	}
}

func checkConsole(t *testing.T, pages ...testenv.Tab) {
	t.Helper()
	for _, p := range pages {
		for _, m := range p.ConsoleErrors() {
			t.Errorf("%s console: %s", p.TabName(), m)
		}
	}
}

// TestPageCallsTLSPhone, in Chromium and Firefox ESR: the page dials 103, a softphone registered over TLS with
// mandatory SDES-SRTP that answers by itself and plays 440 Hz. The phone hears the browser's 1000 Hz, the page
// hears 440 Hz; the page hangs up and nothing is left behind. A screenshot of the page in the call is saved as an
// artifact (<browser>-call-103.png).
func TestPageCallsTLSPhone(t *testing.T) {
	e := newPageEnv(t)
	// 103 insists on SDES-SRTP (srtp-mand) and so does Asterisk (media_encryption=sdes, not
	// optimistic): an established call with audio is SRTP end to end on the phone's side.
	if out, err := e.ast.CLI(context.Background(), "pjsip show endpoint 103"); err != nil || !astContainsSetting(out, "media_encryption", "sdes") {
		t.Fatalf("endpoint 103 is not media_encryption=sdes (err %v)", err)
	}
	e.eachBrowser(t, func(t *testing.T, b testenv.Browser) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		phone := e.phone(t, ctx, "103", true)
		// Sign in through the form this time, as a user pasting a token would.
		p := b.NewTab(t, "alice")
		if err := p.Navigate(ctx, e.pb.BaseURL+"/?echoCancellation=0&noiseSuppression=0&autoGainControl=0"); err != nil {
			t.Fatal(err)
		}
		if err := p.Type(ctx, "#token", e.pb.Token(t, "alice", "ext")); err != nil {
			t.Fatal(err)
		}
		if err := p.Click(ctx, "#connect"); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor(ctx, "sign-in through the form", `window.patchbayState.status === "connected" && window.patchbayState.user === "alice"`, 15*time.Second); err != nil {
			t.Fatal(err)
		}

		start := time.Now()
		// Dial through the form, as a user would.
		if err := p.Type(ctx, "#number", "103"); err != nil {
			t.Fatal(err)
		}
		if err := p.Click(ctx, "#call"); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor(ctx, "answered", `window.patchbayState.callState === "answered"`, 15*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("click Call → answered by 103 (TLS+SRTP) in %v", time.Since(start).Round(time.Millisecond))
		if _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
			t.Fatal(err)
		}
		pageHears(t, ctx, p, 440, 1000)
		shot, err := p.Screenshot(ctx, b.BrowserName()+"-call-103")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the page in the call: %s", shot)

		if err := p.Click(ctx, "#hangup"); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor(ctx, "ended", `window.patchbayState.callState === "ended" && window.patchbayState.code === 16`, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
		phoneHeard(t, ctx, phone, 1000, 440)
		e.assertClean(t, "hang-up from the page")
		checkConsole(t, p)
	})
}

// TestPhoneCallsBrowserUserOnPage, in Chromium and Firefox ESR: the UDP phone 101 dials "alice"; the page signed in
// as alice with autoanswer rings and answers. Audio both ways by frequency; the phone hangs up and nothing is left
// behind.
func TestPhoneCallsBrowserUserOnPage(t *testing.T) {
	e := newPageEnv(t)
	e.eachBrowser(t, func(t *testing.T, b testenv.Browser) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		phone := e.phone(t, ctx, "101", false)
		p := e.page(t, ctx, b, "alice", "alice", url.Values{"autoanswer": {"1"}})

		start := time.Now()
		if err := phone.Dial(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor(ctx, "incoming call answered", `window.patchbayState.callState === "answered" && window.patchbayState.direction === "incoming"`, 15*time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
			t.Fatal(err)
		}
		t.Logf("phone dials alice → page auto-answers → phone established in %v", time.Since(start).Round(time.Millisecond))
		if st, err := p.State(ctx); err != nil || st.Peer != "101" {
			t.Errorf("page shows the call from %q (err %v), want 101", st.Peer, err)
		}
		pageHears(t, ctx, p, 440, 1000)

		if err := phone.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor(ctx, "far end hung up", `window.patchbayState.callState === "ended" && window.patchbayState.cause === "normal_clearing"`, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		phoneHeard(t, ctx, phone, 1000, 440)
		e.assertClean(t, "hang-up from the phone")
		checkConsole(t, p)
	})
}

// TestPhoneCallRingsEveryTabFirstAnswerWins, in Chromium and Firefox ESR: two tabs signed in as alice both ring;
// the second answers and gets the call, the first is told answered_elsewhere (26). Then the browser is killed with
// SIGKILL mid-call: the phone is hung up and nothing is left in Asterisk or Patchbay.
func TestPhoneCallRingsEveryTabFirstAnswerWins(t *testing.T) {
	testenv.Heavy(t)
	e := newPageEnv(t)
	e.eachBrowser(t, func(t *testing.T, b testenv.Browser) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		phone := e.phone(t, ctx, "101", false)
		tab1 := e.page(t, ctx, b, "alice-tab1", "alice", nil)
		tab2 := e.page(t, ctx, b, "alice-tab2", "alice", nil)

		if err := phone.Dial(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []testenv.Tab{tab1, tab2} {
			if err := p.WaitFor(ctx, "ringing", `window.patchbayState.callState === "incoming" && !document.getElementById("incoming").hidden`, 15*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		if err := tab2.Click(ctx, "#answer"); err != nil {
			t.Fatal(err)
		}
		if err := tab2.WaitFor(ctx, "answered", `window.patchbayState.callState === "answered"`, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := tab1.WaitFor(ctx, "answered elsewhere", `window.patchbayState.callState === "ended"`, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if st, err := tab1.State(ctx); err != nil || st.Cause != "answered_elsewhere" || st.Code != 26 {
			t.Errorf("tab1 state %+v (err %v), want cause answered_elsewhere code 26", st, err)
		}
		if _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
			t.Fatal(err)
		}
		t.Logf("tab2 answers → tab1 told answered_elsewhere, phone established in %v", time.Since(start).Round(time.Millisecond))
		pageHears(t, ctx, tab2, 440, 1000)
		if n := e.pb.Server.ActiveCalls(); n != 1 {
			t.Errorf("Patchbay has %d active calls, want 1", n)
		}
		checkConsole(t, tab1, tab2)

		killed := time.Now()
		if err := b.Kill(); err != nil {
			t.Fatal(err)
		}
		if _, err := phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s killed (SIGKILL) → phone's call closed in %v", b.BrowserName(), time.Since(killed).Round(time.Millisecond))
		e.assertClean(t, b.BrowserName()+" killed mid-call")
		phoneHeard(t, ctx, phone, 1000, 440)
	})
}

// TestPageDTMFReachesRead, in Chromium and Firefox ESR: keypad presses on the page during a call to 602 reach Read()
// in the dialplan, which stores them in the global LAST_DTMF_READ and hangs up.
func TestPageDTMFReachesRead(t *testing.T) {
	e := newPageEnv(t)
	// Other digits per browser: the second run cannot pass on what the first left in LAST_DTMF_READ.
	digits := map[string]string{"chromium": "4721", "firefox": "8356"}
	e.eachBrowser(t, func(t *testing.T, b testenv.Browser) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		p := e.page(t, ctx, b, "alice", "alice", nil)
		if err := p.Type(ctx, "#number", "602"); err != nil {
			t.Fatal(err)
		}
		if err := p.Click(ctx, "#call"); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor(ctx, "answered", `window.patchbayState.callState === "answered"`, 15*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // Read() starts right after Answer(); digits before it are lost
		want := digits[b.BrowserName()]
		for _, d := range want {
			if err := p.Click(ctx, fmt.Sprintf(`#keypad button[data-key="%c"]`, d)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
		}
		// Read() returns after 4 digits and the dialplan hangs up.
		if err := p.WaitFor(ctx, "602 hangs up after 4 digits", `window.patchbayState.callState === "ended"`, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		got, err := e.ari.Asterisk().Variable(ctx, "LAST_DTMF_READ")
		if err != nil {
			t.Fatalf("read LAST_DTMF_READ: %v", err)
		}
		if got != want {
			t.Errorf("Read() got %q, want %s", got, want)
		}
		e.assertClean(t, "602 hung up")
		checkConsole(t, p)
	})
}
