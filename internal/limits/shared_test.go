package limits_test

import (
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/patchbay/patchbay/internal/limits"
	"github.com/patchbay/patchbay/internal/limits/limitstest"
	"github.com/patchbay/patchbay/wire"
)

// The shared limiter's logic against miniredis; test/integration runs the same suite against Redis, Sentinel and a
// Redis Cluster.
func TestSharedSuiteMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	limitstest.Run(t, func(t *testing.T, prefix string, ttl time.Duration) *limits.Shared {
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { c.Close() })
		return limits.NewShared(c, "mini:"+prefix, ttl, nil)
	})
}

func TestSharedRedisDownRefusesUnavailable(t *testing.T) {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	l := limits.NewShared(c, "", time.Second, nil).NewLimiter(limits.Config{MaxConcurrent: 1})
	le, err := l.Start("token:x", false)
	if err != nil {
		t.Fatal(err)
	}
	mr.Close()
	if _, err := l.Start("token:y", false); err == nil || !isUnavailable(err) {
		t.Fatalf("Redis down: %v, want unavailable", err)
	}
	le.End(0) // must not hang or panic
}

func isUnavailable(err error) bool {
	r, ok := err.(*limits.Refusal)
	return ok && r.Code == wire.CodeUnavailable
}
