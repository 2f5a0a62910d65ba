package limits

import (
	"errors"
	"testing"
	"time"

	"github.com/patchbay/patchbay/wire"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func code(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Code
	}
	return ""
}

func TestRate(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	l := New(Config{CallsPerMinute: 2, Burst: 2})
	l.now = c.now
	for i := range 2 {
		le, err := l.Start("k", false)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		le.End(0)
	}
	if _, err := l.Start("k", false); code(err) != wire.CodeCallRateLimited || !errors.Is(err, ErrRefused) {
		t.Fatalf("third call: %v, want %s", err, wire.CodeCallRateLimited)
	}
	if _, err := l.Start("other", false); err != nil {
		t.Fatalf("another key is limited separately: %v", err)
	}
	c.t = c.t.Add(31 * time.Second)
	if _, err := l.Start("k", false); err != nil {
		t.Fatalf("after 31 s one token is back: %v", err)
	}
}

func TestConcurrency(t *testing.T) {
	l := New(Config{MaxConcurrent: 1})
	a, err := l.Start("k", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Start("k", false); code(err) != wire.CodeTooManyCalls {
		t.Fatalf("second concurrent: %v", err)
	}
	a.End(0)
	a.End(0) // idempotent: must not free a second slot
	b, err := l.Start("k", false)
	if err != nil {
		t.Fatalf("after End: %v", err)
	}
	if _, err := l.Start("k", false); code(err) != wire.CodeTooManyCalls {
		t.Fatalf("double End freed two slots: %v", err)
	}
	b.End(0)
}

func TestBudget(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 23, 0, 0, 0, time.UTC)}
	l := New(Config{DailyMinutes: 2})
	l.now = c.now
	a, err := l.Start("k", true)
	if err != nil || a.Budget != 2*time.Minute {
		t.Fatalf("first: %v budget %v", err, a.Budget)
	}
	a.End(90 * time.Second)
	b, err := l.Start("k", true)
	if err != nil || b.Budget != 30*time.Second {
		t.Fatalf("second: %v budget %v", err, b.Budget)
	}
	b.End(30 * time.Second)
	if _, err := l.Start("k", true); code(err) != wire.CodeBudgetExhausted {
		t.Fatalf("over budget: %v", err)
	}
	if _, err := l.Start("k", false); err != nil {
		t.Fatalf("inbound calls do not use the budget: %v", err)
	}
	c.t = c.t.Add(2 * time.Hour) // next UTC day
	if _, err := l.Start("k", true); err != nil {
		t.Fatalf("budget renews daily: %v", err)
	}
}

func TestNilLimiterAdmits(t *testing.T) {
	var l *Limiter
	le, err := l.Start("k", true)
	if err != nil {
		t.Fatal(err)
	}
	le.End(time.Minute)
}

func TestOnRefuse(t *testing.T) {
	var codes []string
	l := New(Config{MaxConcurrent: 1, OnRefuse: func(code string) { codes = append(codes, code) }})
	if _, err := l.Start("k", false); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Start("k", false); err == nil {
		t.Fatal("second call admitted")
	}
	if len(codes) != 1 || codes[0] != wire.CodeTooManyCalls {
		t.Errorf("OnRefuse heard %v", codes)
	}
}
