package sfu

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/webrtc/media"
)

// withScreen gives a test browser (before its join offer) the second video section a page reserves for its screen.
func withScreen(t *testing.T, b *browser) *browser {
	t.Helper()
	var err error
	b.screen, err = webrtc.NewTrackLocalStaticRTP(media.VP8Codec().RTPCodecCapability, "screen", "screen-"+b.id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.pc.AddTrack(b.screen); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestScreenShareOneAtATime: who may share, and what the others receive. A member shares only with a screen
// section in its join offer; while one shares, another's start is ErrShareBusy; a stop by anyone else's request
// (a moderator's) or the sharer's leaving frees the room; the screen reaches every other member as stream
// "screen-" + id only while it is shared, and the camera keeps flowing throughout.
func TestScreenShareOneAtATime(t *testing.T) {
	checkGoroutines(t)
	a := newAPI(t)
	r := NewRoom("share", Options{Logger: quietLog(), KeyframeInterval: 100 * time.Millisecond})
	defer r.Close()
	ctx := context.Background()
	alice := withScreen(t, newBrowser(t, a, "alice", true))
	bob := withScreen(t, newBrowser(t, a, "bob", true))
	carol := newBrowser(t, a, "carol", true) // one video section: sees shares, cannot share
	for _, b := range []*browser{alice, bob, carol} {
		b.connect(ctx, a, r)
	}
	receives(t, carol, "alice", "bob")

	if !alice.peer.CanShare() || carol.peer.CanShare() {
		t.Fatalf("CanShare: alice %v carol %v, want true false", alice.peer.CanShare(), carol.peer.CanShare())
	}
	if err := r.Share(ctx, "carol", true); !errors.Is(err, ErrCannotShare) {
		t.Fatalf("carol's share: %v, want ErrCannotShare", err)
	}
	if err := r.Share(ctx, "nobody", true); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("share of a stranger: %v, want ErrUnknownMember", err)
	}
	if err := r.Share(ctx, "bob", false); err != nil { // stopping a share that is not on
		t.Fatalf("stop without a share: %v", err)
	}

	if err := r.Share(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	if err := r.Share(ctx, "alice", true); err != nil { // twice: no-op
		t.Fatal(err)
	}
	alice.sharing.Store(true)
	if err := r.Share(ctx, "bob", true); !errors.Is(err, ErrShareBusy) {
		t.Fatalf("bob's share while alice shares: %v, want ErrShareBusy", err)
	}
	receives(t, bob, "screen-alice", "alice")
	receives(t, carol, "screen-alice", "alice")
	if id, _ := r.Sharer(ctx); id != "alice" {
		t.Fatalf("sharer %q, want alice", id)
	}
	if st := stats(t, r); !st["alice"].Sharing || st["alice"].ScreenPackets == 0 || st["bob"].Sharing {
		t.Fatalf("stats while alice shares: %+v", st)
	}
	if got := receiving(t, r, "carol"); !slices.Contains(got, "screen-alice") {
		t.Fatalf("carol receives %v, want screen-alice among them", got)
	}

	// A moderator's stop (Share off for alice, asked by someone else): the screen leaves every viewer.
	if err := r.Share(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice's screen to leave carol", 5*time.Second, func() bool { return !slices.Contains(receiving(t, r, "carol"), "screen-alice") })
	receives(t, carol, "alice") // her camera goes on

	// Now bob may share; his leaving frees the room for alice again.
	if err := r.Share(ctx, "bob", true); err != nil {
		t.Fatalf("bob's share after alice stopped: %v", err)
	}
	bob.sharing.Store(true)
	receives(t, carol, "screen-bob")
	if err := r.Leave(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	bob.close()
	if id, _ := r.Sharer(ctx); id != "" {
		t.Fatalf("sharer after bob left: %q", id)
	}
	if err := r.Share(ctx, "alice", true); err != nil {
		t.Fatalf("alice's share after bob left: %v", err)
	}
	receives(t, carol, "screen-alice")
}
