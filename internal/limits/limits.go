// Package limits holds per-caller call limits: a call rate (token bucket), a number of concurrent calls and a
// daily budget of outbound minutes. A caller is a string key such as "token:alice", "apikey:crm" or "phone:101".
// Refusals are *Refusal values with stable codes that the signalling protocol and the REST API share.
package limits

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patchbay/patchbay/wire"
)

// Config is one set of limits. A zero field means "no limit" for that dimension.
type Config struct {
	// CallsPerMinute is the sustained rate of new calls; Burst how many may start at once (default 1 when a
	// rate is set).
	CallsPerMinute float64
	Burst          int
	// MaxConcurrent bounds calls in progress at the same time.
	MaxConcurrent int
	// DailyMinutes is the budget of outbound call minutes per UTC day. Only calls started with Outbound count.
	DailyMinutes int
	// OnRefuse, if set, hears the code of every refusal (metrics); it must return at once.
	OnRefuse func(code string)
}

// Refusal says why a call was not allowed. Code is one of the Code* constants.
type Refusal struct {
	Code    string
	Message string
}

func (r *Refusal) Error() string { return "limits: " + r.Code + ": " + r.Message }

// ErrRefused matches every *Refusal with errors.Is.
var ErrRefused = errors.New("limits: call refused")

// Is lets errors.Is(err, ErrRefused) work.
func (r *Refusal) Is(target error) bool { return target == ErrRefused }

// Limiter applies one Config to many keys. It is safe for concurrent use. State lives in this process (New), or in
// Redis shared by every node of a cluster (NewShared, shared.go), behind the same Start and Lease.End.
type Limiter struct {
	cfg    Config
	now    func() time.Time
	shared *Shared // nil: state in this process

	mu     sync.Mutex
	keys   map[string]*state
	pruned time.Time
}

type state struct {
	tokens  float64
	last    time.Time
	active  int
	day     string // UTC date of used
	used    time.Duration
	touched time.Time
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	if cfg.CallsPerMinute > 0 && cfg.Burst <= 0 {
		cfg.Burst = 1
	}
	return &Limiter{cfg: cfg, now: time.Now, keys: map[string]*state{}}
}

// Config returns the limits in force.
func (l *Limiter) Config() Config {
	if l == nil {
		return Config{}
	}
	return l.cfg
}

// Lease is one admitted call. End must be called once when the call ends; later calls do nothing.
type Lease struct {
	l        *Limiter
	key      string
	outbound bool
	once     sync.Once
	// Budget is how long this call may last before today's minutes run out; 0 means no budget applies.
	Budget time.Duration
	// Shared leases: the member of the caller's set of calls in progress, and whether it has ended (shared.go).
	id    string
	ended atomic.Bool
}

// End releases the call's slot and, for outbound calls, charges talked against today's budget.
func (l *Lease) End(talked time.Duration) {
	if l == nil || l.l == nil {
		return
	}
	l.once.Do(func() {
		if l.l.shared != nil {
			l.l.shared.end(l, talked)
			return
		}
		l.l.end(l.key, l.outbound, talked)
	})
}

// Start admits a new call for key or returns a *Refusal. Outbound calls are also held to the daily budget.
// A nil Limiter admits everything. A shared limiter whose Redis cannot be reached refuses with unavailable.
func (l *Limiter) Start(key string, outbound bool) (*Lease, error) {
	return l.StartContext(context.Background(), key, outbound)
}

// StartContext is Start bounded by ctx (a shared limiter waits on Redis).
func (l *Limiter) StartContext(ctx context.Context, key string, outbound bool) (*Lease, error) {
	if l == nil {
		return &Lease{}, nil
	}
	var lease *Lease
	var err error
	if l.shared != nil {
		lease, err = l.shared.start(ctx, l, key, outbound)
	} else {
		lease, err = l.start(key, outbound)
	}
	var r *Refusal
	if l.cfg.OnRefuse != nil && errors.As(err, &r) && r.Code != wire.CodeUnavailable {
		l.cfg.OnRefuse(r.Code)
	}
	return lease, err
}

func (l *Limiter) start(key string, outbound bool) (*Lease, error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	s := l.keys[key]
	if s == nil {
		s = &state{tokens: float64(l.cfg.Burst), last: now}
		l.keys[key] = s
	}
	s.touched = now
	if l.cfg.MaxConcurrent > 0 && s.active >= l.cfg.MaxConcurrent {
		return nil, &Refusal{Code: wire.CodeTooManyCalls, Message: fmt.Sprintf("%d calls already in progress, the most allowed; end one first", s.active)}
	}
	var budget time.Duration
	if outbound && l.cfg.DailyMinutes > 0 {
		day := now.UTC().Format(time.DateOnly)
		if s.day != day {
			s.day, s.used = day, 0
		}
		budget = time.Duration(l.cfg.DailyMinutes)*time.Minute - s.used
		if budget <= 0 {
			return nil, &Refusal{Code: wire.CodeBudgetExhausted, Message: fmt.Sprintf("the daily budget of %d outbound minutes is used up; it renews at 00:00 UTC", l.cfg.DailyMinutes)}
		}
	}
	if l.cfg.CallsPerMinute > 0 {
		s.tokens += now.Sub(s.last).Minutes() * l.cfg.CallsPerMinute
		if max := float64(l.cfg.Burst); s.tokens > max {
			s.tokens = max
		}
		s.last = now
		if s.tokens < 1 {
			wait := time.Duration((1 - s.tokens) / l.cfg.CallsPerMinute * float64(time.Minute))
			return nil, &Refusal{Code: wire.CodeCallRateLimited, Message: fmt.Sprintf("more than %g new calls per minute; retry in %v", l.cfg.CallsPerMinute, wait.Round(time.Second))}
		}
		s.tokens--
	}
	s.active++
	return &Lease{l: l, key: key, outbound: outbound, Budget: budget}, nil
}

func (l *Limiter) end(key string, outbound bool, talked time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.keys[key]
	if s == nil {
		return
	}
	s.touched = now
	if s.active > 0 {
		s.active--
	}
	if outbound && l.cfg.DailyMinutes > 0 && talked > 0 {
		day := now.UTC().Format(time.DateOnly)
		if s.day != day {
			s.day, s.used = day, 0
		}
		s.used += talked
	}
}

// Used reports today's outbound minutes used by key and its calls in progress.
func (l *Limiter) Used(key string) (used time.Duration, active int) {
	if l == nil {
		return 0, 0
	}
	if l.shared != nil {
		return l.shared.used(context.Background(), key, l.now())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.keys[key]
	if s == nil {
		return 0, 0
	}
	if s.day == l.now().UTC().Format(time.DateOnly) {
		used = s.used
	}
	return used, s.active
}

// prune forgets idle keys (no calls, bucket full, no budget used today) so that many distinct callers cannot
// grow the map without bound. Called with mu held.
func (l *Limiter) prune(now time.Time) {
	if now.Sub(l.pruned) < time.Minute {
		return
	}
	l.pruned = now
	today := now.UTC().Format(time.DateOnly)
	for k, s := range l.keys {
		if s.active == 0 && now.Sub(s.touched) > 10*time.Minute && (s.day != today || s.used == 0) {
			delete(l.keys, k)
		}
	}
}
