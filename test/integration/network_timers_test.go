//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
)

// sessionExpires is the test's SIP session interval: Asterisk's least (min_se 90), so a refresh comes every ~45 s.
const sessionExpires = 90

// TestNetworkSessionTimers, in Chromium and then Firefox ESR: a browser ⇄ phone call and a browser ⇄ trunk call,
// in parallel, each cross at least `refreshes` session-timer refreshes (timers_sess_expires=90; two in Chromium, one
// in Firefox) with audio checked both ways throughout; the phone puts the call on hold and resumes it (re-INVITEs from the phone) and the browser's audio
// comes back. The browsers take turns (one Asterisk, carrier and Patchbay): four long calls and two browsers at once
// starved the audio of both on a busy 2-core machine.
func TestNetworkSessionTimers(t *testing.T) {
	// Two browser calls, a phone and a carrier for minutes, checked every few seconds by ear: beside another
	// lane's browsers and phones on this 2-core host, windows went silent for load alone.
	testenv.Heavy(t)
	sp := testenv.StartSIPp(t, testenv.SIPpOptions{Scenario: testenv.CarrierUASRefresh, RTPEcho: true})
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{Params: func(p *asteriskconfigs.Params) {
		p.Trunk = asteriskconfigs.Trunk{Name: trunkName, Host: sp.Addr(), Match: []string{sp.IP}}
		// always: baresip does not announce session timers; Asterisk refreshes it anyway, as a phone that does
		// would be refreshed with timers=yes.
		p.SessionExpires, p.MinSE, p.Timers = sessionExpires, 90, "always"
	}})
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Asterisk.Trunk.Name = trunkName
		loopbackPage(c)
	}})
	te := &trunkEnv{ast: a, pb: pb, sipp: sp}
	te.waitTrunkReachable(t)
	if _, err := a.CLI(context.Background(), "pjsip set logger on"); err != nil {
		t.Fatal(err)
	}
	tone440 := filepath.Join(t.TempDir(), "440.wav")
	if err := audio.WriteWAV(tone440, audio.Sine(440, 8000, 200*time.Second, 0.3), 8000); err != nil {
		t.Fatal(err)
	}
	// A phone per browser: Asterisk's log counts the refreshes toward each.
	phoneOf := map[string]string{"chromium": "101", "firefox": "102"}
	for i, name := range testenv.BrowserNames {
		// Two refreshes in a row show the timer re-armed by the first (Asterisk and the peers; the browser's leg
		// sees none of it): the first browser waits for two, the second for one, which is what its own part
		// (a call that outlives a refresh and a hold) needs, and 45 s less of the longest test in make test.
		refreshes := 2
		if i > 0 {
			refreshes = 1
		}
		t.Run(name, func(t *testing.T) { sessionTimers(t, te, name, phoneOf[name], tone440, refreshes) })
	}
}

func sessionTimers(t *testing.T, te *trunkEnv, browserName, user, tone440 string, refreshes int) {
	a, pb, sp := te.ast, te.pb, te.sipp
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// The carrier's calls before this run: their refreshes are not this run's.
	earlier := map[string]bool{}
	if msgs, err := sp.Messages(); err == nil {
		for _, m := range msgs {
			earlier[m.Header("Call-ID")] = true
		}
	}

	phone := testenv.StartBaresip(t, testenv.BaresipOptions{User: user, Password: a.Phone(t, user).Password,
		PlayWAV: tone440, AutoAnswer: true, Registrar: fmt.Sprintf("127.0.0.1:%d", a.SIPPort)})
	if err := phone.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	b := testenv.StartBrowser(t, browserName, testenv.BrowserOptions{FakeMicWAV: micWAV(t, 1000), FakeToneHz: 1000, TrustCA: pb.CACert})
	toPhone := b.NewTab(t, "to-phone")
	if err := toPhone.OpenPatchbay(ctx, pb, pb.Token(t, "alice", "ext"), nil); err != nil {
		t.Fatal(err)
	}
	toTrunk := b.NewTab(t, "to-trunk")
	cl := auth.Claims{Name: "Bob", Dial: []string{"pstn"}, CallerIDs: []string{"+442071230009"}}
	cl.Subject = "bob"
	tok, err := pb.Server.Signer().Mint(cl, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := toTrunk.OpenPatchbay(ctx, pb, tok, nil); err != nil {
		t.Fatal(err)
	}
	for p, to := range map[testenv.Tab]string{toPhone: user, toTrunk: "+14155550100"} {
		if err := p.Eval(ctx, fmt.Sprintf(`window.patchbayApp.call(%q).then(() => true)`, to), nil); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor(ctx, "answered", `window.patchbayState.callState === "answered"`, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}

	// Check both calls every few seconds until the refresh intervals (plus margin) have passed.
	var mu sync.Mutex
	const holdAt = 50 * time.Second
	var holdFrom, holdTo time.Duration
	holdDone := make(chan struct{})
	go func() { // the phone holds at ~50 s for 3 s, then resumes
		defer close(holdDone)
		time.Sleep(holdAt - time.Since(start))
		mu.Lock()
		holdFrom = time.Since(start)
		mu.Unlock()
		if _, err := phone.Command(ctx, "hold", ""); err != nil {
			t.Errorf("hold: %v", err)
		}
		time.Sleep(3 * time.Second)
		if _, err := phone.Command(ctx, "resume", ""); err != nil {
			t.Errorf("resume: %v", err)
		}
		mu.Lock()
		holdTo = time.Since(start)
		mu.Unlock()
	}()
	// The refreshes plus a margin, and at least one check after the phone's resume.
	end := start.Add(time.Duration(refreshes*sessionExpires/2)*time.Second + 8*time.Second)
	if e := start.Add(holdAt + 3*time.Second + 6*time.Second); end.Before(e) {
		end = e
	}
	// The first check waits 2 s: right after the answer the phone's tone may not have reached the page yet (seen once
	// in CI, 10 of 15 windows at 0 s), and the call's start is what other tests prove; this one is about its length.
	time.Sleep(2 * time.Second)
	checks := 0
	for time.Now().Before(end) {
		at := time.Since(start)
		mu.Lock()
		// A window that starts just before the hold still records into it (music on hold, not 440 Hz): skip the
		// windows from 3 s before the planned hold until a second after the resume.
		onHold := at+3*time.Second > holdAt && (holdFrom == 0 || holdTo == 0 || at < holdTo+time.Second)
		mu.Unlock()
		if !onHold {
			pageHearsWindow(t, ctx, toPhone, 440, at)
		}
		pageHearsWindow(t, ctx, toTrunk, 1000, at) // the carrier echoes the browser: both directions
		checks++
		time.Sleep(4 * time.Second)
	}
	<-holdDone
	pageHearsWindow(t, ctx, toPhone, 440, time.Since(start)) // after the phone's resume
	for _, p := range []testenv.Tab{toPhone, toTrunk} {
		if st, _ := p.State(ctx); st.CallState != "answered" {
			t.Fatalf("%s: call %q after %v", p.TabName(), st.CallState, time.Since(start))
		}
	}
	t.Logf("%d checks over %v; phone hold %v–%v", checks, time.Since(start).Round(time.Second), holdFrom, holdTo)

	// Refreshes: in-dialog INVITE/UPDATE toward the carrier (SIPp's trace) and toward the phone (Asterisk's log).
	msgs, err := sp.Messages()
	if err != nil {
		t.Fatal(err)
	}
	trunkRefresh := 0
	for _, m := range msgs {
		if m.Received && !earlier[m.Header("Call-ID")] && (m.Method() == "INVITE" || m.Method() == "UPDATE") && strings.Contains(m.Header("To"), "tag=") {
			trunkRefresh++
		}
	}
	phoneRefresh := refreshesTo(t, a.LogPath, user)
	t.Logf("session refreshes: trunk %d, phone %d", trunkRefresh, phoneRefresh)
	if trunkRefresh < refreshes {
		t.Errorf("the carrier saw %d session refreshes, want ≥ %d", trunkRefresh, refreshes)
	}
	if phoneRefresh < refreshes {
		t.Errorf("the phone saw %d session refreshes, want ≥ %d", phoneRefresh, refreshes)
	}

	for _, p := range []testenv.Tab{toPhone, toTrunk} {
		_ = p.Eval(ctx, `window.patchbayApp.hangup(), true`, nil)
	}
	// What the phone heard (every recording): the browser's 1000 Hz in nearly every window.
	pcm, rate, err := phone.AllRecordings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := audio.Detect(pcm, rate, 1000)
	heard := time.Duration(len(pcm)) * time.Second / time.Duration(rate)
	t.Logf("phone heard the browser: %+v over %v", r, heard)
	// baresip's sndfile stops writing at the hold (its stream restarts without a new dump), so the recording covers
	// the call up to the hold (at 50 s; 30 s of it at least: on a loaded host the dump starts late and skips what arrived late); after it, the carrier call's echo proves the browser's
	// sending and the phone's 440 Hz on the page proves the phone's.
	if r.Voiced == 0 || float64(r.Matching) < 0.9*float64(r.Windows) || heard < 30*time.Second {
		t.Errorf("browser→phone audio broke during the long call: %+v over %v", r, heard)
	}
	waitActive(t, pb, 0, 10*time.Second)
	checkConsole(t, toPhone, toTrunk)
}

func pageHearsWindow(t *testing.T, ctx context.Context, p testenv.Tab, hz float64, at time.Duration) {
	t.Helper()
	rec, err := p.RecordRemoteAudio(ctx, 1500*time.Millisecond)
	if err != nil {
		t.Fatalf("%s at %v: %v", p.TabName(), at.Round(time.Second), err)
	}
	if r := audio.Detect(rec.Samples, rec.Rate, hz); !r.Detected(5) {
		t.Errorf("%s at %v: %v Hz not heard: %+v", p.TabName(), at.Round(time.Second), hz, r)
	}
}

// refreshesTo counts in-dialog INVITEs and UPDATEs Asterisk sent to the phone (pjsip logger output).
func refreshesTo(t *testing.T, logPath, user string) int {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	re := regexp.MustCompile(`(?m)^(INVITE|UPDATE) sip:` + user + `[-@]`) // the contact may be 101-0x...@
	for _, block := range strings.Split(string(b), "<--- Transmitting SIP request") {
		if loc := re.FindStringIndex(block); loc != nil && regexp.MustCompile(`(?m)^To: .*;tag=`).MatchString(block) {
			n++
		}
	}
	return n
}
