package dialplan_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/dialplan/storetest"
)

// fakeClock is a manually advanced clock for the memory store.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		s := dialplan.NewMemoryStore()
		dialplan.SetMemoryClock(s, clock.Now)
		return storetest.Backend{Store: s, Advance: clock.Advance, Now: clock.Now}
	})
}

func newMiniredis(t *testing.T) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	client := redis.NewClient(dialplan.RedisOptions(mr.Addr()))
	t.Cleanup(func() { client.Close() })
	return mr, client
}

func TestRedisStoreMiniredis(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		mr, client := newMiniredis(t)
		return storetest.Backend{
			Store:   dialplan.NewRedisStore(client, "test:"),
			Advance: mr.FastForward,
			Now:     time.Now,
		}
	})
}

func TestRedisStorePrefixIsolation(t *testing.T) {
	ctx := context.Background()
	mr, client := newMiniredis(t)
	a := dialplan.NewRedisStore(client, "a*[x]:")
	b := dialplan.NewRedisStore(client, "a")
	if err := a.Map(ctx, "100", "ra", 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Map(ctx, "100", "rb", 0); err != nil {
		t.Fatal(err)
	}
	// A foreign key under the prefix must not break List.
	mr.Set("a*[x]:num:garbage", "x")
	for _, tc := range []struct {
		s    *dialplan.RedisStore
		room string
	}{{a, "ra"}, {b, "rb"}} {
		list, err := tc.s.List(ctx)
		if err != nil || len(list) != 1 || list[0].Room != tc.room {
			t.Errorf("List = %+v, %v; want only %s", list, err, tc.room)
		}
	}
	if !mr.Exists("a*[x]:num:100") || !mr.Exists("anum:100") {
		t.Errorf("unexpected key layout: %v", mr.Keys())
	}
}

func TestRedisStoreUnavailable(t *testing.T) {
	ctx := context.Background()
	mr, client := newMiniredis(t)
	s := dialplan.NewRedisStore(client, "")
	if err := s.Map(ctx, "100", "r", 0); err != nil {
		t.Fatal(err)
	}
	addr := mr.Addr()
	mr.Close()
	start := time.Now()
	_, err := s.Lookup(ctx, "100")
	if !errors.Is(err, dialplan.ErrStoreUnavailable) {
		t.Fatalf("Lookup with Redis down: %v, want ErrStoreUnavailable", err)
	}
	t.Logf("Redis down: %v (after %v)", err, time.Since(start))
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("failure took %v; want it quick", el)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not name the Redis address", err)
	}
	for name, f := range map[string]func() error{
		"Map":   func() error { return s.Map(ctx, "100", "r", 0) },
		"Unmap": func() error { return s.Unmap(ctx, "100") },
		"List":  func() error { _, err := s.List(ctx); return err },
	} {
		if err := f(); !errors.Is(err, dialplan.ErrStoreUnavailable) {
			t.Errorf("%s with Redis down: %v", name, err)
		}
	}
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := s.Map(ctx, "100", "r2", 0); err != nil {
		t.Fatalf("Map after restart: %v", err)
	}
}

func TestRedisStoreNilClient(t *testing.T) {
	var s dialplan.RedisStore
	if _, err := s.List(context.Background()); err == nil {
		t.Fatal("zero RedisStore did not fail")
	}
}

func TestNormalizeNumber(t *testing.T) {
	tests := map[string]string{
		"+44 20 7946 0000": "+442079460000",
		"(555) 123-4567":   "5551234567",
		"100":              "100",
		" 8001 ":           "8001",
	}
	for in, want := range tests {
		if got, err := dialplan.NormalizeNumber(in); err != nil || got != want {
			t.Errorf("NormalizeNumber(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
