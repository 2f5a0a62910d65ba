// Package tickets issues one-time join tickets: a random string a backend hands to a browser so that it may
// join one room in one role, once, within a short time. Tickets are kept in Redis when configured (shared by
// every Patchbay instance) or in memory. Only a SHA-256 digest of a ticket is stored, so a dump of the store
// holds nothing a browser could present.
//
// A Store implements rooms.TicketRedeemer: Redeem(ctx, ticket) (room, role string, err error).
package tickets

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/patchbay/patchbay/wire"
	"github.com/redis/go-redis/v9"
)

var (
	// ErrInvalid is returned for a ticket that is malformed, unknown, expired or already used. The cases are
	// not told apart, so a guesser learns nothing.
	ErrInvalid = errors.New("tickets: " + wire.CodeInvalidTicket + ": unknown, expired or already used; ask the backend for a new one")
	// ErrUnavailable wraps a store that cannot be reached.
	ErrUnavailable = errors.New("tickets: store unavailable")
)

// Prefix starts every ticket, so that one is recognisable in logs (which never show more than the prefix).
const Prefix = "pbt_"

// MaxTTL caps how long a ticket lives.
const MaxTTL = 10 * time.Minute

var (
	ticketRe = regexp.MustCompile(`^pbt_[A-Za-z0-9_-]{43}$`)
	fieldRe  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Grant is what a ticket admits to.
type Grant struct {
	Room string `json:"room"`
	Role string `json:"role"`
	// User is the name the browser appears as in the room; optional.
	User string `json:"user,omitempty"`
	// CallID is the API call that issued the ticket, for logs; optional.
	CallID string `json:"call_id,omitempty"`
}

// Store issues and redeems tickets.
type Store interface {
	Issue(ctx context.Context, g Grant, ttl time.Duration) (string, error)
	// Redeem returns the ticket's room and role and consumes it: a second Redeem of the same ticket fails
	// with ErrInvalid.
	Redeem(ctx context.Context, ticket string) (room, role string, err error)
	// RedeemGrant is Redeem returning the whole grant.
	RedeemGrant(ctx context.Context, ticket string) (Grant, error)
}

func newTicket() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("tickets: random source: %w", err)
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func digest(ticket string) string {
	d := sha256.Sum256([]byte(ticket))
	return hex.EncodeToString(d[:])
}

func checkIssue(g Grant, ttl time.Duration) error {
	if !fieldRe.MatchString(g.Room) {
		return fmt.Errorf("tickets: room %q must be 1-64 of A-Z a-z 0-9 _ -", g.Room)
	}
	if !fieldRe.MatchString(g.Role) {
		return fmt.Errorf("tickets: role %q must be 1-64 of A-Z a-z 0-9 _ -", g.Role)
	}
	if g.User != "" && !fieldRe.MatchString(strings.ReplaceAll(g.User, ".", "_")) {
		return fmt.Errorf("tickets: user %q must be 1-64 of A-Z a-z 0-9 . _ -", g.User)
	}
	if ttl <= 0 || ttl > MaxTTL {
		return fmt.Errorf("tickets: ttl %v must be above 0 and at most %v", ttl, MaxTTL)
	}
	return nil
}

// Memory is a Store in this process; tickets are lost on restart and not shared between instances.
type Memory struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]memEntry
}

type memEntry struct {
	g   Grant
	exp time.Time
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory { return &Memory{now: time.Now, m: map[string]memEntry{}} }

// Issue implements Store.
func (s *Memory) Issue(_ context.Context, g Grant, ttl time.Duration) (string, error) {
	if err := checkIssue(g, ttl); err != nil {
		return "", err
	}
	t, err := newTicket()
	if err != nil {
		return "", err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.m { // expired tickets go on each issue: the map stays bounded by the issue rate × TTL
		if now.After(e.exp) {
			delete(s.m, k)
		}
	}
	s.m[digest(t)] = memEntry{g: g, exp: now.Add(ttl)}
	return t, nil
}

// Redeem implements Store.
func (s *Memory) Redeem(ctx context.Context, ticket string) (string, string, error) {
	g, err := s.RedeemGrant(ctx, ticket)
	return g.Room, g.Role, err
}

// RedeemGrant implements Store.
func (s *Memory) RedeemGrant(_ context.Context, ticket string) (Grant, error) {
	if !ticketRe.MatchString(ticket) {
		return Grant{}, ErrInvalid
	}
	k := digest(ticket)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[k]
	delete(s.m, k)
	if !ok || s.now().After(e.exp) {
		return Grant{}, ErrInvalid
	}
	return e.g, nil
}

// Redis is a Store shared by every instance: one key per ticket digest, with the ticket's TTL, taken with
// GETDEL so that exactly one redemption wins even across instances.
type Redis struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedis returns a store keeping keys under prefix + "ticket:". The caller owns client (one server, a Sentinel
// master or a Redis Cluster: each ticket is one key).
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: c, prefix: prefix + "ticket:"}
}

// Issue implements Store.
func (s *Redis) Issue(ctx context.Context, g Grant, ttl time.Duration) (string, error) {
	if err := checkIssue(g, ttl); err != nil {
		return "", err
	}
	t, err := newTicket()
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(g)
	if err != nil {
		return "", fmt.Errorf("tickets: encode grant: %w", err)
	}
	if err := s.c.Set(ctx, s.prefix+digest(t), b, ttl).Err(); err != nil {
		return "", fmt.Errorf("%w: store ticket in Redis: %w (is redis.addr reachable?)", ErrUnavailable, err)
	}
	return t, nil
}

// Redeem implements Store.
func (s *Redis) Redeem(ctx context.Context, ticket string) (string, string, error) {
	g, err := s.RedeemGrant(ctx, ticket)
	return g.Room, g.Role, err
}

// RedeemGrant implements Store.
func (s *Redis) RedeemGrant(ctx context.Context, ticket string) (Grant, error) {
	if !ticketRe.MatchString(ticket) {
		return Grant{}, ErrInvalid
	}
	b, err := s.c.GetDel(ctx, s.prefix+digest(ticket)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Grant{}, ErrInvalid
	}
	if err != nil {
		return Grant{}, fmt.Errorf("%w: redeem ticket in Redis: %w (is redis.addr reachable?)", ErrUnavailable, err)
	}
	var g Grant
	if err := json.Unmarshal(b, &g); err != nil {
		return Grant{}, fmt.Errorf("tickets: stored grant is corrupt: %w", err)
	}
	return g, nil
}

// Redact returns what of a ticket may be logged.
func Redact(ticket string) string {
	if strings.HasPrefix(ticket, Prefix) && len(ticket) > len(Prefix)+4 {
		return ticket[:len(Prefix)+4] + "…"
	}
	return "(malformed)"
}
