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

// TestBoundTickets: a ticket bound to a user or a caller admits only that identity; anyone else is refused with
// invalid_ticket and the ticket stays valid for its owner; a ticket on a number is presented by calling it.
func TestBoundTickets(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			tk, err := s.Issue(ctx, Grant{Room: "r1", Role: "customer", ForUser: "cust-1"}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			for _, who := range []Identity{{}, {User: "cust-2"}, {Caller: "555"}} {
				if _, err := s.RedeemFor(ctx, tk, who); !errors.Is(err, ErrWrongIdentity) || !errors.Is(err, ErrInvalid) {
					t.Errorf("user-bound ticket presented by %v: %v, want ErrWrongIdentity", who, err)
				}
			}
			if g, err := s.RedeemFor(ctx, tk, Identity{User: "cust-1"}); err != nil || g.Room != "r1" {
				t.Fatalf("owner: %+v %v", g, err)
			}
			if _, err := s.RedeemFor(ctx, tk, Identity{User: "cust-1"}); !errors.Is(err, ErrInvalid) {
				t.Errorf("second use: %v", err)
			}

			tk, err = s.Issue(ctx, Grant{Room: "r2", Role: "customer", ForCaller: "555", Number: "+442079460123"}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.RedeemByNumber(ctx, "+44 20 7946 0123", Identity{Caller: "556"}); !errors.Is(err, ErrWrongIdentity) {
				t.Errorf("caller 556 on the number: %v, want ErrWrongIdentity", err)
			}
			if _, err := s.RedeemFor(ctx, tk, Identity{User: "mallory"}); !errors.Is(err, ErrWrongIdentity) {
				t.Errorf("a browser presenting a caller-bound ticket: %v", err)
			}
			if _, err := s.RedeemByNumber(ctx, "+442079460999", Identity{Caller: "555"}); !errors.Is(err, ErrNoTicket) {
				t.Errorf("another number: %v, want ErrNoTicket", err)
			}
			g, err := s.RedeemByNumber(ctx, "+442079460123", Identity{Caller: "555"})
			if err != nil || g.Room != "r2" {
				t.Fatalf("caller 555: %+v %v", g, err)
			}
			if _, err := s.RedeemByNumber(ctx, "+442079460123", Identity{Caller: "555"}); !errors.Is(err, ErrNoTicket) {
				t.Errorf("number after use: %v, want ErrNoTicket", err)
			}
			if _, err := s.RedeemFor(ctx, tk, Identity{Caller: "555"}); !errors.Is(err, ErrInvalid) {
				t.Errorf("ticket after use by number: %v", err)
			}
		})
	}
}

// TestNewerTicketOnNumberStays: redeeming a ticket that was attached to a number leaves the number to the newer
// ticket attached to it since.
func TestNewerTicketOnNumberStays(t *testing.T) {
	ctx := context.Background()
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			old, err := s.Issue(ctx, Grant{Room: "r1", Role: "customer", ForCaller: "555", Number: "+442079460123"}, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Issue(ctx, Grant{Room: "r2", Role: "customer", ForCaller: "555", Number: "+442079460123"}, time.Minute); err != nil {
				t.Fatal(err)
			}
			if _, err := s.RedeemFor(ctx, old, Identity{Caller: "555"}); err != nil {
				t.Fatalf("the older ticket: %v", err)
			}
			if g, err := s.RedeemByNumber(ctx, "+442079460123", Identity{Caller: "555"}); err != nil || g.Room != "r2" {
				t.Errorf("the number after the older ticket's use: %+v %v, want the newer ticket (r2)", g, err)
			}
		})
	}
}

func TestIssueBindingValidates(t *testing.T) {
	m := NewMemory()
	for _, g := range []Grant{
		{Room: "r", Role: "x", Number: "+442079460123"},                  // a number without a caller: anyone could call
		{Room: "r", Role: "x", ForUser: "a", ForCaller: "555"},           // both
		{Room: "r", Role: "x", ForCaller: "555", Number: "not a number"}, // bad number
		{Room: "r", Role: "x", ForUser: "bad user!"},                     // bad user
	} {
		if _, err := m.Issue(context.Background(), g, time.Minute); err == nil {
			t.Errorf("issue %+v: no error", g)
		}
	}
}

func TestSameCaller(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"555", "555", true}, {"555", "556", false}, {"+442079460000", "+44 20 7946 0000", true}, {"", "", false}, {"555", "", false},
	} {
		if got := SameCaller(tc.a, tc.b); got != tc.want {
			t.Errorf("SameCaller(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}
