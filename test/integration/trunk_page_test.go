//go:build integration

package integration

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
)

// TestChromiumCallsPSTNThroughTrunk: a real browser dials an outside number from the page; the SIPp carrier on
// 127.0.0.2 answers and echoes the audio, so the page hearing its own tone proves both directions; the INVITE
// carries the token's caller ID in From and P-Asserted-Identity.
func TestChromiumCallsPSTNThroughTrunk(t *testing.T) {
	e := newTrunkEnv(t, testenv.SIPpOptions{RTPEcho: true}, func(c *config.Config) {
		c.Media.PublicIPs = []string{"127.0.0.1"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	mic := filepath.Join(t.TempDir(), "mic-1000.wav")
	if err := audio.WriteWAV(mic, audio.Sine(1000, 48000, 10*time.Second, 0.3), 48000); err != nil {
		t.Fatal(err)
	}
	chrome := testenv.StartChromium(t, testenv.ChromiumOptions{FakeMicWAV: mic, TrustCA: e.pb.CACert})
	p := chrome.NewPage(t, "alice")
	const callerID = "+442071230009"
	cl := auth.Claims{Name: "Alice", Dial: []string{"pstn"}, CallerIDs: []string{callerID}}
	cl.Subject = "alice"
	tok, err := e.pb.Server.Signer().Mint(cl, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.OpenPatchbay(ctx, e.pb, tok, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Do(ctx, chromedp.SendKeys(chromedp.ID("number"), "+14155550100"), chromedp.Click(chromedp.ID("call"))); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, "answered by the carrier", `window.patchbayState.callState === "answered"`, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	pageHears(t, ctx, p, 1000, 440)

	inv, err := e.sipp.WaitInvites(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := numberOf(inv[0].Header("From")); got != callerID {
		t.Errorf("From %q, want caller ID %s", inv[0].Header("From"), callerID)
	}
	if got := numberOf(inv[0].Header("P-Asserted-Identity")); got != callerID {
		t.Errorf("P-Asserted-Identity %q, want %s", inv[0].Header("P-Asserted-Identity"), callerID)
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
}
