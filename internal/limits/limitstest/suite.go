// Package limitstest checks a shared (Redis-backed) limits.Limiter against a real Redis, a Redis Cluster or
// miniredis: the same suite runs in the unit tests and, against real servers, in the integration tests. Tests only.
package limitstest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/limits"
	"github.com/patchbay/patchbay/wire"
)

// NewNode returns a fresh Shared of one node (its own client) on the Redis under test, with its leases kept ttl
// past their last refresh; each call to NewNode is another node. prefix keeps parallel suites apart.
type NewNode func(t *testing.T, prefix string, ttl time.Duration) *limits.Shared

func code(err error) string {
	var r *limits.Refusal
	if errors.As(err, &r) {
		return r.Code
	}
	return ""
}

// Run runs the suite.
func Run(t *testing.T, newNode NewNode) {
	t.Run("concurrency holds across nodes", func(t *testing.T) {
		cfg := limits.Config{MaxConcurrent: 2}
		a := newNode(t, "conc:", 10*time.Second).NewLimiter(cfg)
		b := newNode(t, "conc:", 10*time.Second).NewLimiter(cfg)
		la, err := a.Start("token:alice", false)
		if err != nil {
			t.Fatal(err)
		}
		lb, err := b.Start("token:alice", false)
		if err != nil {
			t.Fatal(err)
		}
		for name, l := range map[string]*limits.Limiter{"a": a, "b": b} {
			if _, err := l.Start("token:alice", false); code(err) != wire.CodeTooManyCalls {
				t.Errorf("third call on node %s: %v, want %s", name, err, wire.CodeTooManyCalls)
			}
		}
		if _, err := a.Start("token:bob", false); err != nil {
			t.Errorf("another caller is counted apart: %v", err)
		}
		la.End(0)
		la.End(0) // twice is once
		lc, err := b.Start("token:alice", false)
		if err != nil {
			t.Fatalf("after one ended: %v", err)
		}
		if _, err := a.Start("token:alice", false); code(err) != wire.CodeTooManyCalls {
			t.Errorf("a double End freed two slots: %v", err)
		}
		lb.End(0)
		lc.End(0)
	})

	t.Run("no two nodes take the last slot", func(t *testing.T) {
		cfg := limits.Config{MaxConcurrent: 5}
		nodes := []*limits.Limiter{newNode(t, "race:", 10*time.Second).NewLimiter(cfg), newNode(t, "race:", 10*time.Second).NewLimiter(cfg)}
		var granted atomic.Int32
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := nodes[i%2].Start("apikey:crm", false); err == nil {
					granted.Add(1)
				} else if code(err) != wire.CodeTooManyCalls {
					t.Errorf("start: %v", err)
				}
			}()
		}
		wg.Wait()
		if granted.Load() != 5 {
			t.Fatalf("granted %d slots across two nodes, want exactly 5", granted.Load())
		}
	})

	t.Run("rate", func(t *testing.T) {
		cfg := limits.Config{CallsPerMinute: 2, Burst: 2}
		a := newNode(t, "rate:", 10*time.Second).NewLimiter(cfg)
		b := newNode(t, "rate:", 10*time.Second).NewLimiter(cfg)
		for i, l := range []*limits.Limiter{a, b} {
			le, err := l.Start("phone:101", false)
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			le.End(0)
		}
		if _, err := a.Start("phone:101", false); code(err) != wire.CodeCallRateLimited {
			t.Fatalf("third call within the burst: %v, want %s", err, wire.CodeCallRateLimited)
		}
	})

	t.Run("daily budget", func(t *testing.T) {
		cfg := limits.Config{DailyMinutes: 1}
		a := newNode(t, "budget:", 10*time.Second).NewLimiter(cfg)
		b := newNode(t, "budget:", 10*time.Second).NewLimiter(cfg)
		l1, err := a.Start("token:carol", true)
		if err != nil || l1.Budget != time.Minute {
			t.Fatalf("first: %v budget %v", err, l1.Budget)
		}
		l1.End(50 * time.Second)
		l2, err := b.Start("token:carol", true)
		if err != nil || l2.Budget != 10*time.Second {
			t.Fatalf("second on another node: %v budget %v, want 10s", err, l2.Budget)
		}
		l2.End(10 * time.Second)
		if _, err := a.Start("token:carol", true); code(err) != wire.CodeBudgetExhausted {
			t.Fatalf("over budget: %v", err)
		}
		if _, err := a.Start("token:carol", false); err != nil {
			t.Fatalf("inbound calls do not use the budget: %v", err)
		}
		if used, _ := b.Used("token:carol"); used != time.Minute {
			t.Errorf("used %v, want 1m", used)
		}
	})

	t.Run("a dead node's slots expire", func(t *testing.T) {
		cfg := limits.Config{MaxConcurrent: 1}
		dead := newNode(t, "dead:", 1500*time.Millisecond).NewLimiter(cfg) // never refreshed, never ended
		if _, err := dead.Start("token:dave", false); err != nil {
			t.Fatal(err)
		}
		alive := newNode(t, "dead:", 10*time.Second).NewLimiter(cfg)
		if _, err := alive.Start("token:dave", false); code(err) != wire.CodeTooManyCalls {
			t.Fatalf("while the other node's lease lives: %v", err)
		}
		time.Sleep(1700 * time.Millisecond)
		if _, err := alive.Start("token:dave", false); err != nil {
			t.Fatalf("after the dead node's TTL: %v", err)
		}
	})

	t.Run("callers with braces stay in one slot", func(t *testing.T) {
		l := newNode(t, "tag:", 10*time.Second).NewLimiter(limits.Config{MaxConcurrent: 1, CallsPerMinute: 60, Burst: 5, DailyMinutes: 5})
		le, err := l.Start("token:{odd}%user}", true)
		if err != nil {
			t.Fatal(err)
		}
		le.End(time.Second)
	})
}
