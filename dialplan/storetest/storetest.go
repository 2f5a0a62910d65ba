// Package storetest is the behaviour every dialplan.Store must show, run
// against the memory store, miniredis and a real Redis alike.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/dialplan"
)

// Backend is one fresh, empty store plus control over its clock.
type Backend struct {
	Store dialplan.Store
	// Advance lets d pass for the store's TTLs (a fake clock, miniredis'
	// FastForward, or a real sleep).
	Advance func(d time.Duration)
	// Now is the store's notion of the current time.
	Now func() time.Time
}

// Run runs the suite; newBackend must return an empty, isolated store.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	ctx := context.Background()

	t.Run("MapLookupNormalises", func(t *testing.T) {
		b := newBackend(t)
		if err := b.Store.Map(ctx, "+44 (20) 7946-0000", "sales", 0); err != nil {
			t.Fatalf("Map: %v", err)
		}
		m, err := b.Store.Lookup(ctx, "+442079460000")
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		if m.Number != "+442079460000" || m.Room != "sales" || !m.Expires.IsZero() {
			t.Fatalf("Lookup = %+v", m)
		}
		if _, err := b.Store.Lookup(ctx, "+44.20.7946.0000"); err != nil {
			t.Fatalf("Lookup with separators: %v", err)
		}
	})

	t.Run("Overwrite", func(t *testing.T) {
		b := newBackend(t)
		mustMap(t, b.Store, "8001", "a", 0)
		mustMap(t, b.Store, "8001", "b", 0)
		if m, err := b.Store.Lookup(ctx, "8001"); err != nil || m.Room != "b" {
			t.Fatalf("Lookup after overwrite = %+v, %v; want room b", m, err)
		}
	})

	t.Run("NotMapped", func(t *testing.T) {
		b := newBackend(t)
		if _, err := b.Store.Lookup(ctx, "5551234"); !errors.Is(err, dialplan.ErrNotMapped) {
			t.Fatalf("Lookup of unknown number: %v, want ErrNotMapped", err)
		}
		if err := b.Store.Unmap(ctx, "5551234"); !errors.Is(err, dialplan.ErrNotMapped) {
			t.Fatalf("Unmap of unknown number: %v, want ErrNotMapped", err)
		}
	})

	t.Run("Unmap", func(t *testing.T) {
		b := newBackend(t)
		mustMap(t, b.Store, "100", "r1", 0)
		if err := b.Store.Unmap(ctx, "100"); err != nil {
			t.Fatalf("Unmap: %v", err)
		}
		if _, err := b.Store.Lookup(ctx, "100"); !errors.Is(err, dialplan.ErrNotMapped) {
			t.Fatalf("Lookup after Unmap: %v, want ErrNotMapped", err)
		}
	})

	t.Run("TTL", func(t *testing.T) {
		b := newBackend(t)
		long := 10 * time.Minute
		mustMap(t, b.Store, "+15551230001", "long", long)
		mustMap(t, b.Store, "+15551230002", "short", 300*time.Millisecond)
		mustMap(t, b.Store, "+15551230003", "forever", 0)
		m, err := b.Store.Lookup(ctx, "+15551230001")
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		if d := m.Expires.Sub(b.Now().Add(long)); d < -2*time.Second || d > 2*time.Second {
			t.Fatalf("Expires %v is %v off now+%v", m.Expires, d, long)
		}
		b.Advance(700 * time.Millisecond)
		if _, err := b.Store.Lookup(ctx, "+15551230002"); !errors.Is(err, dialplan.ErrNotMapped) {
			t.Fatalf("expired mapping still found: %v", err)
		}
		if err := b.Store.Unmap(ctx, "+15551230002"); !errors.Is(err, dialplan.ErrNotMapped) {
			t.Fatalf("Unmap of expired mapping: %v, want ErrNotMapped", err)
		}
		list, err := b.Store.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(list) != 2 || list[0].Room != "long" || list[1].Room != "forever" {
			t.Fatalf("List after expiry = %+v", list)
		}
	})

	t.Run("ListMany", func(t *testing.T) {
		b := newBackend(t)
		const n = 450 // several SCAN batches
		for i := range n {
			mustMap(t, b.Store, fmt.Sprintf("+4420790%05d", i), fmt.Sprintf("room-%d", i), time.Hour)
		}
		list, err := b.Store.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		if len(list) != n {
			t.Fatalf("List returned %d mappings, want %d", len(list), n)
		}
		for i, m := range list {
			if want := fmt.Sprintf("+4420790%05d", i); m.Number != want || m.Room != fmt.Sprintf("room-%d", i) {
				t.Fatalf("List[%d] = %+v, want number %s (sorted)", i, m, want)
			}
		}
	})

	t.Run("RejectsBadInput", func(t *testing.T) {
		b := newBackend(t)
		numbers := []string{"", " ", "abc", "100&PJSIP/x", "1*", "*", "1?", "[1]", "100\n", "١٠٠",
			"+0123456789", "+12", "1234567890123456", strings.Repeat("1", 100), "+44 20+79", "num:1", "1\\"}
		for _, n := range numbers {
			if err := b.Store.Map(ctx, n, "room", 0); !errors.Is(err, dialplan.ErrInvalidNumber) {
				t.Errorf("Map(%q): %v, want ErrInvalidNumber", n, err)
			}
			if _, err := b.Store.Lookup(ctx, n); !errors.Is(err, dialplan.ErrInvalidNumber) {
				t.Errorf("Lookup(%q): %v, want ErrInvalidNumber", n, err)
			}
			if err := b.Store.Unmap(ctx, n); !errors.Is(err, dialplan.ErrInvalidNumber) {
				t.Errorf("Unmap(%q): %v, want ErrInvalidNumber", n, err)
			}
		}
		rooms := []string{"", "a b", "room:1", "r*", "../x", "é", strings.Repeat("r", 65), "r\n"}
		for _, r := range rooms {
			if err := b.Store.Map(ctx, "100", r, 0); !errors.Is(err, dialplan.ErrInvalidRoom) {
				t.Errorf("Map(room %q): %v, want ErrInvalidRoom", r, err)
			}
		}
		if err := b.Store.Map(ctx, "100", "r", -time.Second); err == nil {
			t.Error("negative ttl accepted")
		}
		if list, err := b.Store.List(ctx); err != nil || len(list) != 0 {
			t.Errorf("rejected input left mappings: %+v, %v", list, err)
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		b := newBackend(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := b.Store.Map(cctx, "100", "r", 0); !errors.Is(err, context.Canceled) {
			t.Errorf("Map with cancelled context: %v", err)
		}
		if _, err := b.Store.Lookup(cctx, "100"); !errors.Is(err, context.Canceled) {
			t.Errorf("Lookup with cancelled context: %v", err)
		}
		if _, err := b.Store.List(cctx); !errors.Is(err, context.Canceled) {
			t.Errorf("List with cancelled context: %v", err)
		}
	})
}

func mustMap(t *testing.T, s dialplan.Store, number, room string, ttl time.Duration) {
	t.Helper()
	if err := s.Map(context.Background(), number, room, ttl); err != nil {
		t.Fatalf("Map(%q, %q, %v): %v", number, room, ttl, err)
	}
}
