//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/test/testenv"
)

const (
	lipSyncMeasure = 22 * time.Second // ~22 flash/beep pairs at one a second
	lipSyncSettle  = 20 * time.Second // the longest the browser may take to line sound and picture up
	lipSyncP95     = 80.0             // ms: issue 16's bound on p95 of |audio − video| (goal 60)
)

// TestRoomQualityLipSync: alice's Chromium joins a room (default bridge backend) sending the lip-sync harness's
// synthetic source (a canvas that flashes white and a WebAudio beep at the same instants); bob's Chromium, in the
// same room, times each flash of alice's tile as it is shown and each beep of the room's mix as it plays. Her video
// comes through Patchbay's SFU, her sound through Asterisk's mix: the audio − video distribution is logged and its
// p95 of |audio − video| must be at most 80 ms.
func TestRoomQualityLipSync(t *testing.T) {
	testenv.Heavy(t)
	started := time.Now()
	e := newQualityEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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
	// The browser lines sound and picture up step by step (Chrome moves a stream's delay by at most 80 ms a second)
	// once it has two sender reports of each: wait until it says it plays them within 30 ms of each other on the
	// reports' clock (estimatedPlayoutTimestamp), twice in a row, before measuring what it really does.
	settle := time.Now()
	for streak := 0; streak < 2; {
		if time.Since(settle) > lipSyncSettle {
			logPlayout(t, ctx, bob, "unsettled")
			t.Fatalf("bob's browser does not play alice's sound and picture in step after %v (no sender reports, or not one stream?)", lipSyncSettle)
		}
		time.Sleep(500 * time.Millisecond)
		if skew, ok := playoutSkew(ctx, bob); ok && skew > -30 && skew < 30 {
			streak++
		} else {
			streak = 0
		}
	}
	t.Logf("bob's browser plays alice's sound and picture in step %v after her frames arrived", time.Since(settle).Round(100*time.Millisecond))
	logPlayout(t, ctx, bob, "before measuring")
	ls, err := bob.MeasureLipSync(ctx, tile, "#remote", lipSyncMeasure, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	logPlayout(t, ctx, bob, "after measuring")
	st := testenv.SummariseOffsets(ls.Offsets)
	t.Logf("Patchbay room (SFU video, Asterisk bridge mix): %d flashes, %d beeps, %d frames; %s; offsets (ms) %v",
		len(ls.Flashes), len(ls.Beeps), ls.Frames, st, roundedMs(ls.Offsets))
	if st.N < 18 {
		t.Fatalf("only %d flash/beep pairs in %v (flashes %d, beeps %d, frames %d): the harness did not see the source",
			st.N, lipSyncMeasure, len(ls.Flashes), len(ls.Beeps), ls.Frames)
	}
	if st.AbsP95 > lipSyncP95 {
		t.Errorf("p95 of |audio − video| is %.0f ms, want ≤ %.0f ms", st.AbsP95, lipSyncP95)
	}
	e.leaveAll(t, ctx, alice, bob)
	t.Logf("lip sync measured in %v", time.Since(started).Round(time.Second))
}

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
