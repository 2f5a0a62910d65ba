//go:build integration

package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/certs"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/test/testenv"
)

const (
	// lipSyncMeasure is how long the receiving page times flashes and beeps (one of each a second), from the first
	// frames of the sender's tile on: the browser's own synchronisation takes some seconds to line sound and picture
	// up (Chrome moves a stream's delay a step a second), and at least lipSyncPairs pairs must follow.
	lipSyncMeasure = 36 * time.Second
	lipSyncPairs   = 20
	lipSyncNative  = 22 * time.Second // the ConfBridge baseline: nothing converges, every pair counts
	lipSyncInStep  = 40.0             // ms: two pairs in a row within this of each other start the steady state
	lipSyncP95     = 80.0             // ms: issue 16's bound on p95 of |audio − video| (goal 60)
)

// TestRoomQualityLipSync: alice's Chromium joins a room (default bridge backend) sending the lip-sync harness's
// synthetic source (a canvas that flashes white and a WebAudio beep at the same instants); bob's Chromium, in the
// same room, times each flash of alice's tile as it is shown and each beep of the room's mix as it plays. Her video
// comes through Patchbay's SFU, her sound through Asterisk's mix: the audio − video distribution is logged and, once
// bob's browser has lined the two up, its p95 of |audio − video| must be at most 80 ms. Then the same two browsers
// and the same harness meet in an Asterisk ConfBridge with video (video_mode = sfu) over Asterisk's own WebRTC
// (SIP over WSS, ICE and DTLS-SRTP with Asterisk): its distribution is logged beside Patchbay's, for
// docs/benchmarks.md.
func TestRoomQualityLipSync(t *testing.T) {
	testenv.Heavy(t)
	started := time.Now()
	nativePass := fmt.Sprintf("lipsync-%d", time.Now().UnixNano()%1_000_000_007)
	e := newQualityEnvWith(t, testenv.AsteriskOptions{
		Params: func(p *asteriskconfigs.Params) {
			// Renders the bench-webrtc-endpoint template the ConfBridge callers below inherit.
			p.BenchWebRTC = []asteriskconfigs.Phone{{Name: "bench-webrtc-1", Password: nativePass}}
		},
		Extra: map[string]string{"pjsip.conf": confBridgeCaller("lipsync-alice", nativePass) + confBridgeCaller("lipsync-bob", nativePass),
			"confbridge.conf": confBridgeVideo, "extensions.conf": "\n[lipsync-native]\nexten => " + confBridgeNumber +
				",1,Answer()\n same => n,ConfBridge(lipsync,lipsync_bridge,lipsync_user)\n"},
	}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	const room = "lipsync"
	e.room(t, ctx, room)
	alice, bob := e.chromiumTab(t, "alice"), e.chromiumTab(t, "bob")
	for _, p := range []*testenv.Page{alice, bob} {
		if err := p.PrepareLipSync(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.OpenPatchbay(ctx, e.pb, e.token(t, room, p.Name, rooms.RoleParticipant), url.Values{}); err != nil {
			t.Fatal(err)
		}
	}
	src := testenv.SyncSource{}
	if err := alice.JoinRoomWithSyncSource(ctx, room, src); err != nil {
		t.Fatal(err)
	}
	// Bob only watches and listens: no camera (a receive-only video section), and his fake microphone is not in the
	// mix he hears.
	if err := bob.Eval(ctx, fmt.Sprintf(`window.patchbayApp.join(%q, { video: false }).then(() => true)`, room), nil); err != nil {
		t.Fatal(err)
	}
	if err := bob.WaitFor(ctx, "alice's camera tile", `window.patchbayState.roomState === "joined" && window.patchbayState.videoTiles === 1`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	aliceID := roomState(t, ctx, alice).You
	tile := `#tiles li[data-participant="` + aliceID + `"] video`
	if err := bob.WaitFor(ctx, "alice's frames", `(() => { const v = document.querySelector('`+tile+`'); return v && v.videoWidth > 0 && !v.paused; })()`, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	logPlayout(t, ctx, bob, "as her frames arrive")
	ls, err := bob.MeasureLipSync(ctx, tile, "#remote", lipSyncMeasure, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	logPlayout(t, ctx, bob, "after measuring")
	pbSteady := checkLipSync(t, "Patchbay room (SFU video, Asterisk bridge mix)", ls, true)
	if pbSteady.AbsP95 > lipSyncP95 || pbSteady.N < lipSyncPairs {
		// On this 2-core host the test's own browsers, Patchbay and Asterisk fill both cores, and a stall of the
		// audio path now and then grows the receiver's audio buffer, which the browser's synchronisation then
		// chases for seconds (docs/benchmarks.md). One more window tells such a disturbance from a lasting
		// offset, which fails both.
		// The browser lining up late (17 s once, beside the other lane) leaves too few pairs: the same remedy.
		t.Logf("once in step: %d pairs, p95 of |audio − video| %.0f ms (want ≥ %d pairs, ≤ %.0f ms): measuring once more",
			pbSteady.N, pbSteady.AbsP95, lipSyncPairs, lipSyncP95)
		if ls, err = bob.MeasureLipSync(ctx, tile, "#remote", lipSyncMeasure, time.Second); err != nil {
			t.Fatal(err)
		}
		logPlayout(t, ctx, bob, "after measuring again")
		pbSteady = checkLipSync(t, "Patchbay room, second window", ls, true)
	}
	if pbSteady.N < lipSyncPairs {
		t.Errorf("only %d pairs once in step in the second window, want at least %d", pbSteady.N, lipSyncPairs)
	}
	if pbSteady.AbsP95 > lipSyncP95 {
		t.Errorf("p95 of |audio − video| once in step is %.0f ms, want ≤ %.0f ms", pbSteady.AbsP95, lipSyncP95)
	}
	e.leaveAll(t, ctx, alice, bob)
	t.Logf("Patchbay measured %v after the start", time.Since(started).Round(time.Second))

	// The baseline: the same browsers and source in an Asterisk ConfBridge with SFU video, on Asterisk's WebRTC.
	blank := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<!doctype html><title>ConfBridge lip sync</title>")
	}))
	defer blank.Close()
	caPool, err := certs.CertPool(filepath.Join(e.ast.CertDir, certs.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]*testenv.NativeCall{}
	for _, p := range []*testenv.Page{alice, bob} {
		if err := p.Navigate(ctx, blank.URL); err != nil { // http://127.0.0.1: a secure context
			t.Fatal(err)
		}
		n := testenv.NativeWebRTC{WSS: fmt.Sprintf("127.0.0.1:%d", e.ast.HTTPSPort), TLS: &tls.Config{RootCAs: caPool, ServerName: "localhost"},
			User: "lipsync-" + p.Name, Pass: nativePass}
		c, err := p.DialNative(ctx, n, confBridgeNumber, p == alice, src)
		if err != nil {
			t.Fatal(err)
		}
		calls[p.Name] = c
		defer func() {
			if err := c.Hangup(ctx); err != nil {
				t.Logf("hang up %s: %v", p.Name, err)
			}
		}()
	}
	const flashing = `[...document.querySelectorAll("video.native-video")].find((v) => v.videoWidth > 0 && !v.paused)`
	if err := bob.WaitFor(ctx, "alice's video from ConfBridge", `(() => { const v = `+flashing+`; if (v) v.id = "native-flash"; return Boolean(v); })()`, 20*time.Second); err != nil {
		n, rerr := calls["bob"].Reinvites()
		t.Fatalf("%v (bob answered %d re-INVITEs, last error %v)", err, n, rerr)
	}
	logPlayout(t, ctx, bob, "as alice's ConfBridge frames arrive")
	nls, err := bob.MeasureLipSync(ctx, "#native-flash", "#native-audio", lipSyncNative, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	logPlayout(t, ctx, bob, "after measuring ConfBridge")
	cbSteady := checkLipSync(t, "Asterisk ConfBridge (video_mode=sfu, Asterisk WebRTC)", nls, false)
	t.Logf("lip sync, |audio − video| p95: Patchbay %.0f ms (%s); ConfBridge %.0f ms (%s); measured in %v",
		pbSteady.AbsP95, pbSteady, cbSteady.AbsP95, cbSteady, time.Since(started).Round(time.Second))
}

const confBridgeNumber = "7100"

// confBridgeCaller is an Asterisk WebRTC endpoint for the ConfBridge baseline: Opus and VP8, bundled, room for the
// SFU's video streams.
func confBridgeCaller(name, pass string) string {
	return fmt.Sprintf(`
[%[1]s](bench-webrtc-endpoint)
context = lipsync-native
disallow = all
allow = opus,vp8
bundle = yes
max_audio_streams = 1
max_video_streams = 4
auth = %[1]s
aors = %[1]s

[%[1]s](softphone-auth)
username = %[1]s
password = %[2]s

[%[1]s](softphone-aor)
qualify_frequency = 0
`, name, pass)
}

// confBridgeVideo: ConfBridge's SFU forwards each member's video to the others; the mix is as Patchbay's rooms
// configure it (48 kHz once Opus members are in, 20 ms, nothing dropped).
const confBridgeVideo = `
[lipsync_bridge]
type = bridge
video_mode = sfu
internal_sample_rate = auto
mixing_interval = 20

[lipsync_user]
type = user
quiet = yes
announce_user_count = no
announce_only_user = no
dsp_drop_silence = no
`

// logPlayout logs the page's inbound streams: the browser's own view of how far apart it plays them (the
// difference of their estimatedPlayoutTimestamps, on the sender reports' clock, when both have had one).
func logPlayout(t *testing.T, ctx context.Context, p *testenv.Page, when string) {
	t.Helper()
	in, err := p.LipSyncPlayout(ctx)
	if err != nil {
		t.Logf("%s: playout stats %s: %v", p.Name, when, err)
		return
	}
	skew := "unknown (no sender report on one of them)"
	if d, ok := skewOf(in); ok {
		skew = fmt.Sprintf("%+.0f ms", d)
	}
	t.Logf("%s inbound %s: %+v; picture − sound playout position %s", p.Name, when, in, skew)
}

// playoutSkew is the page's picture − sound playout position (ms, on the clock of the sender reports; > 0 when the
// picture shows newer content than the sound plays); false until both streams have had a sender report.
func playoutSkew(ctx context.Context, p *testenv.Page) (float64, bool) {
	in, err := p.LipSyncPlayout(ctx)
	if err != nil {
		return 0, false
	}
	return skewOf(in)
}

func skewOf(in []testenv.InboundPlayout) (float64, bool) {
	var a, v float64
	for _, s := range in {
		switch s.Kind {
		case "audio":
			a = s.PlayoutNTP
		case "video":
			v = s.PlayoutNTP
		}
	}
	return v - a, a > 0 && v > 0
}

// checkLipSync logs what a page measured: every pair from the first frames, how long the browser took to line
// sound and picture up (the first two pairs in a row within lipSyncInStep), and the steady state after that,
// which it returns. Too few pairs in all, or in the steady state, fail the test.
func checkLipSync(t *testing.T, what string, ls testenv.LipSync, converge bool) testenv.OffsetStats {
	t.Helper()
	all := testenv.SummariseOffsets(ls.Offsets)
	t.Logf("%s: %d flashes, %d beeps, %d frames; from the first frames: %s; offsets (ms) %v",
		what, len(ls.Flashes), len(ls.Beeps), ls.Frames, all, roundedMs(ls.Offsets))
	if all.N < lipSyncPairs {
		t.Fatalf("%s: only %d flash/beep pairs in %v (flashes %d, beeps %d, frames %d): the harness did not see the source",
			what, all.N, lipSyncMeasure, len(ls.Flashes), len(ls.Beeps), ls.Frames)
	}
	if !converge { // nothing lines this one up: every pair counts
		return all
	}
	from := -1
	for i := 0; i+1 < len(ls.Offsets); i++ {
		if math.Abs(ls.Offsets[i]) <= lipSyncInStep && math.Abs(ls.Offsets[i+1]) <= lipSyncInStep {
			from = i
			break
		}
	}
	if from < 0 {
		t.Fatalf("%s: sound and picture never came within %.0f ms of each other twice in a row in %v", what, lipSyncInStep, lipSyncMeasure)
	}
	steady := testenv.SummariseOffsets(ls.Offsets[from:])
	t.Logf("%s: in step after %d pairs (~%d s); steady state: %s", what, from, from, steady)
	if steady.N < lipSyncPairs {
		t.Logf("%s: only %d pairs once in step, want at least %d", what, steady.N, lipSyncPairs)
	}
	return steady
}

func roundedMs(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		if x < 0 {
			out[i] = int(x - 0.5)
		} else {
			out[i] = int(x + 0.5)
		}
	}
	return out
}
