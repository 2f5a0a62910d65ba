//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/test/testenv"
)

// TestPageCallsPSTNThroughTrunk, in Chromium and Firefox ESR: a real browser dials an outside number from the page;
// the SIPp carrier on 127.0.0.2 answers and echoes the audio, so the page hearing its own tone proves both
// directions; the INVITE carries the token's caller ID in From and P-Asserted-Identity.
func TestPageCallsPSTNThroughTrunk(t *testing.T) {
	e := newTrunkEnv(t, testenv.SIPpOptions{RTPEcho: true}, loopbackPage)
	// A caller ID per browser: each run checks its own INVITE.
	callerIDs := map[string]string{"chromium": "+442071230009", "firefox": "+442071230010"}
	invites := 0
	testenv.EachBrowser(t, testenv.BrowserOptions{FakeMicWAV: micWAV(t, 1000), FakeToneHz: 1000, TrustCA: e.pb.CACert}, func(t *testing.T, b testenv.Browser) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		p := b.NewTab(t, "alice")
		callerID := callerIDs[b.BrowserName()]
		cl := auth.Claims{Name: "Alice", Dial: []string{"pstn"}, CallerIDs: []string{callerID}}
		cl.Subject = "alice"
		tok, err := e.pb.Server.Signer().Mint(cl, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.OpenPatchbay(ctx, e.pb, tok, nil); err != nil {
			t.Fatal(err)
		}
		if err := p.Type(ctx, "#number", "+14155550100"); err != nil {
			t.Fatal(err)
		}
		if err := p.Click(ctx, "#call"); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor(ctx, "answered by the carrier", `window.patchbayState.callState === "answered"`, 15*time.Second); err != nil {
			t.Fatal(err)
		}
		pageHears(t, ctx, p, 1000, 440)

		invites++
		inv, err := e.sipp.WaitInvites(ctx, invites)
		if err != nil {
			t.Fatal(err)
		}
		last := inv[invites-1]
		if got := numberOf(last.Header("From")); got != callerID {
			t.Errorf("From %q, want caller ID %s", last.Header("From"), callerID)
		}
		if got := numberOf(last.Header("P-Asserted-Identity")); got != callerID {
			t.Errorf("P-Asserted-Identity %q, want %s", last.Header("P-Asserted-Identity"), callerID)
		}
		if err := p.Click(ctx, "#hangup"); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor(ctx, "ended", `window.patchbayState.callState === "ended"`, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		e.waitNoCalls(t)
		e.assertClean(t)
		checkConsole(t, p)
	})
}
