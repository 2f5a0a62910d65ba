package tickets

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func stores(t *testing.T) map[string]Store {
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { c.Close() })
	return map[string]Store{"memory": NewMemory(), "redis": NewRedis(c, "pb:")}
}

func TestSingleUse(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			tk, err := s.Issue(ctx, Grant{Room: "r1", Role: "guest"}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			room, role, err := s.Redeem(ctx, tk)
			if err != nil || room != "r1" || role != "guest" {
				t.Fatalf("redeem: %q %q %v", room, role, err)
			}
			if _, _, err := s.Redeem(ctx, tk); !errors.Is(err, ErrInvalid) {
				t.Fatalf("second redeem: %v, want ErrInvalid", err)
			}
			for _, bad := range []string{"", "pbt_", "x", tk + "x", "pbt_" + string(make([]byte, 43))} {
				if _, _, err := s.Redeem(ctx, bad); !errors.Is(err, ErrInvalid) {
					t.Errorf("redeem %q: %v", bad, err)
				}
			}
		})
	}
}

func TestConcurrentRedeemOnlyOneWins(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			tk, err := s.Issue(ctx, Grant{Room: "r1", Role: "guest"}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			var wins atomic.Int32
			var wg sync.WaitGroup
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, _, err := s.Redeem(ctx, tk); err == nil {
						wins.Add(1)
					}
				}()
			}
			wg.Wait()
			if wins.Load() != 1 {
				t.Fatalf("%d redemptions succeeded, want 1", wins.Load())
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	m := NewMemory()
	now := time.Now()
	m.now = func() time.Time { return now }
	tk, err := m.Issue(context.Background(), Grant{Room: "r", Role: "guest"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if _, _, err := m.Redeem(context.Background(), tk); !errors.Is(err, ErrInvalid) {
		t.Fatalf("expired ticket: %v", err)
	}
}

func TestIssueValidates(t *testing.T) {
	m := NewMemory()
	for _, g := range []Grant{{Room: "", Role: "x"}, {Room: "a b", Role: "x"}, {Room: "r", Role: ""}} {
		if _, err := m.Issue(context.Background(), g, time.Minute); err == nil {
			t.Errorf("issue %+v: no error", g)
		}
	}
	if _, err := m.Issue(context.Background(), Grant{Room: "r", Role: "x"}, time.Hour); err == nil {
		t.Error("ttl above MaxTTL accepted")
	}
}
