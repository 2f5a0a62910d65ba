//go:build integration

package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/dialplan/storetest"
	"github.com/patchbay/patchbay/test/testenv"
)

// storeUnavailableWithin is how fast an outage must surface, given the short
// timeouts of dialplan.RedisOptions.
const storeUnavailableWithin = 2 * time.Second

func newRedisClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(dialplan.RedisOptions(addr))
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisStoreSuite(t *testing.T) {
	srv := testenv.StartRedis(t)
	client := newRedisClient(t, srv.Addr())
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		// A prefix per subtest keeps them isolated on one server.
		prefix := "it:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
		return storetest.Backend{
			Store:   dialplan.NewRedisStore(client, prefix),
			Advance: time.Sleep,
			Now:     time.Now,
		}
	})
}

// expectUnavailable runs op and checks it fails quickly with
// ErrStoreUnavailable naming the address.
func expectUnavailable(t *testing.T, name, addr string, op func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := op(ctx)
	el := time.Since(start)
	if !errors.Is(err, dialplan.ErrStoreUnavailable) {
		t.Fatalf("%s: got %v, want ErrStoreUnavailable", name, err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("%s: error %q does not name Redis at %s", name, err, addr)
	}
	if el > storeUnavailableWithin {
		t.Errorf("%s: took %v to fail, want under %v", name, el, storeUnavailableWithin)
	}
	t.Logf("%s failed in %v: %v", name, el.Round(time.Millisecond), err)
}

func storeOps(s dialplan.Store) map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"Map":    func(ctx context.Context) error { return s.Map(ctx, "+442079460000", "r", time.Minute) },
		"Lookup": func(ctx context.Context) error { _, err := s.Lookup(ctx, "+442079460000"); return err },
		"Unmap":  func(ctx context.Context) error { return s.Unmap(ctx, "+442079460000") },
		"List":   func(ctx context.Context) error { _, err := s.List(ctx); return err },
	}
}

func TestRedisStoreOutageAndRecovery(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartRedis(t)
	client := newRedisClient(t, srv.Addr())
	s := dialplan.NewRedisStore(client, "")
	if err := s.Map(ctx, "+442079460000", "before", 0); err != nil {
		t.Fatalf("Map with Redis up: %v", err)
	}

	srv.Stop()
	for name, op := range storeOps(s) {
		expectUnavailable(t, name+" (stopped)", srv.Addr(), op)
	}

	srv.Start()
	// The same client must recover on its own: the first call after the
	// restart already succeeds. Redis runs without persistence, so the old
	// mapping is gone.
	if _, err := s.Lookup(ctx, "+442079460000"); !errors.Is(err, dialplan.ErrNotMapped) {
		t.Fatalf("first Lookup after restart: %v, want ErrNotMapped from a reachable Redis", err)
	}
	if err := s.Map(ctx, "+442079460000", "after", 0); err != nil {
		t.Fatalf("Map after restart: %v", err)
	}
	if m, err := s.Lookup(ctx, "+442079460000"); err != nil || m.Room != "after" {
		t.Fatalf("Lookup after restart = %+v, %v", m, err)
	}
}

func TestRedisStoreHungServer(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartRedis(t)
	client := newRedisClient(t, srv.Addr())
	s := dialplan.NewRedisStore(client, "")
	if err := s.Map(ctx, "8001", "r", 0); err != nil {
		t.Fatalf("Map: %v", err)
	}
	srv.Freeze()
	expectUnavailable(t, "Lookup (hung)", srv.Addr(), func(ctx context.Context) error {
		_, err := s.Lookup(ctx, "8001")
		return err
	})
	srv.Thaw()
	// Replies to the timed-out commands may still arrive on old connections;
	// go-redis discards those connections, so the next call must succeed.
	if m, err := s.Lookup(ctx, "8001"); err != nil || m.Room != "r" {
		t.Fatalf("Lookup after thaw = %+v, %v", m, err)
	}
}
