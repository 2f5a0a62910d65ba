package sfu

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestHubMakesAndClosesRooms(t *testing.T) {
	checkGoroutines(t)
	a := newAPI(t)
	h := NewHub(Options{Logger: quietLog()})
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// browser.connect joins a Room directly; here the hub's room is used.
	alice := newBrowser(t, a, "alice", true)
	bob := newBrowser(t, a, "bob", true)
	var ms []*Membership
	for _, b := range []*browser{alice, bob} {
		b.connectPeer(ctx, a)
		m, err := h.Join(ctx, "lobby", b.id, b.peer, b.memberOptions())
		if err != nil {
			t.Fatal(err)
		}
		b.startAnswering(m.Answer)
		ms = append(ms, m)
	}
	if h.Rooms() != 1 || h.Room("lobby") == nil {
		t.Fatalf("%d rooms, want 1 (lobby)", h.Rooms())
	}
	receives(t, alice, "bob")
	receives(t, bob, "alice")
	for _, m := range ms {
		if err := m.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		_ = m.Leave(ctx) // twice is fine
	}
	if h.Rooms() != 0 {
		t.Fatalf("%d rooms left after everyone left", h.Rooms())
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Join(ctx, "lobby", "carol", alice.peer, alice.memberOptions()); !errors.Is(err, ErrRoomClosed) {
		t.Fatalf("join after close: %v", err)
	}
	alice.close()
	bob.close()
}
