// Package tickets issues one-time join tickets: a random string a backend hands to a browser so that it may
// join one room in one role, once, within a short time. Tickets are kept in Redis when configured (shared by
// every Patchbay instance) or in memory. Only a SHA-256 digest of a ticket is stored, so a dump of the store
// holds nothing a browser could present.
//
// A ticket may be bound to an identity: a browser user (the token's subject must match) or a caller (a phone whose
// caller ID matches). A ticket bound to a caller can also be attached to a number: a phone that calls the number
// presents it. A ticket presented by anyone else is refused with invalid_ticket and stays valid for its owner.
//
// A Store implements rooms.TicketRedeemer.
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

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/wire"
	"github.com/redis/go-redis/v9"
)

var (
	// ErrInvalid is returned for a ticket that is malformed, unknown, expired or already used. The cases are
	// not told apart, so a guesser learns nothing.
	ErrInvalid = errors.New("tickets: " + wire.CodeInvalidTicket + ": unknown, expired or already used; ask the backend for a new one")
	// ErrUnavailable wraps a store that cannot be reached.
	ErrUnavailable = errors.New("tickets: store unavailable")
	// ErrWrongIdentity is a valid ticket presented by someone it is not bound to. It matches ErrInvalid too (the
	// presenter is told no more); the ticket is not consumed.
	ErrWrongIdentity = fmt.Errorf("%w (bound to another user or caller)", ErrInvalid)
	// ErrNoTicket: no ticket is attached to the number called.
	ErrNoTicket = errors.New("tickets: no ticket for this number")
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
	// ForUser binds the ticket to a browser user: only a token with this subject may redeem it.
	ForUser string `json:"for_user,omitempty"`
	// ForCaller binds the ticket to a caller: only a phone presenting this caller ID may redeem it (browsers never).
	ForCaller string `json:"for_caller,omitempty"`
	// Number, with ForCaller, attaches the ticket to a number: calling it presents the ticket.
	Number string `json:"number,omitempty"`
}

// Identity is who presents a ticket: a browser user (token subject) or a phone's caller ID.
type Identity struct {
	User   string
	Caller string
}

func (i Identity) String() string {
	if i.Caller != "" {
		return "caller " + i.Caller
	}
	return "user " + i.User
}

// Admits reports whether the grant may be redeemed by who.
func (g Grant) Admits(who Identity) bool {
	if g.ForUser != "" && g.ForUser != who.User {
		return false
	}
	if g.ForCaller != "" && !SameCaller(g.ForCaller, who.Caller) {
		return false
	}
	return true
}

// SameCaller compares two caller IDs as numbers: "+44 20 7946 0000" and "+442079460000" are the same caller. An
// empty caller ID matches nothing.
func SameCaller(a, b string) bool {
	na, nb := normNumber(a), normNumber(b)
	return na != "" && na == nb
}

func normNumber(s string) string {
	if n, err := dialplan.NormalizeNumber(s); err == nil {
		return n
	}
	return strings.TrimSpace(s)
}

// Store issues and redeems tickets.
type Store interface {
	Issue(ctx context.Context, g Grant, ttl time.Duration) (string, error)
	// Redeem returns the ticket's room and role and consumes it: a second Redeem of the same ticket fails
	// with ErrInvalid. A ticket bound to an identity is refused (use RedeemFor).
	Redeem(ctx context.Context, ticket string) (room, role string, err error)
	// RedeemGrant is Redeem returning the whole grant.
	RedeemGrant(ctx context.Context, ticket string) (Grant, error)
	// RedeemFor consumes the ticket if it admits who; a ticket bound to someone else gives ErrWrongIdentity and
	// stays valid.
	RedeemFor(ctx context.Context, ticket string, who Identity) (Grant, error)
	// RedeemByNumber consumes the ticket attached to number if it admits who (ErrWrongIdentity otherwise, the
	// ticket staying valid); ErrNoTicket when the number has none.
	RedeemByNumber(ctx context.Context, number string, who Identity) (Grant, error)
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

// CheckUser says whether name may be a ticket's user (the name its holder appears as in the room): 1-64 of
// A-Z a-z 0-9 . _ -. The API checks it first, so a bad name is the client's mistake, not a store failure.
func CheckUser(name string) error {
	if !fieldRe.MatchString(strings.ReplaceAll(name, ".", "_")) {
		return fmt.Errorf("tickets: user %q must be 1-64 of A-Z a-z 0-9 . _ -", name)
	}
	return nil
}

func checkIssue(g Grant, ttl time.Duration) error {
	if !fieldRe.MatchString(g.Room) {
		return fmt.Errorf("tickets: room %q must be 1-64 of A-Z a-z 0-9 _ -", g.Room)
	}
	if !fieldRe.MatchString(g.Role) {
		return fmt.Errorf("tickets: role %q must be 1-64 of A-Z a-z 0-9 _ -", g.Role)
	}
	if g.User != "" {
		if err := CheckUser(g.User); err != nil {
			return err
		}
	}
	if ttl <= 0 || ttl > MaxTTL {
		return fmt.Errorf("tickets: ttl %v must be above 0 and at most %v", ttl, MaxTTL)
	}
	if g.ForUser != "" && !fieldRe.MatchString(strings.ReplaceAll(g.ForUser, ".", "_")) {
		return fmt.Errorf("tickets: for_user %q must be 1-64 of A-Z a-z 0-9 . _ -", g.ForUser)
	}
	if g.ForCaller != "" && normNumber(g.ForCaller) == "" {
		return fmt.Errorf("tickets: for_caller %q is not a number", g.ForCaller)
	}
	if g.ForUser != "" && g.ForCaller != "" {
		return errors.New("tickets: bind a ticket to a user or to a caller, not both")
	}
	if g.Number != "" {
		if g.ForCaller == "" {
			return errors.New("tickets: a ticket attached to a number must be bound to a caller (for_caller): anyone may call a number")
		}
		if _, err := dialplan.NormalizeNumber(g.Number); err != nil {
			return fmt.Errorf("tickets: number: %w", err)
		}
	}
	return nil
}

// Memory is a Store in this process; tickets are lost on restart and not shared between instances.
type Memory struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]memEntry
	num map[string]string // normalized number → digest of the ticket attached to it
}

type memEntry struct {
	g   Grant
	exp time.Time
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{now: time.Now, m: map[string]memEntry{}, num: map[string]string{}}
}

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
	for n, d := range s.num {
		if _, ok := s.m[d]; !ok {
			delete(s.num, n)
		}
	}
	d := digest(t)
	s.m[d] = memEntry{g: g, exp: now.Add(ttl)}
	if g.Number != "" {
		s.num[normNumber(g.Number)] = d // the newest ticket on a number replaces an older one
	}
	return t, nil
}

// Redeem implements Store.
func (s *Memory) Redeem(ctx context.Context, ticket string) (string, string, error) {
	g, err := s.RedeemFor(ctx, ticket, Identity{})
	return g.Room, g.Role, err
}

// RedeemGrant implements Store.
func (s *Memory) RedeemGrant(ctx context.Context, ticket string) (Grant, error) {
	return s.RedeemFor(ctx, ticket, Identity{})
}

// RedeemFor implements Store.
func (s *Memory) RedeemFor(_ context.Context, ticket string, who Identity) (Grant, error) {
	if !ticketRe.MatchString(ticket) {
		return Grant{}, ErrInvalid
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeLocked(digest(ticket), who)
}

// RedeemByNumber implements Store.
func (s *Memory) RedeemByNumber(_ context.Context, number string, who Identity) (Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.num[normNumber(number)]
	if !ok {
		return Grant{}, ErrNoTicket
	}
	g, err := s.takeLocked(d, who)
	if errors.Is(err, ErrInvalid) && !errors.Is(err, ErrWrongIdentity) {
		return Grant{}, ErrNoTicket // expired or used meanwhile
	}
	return g, err
}

func (s *Memory) takeLocked(d string, who Identity) (Grant, error) {
	e, ok := s.m[d]
	if !ok || s.now().After(e.exp) {
		delete(s.m, d)
		return Grant{}, ErrInvalid
	}
	if !e.g.Admits(who) {
		return Grant{}, ErrWrongIdentity
	}
	delete(s.m, d)
	if e.g.Number != "" && s.num[normNumber(e.g.Number)] == d {
		delete(s.num, normNumber(e.g.Number))
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
	d := digest(t)
	if err := s.c.Set(ctx, s.prefix+d, b, ttl).Err(); err != nil {
		return "", fmt.Errorf("%w: store ticket in Redis: %w (is redis.addr reachable?)", ErrUnavailable, err)
	}
	if g.Number != "" {
		if err := s.c.Set(ctx, s.numKey(g.Number), d, ttl).Err(); err != nil {
			return "", fmt.Errorf("%w: attach ticket to number in Redis: %w (is redis.addr reachable?)", ErrUnavailable, err)
		}
	}
	return t, nil
}

func (s *Redis) numKey(number string) string { return s.prefix + "number:" + normNumber(number) }

// Redeem implements Store.
func (s *Redis) Redeem(ctx context.Context, ticket string) (string, string, error) {
	g, err := s.RedeemFor(ctx, ticket, Identity{})
	return g.Room, g.Role, err
}

// RedeemGrant implements Store.
func (s *Redis) RedeemGrant(ctx context.Context, ticket string) (Grant, error) {
	return s.RedeemFor(ctx, ticket, Identity{})
}

// RedeemFor implements Store. The grant is read, checked against who, then taken with GETDEL: exactly one
// redemption wins even across instances, and a presenter it is not bound to consumes nothing.
func (s *Redis) RedeemFor(ctx context.Context, ticket string, who Identity) (Grant, error) {
	if !ticketRe.MatchString(ticket) {
		return Grant{}, ErrInvalid
	}
	return s.take(ctx, digest(ticket), who)
}

// RedeemByNumber implements Store.
func (s *Redis) RedeemByNumber(ctx context.Context, number string, who Identity) (Grant, error) {
	d, err := s.c.Get(ctx, s.numKey(number)).Result()
	if errors.Is(err, redis.Nil) {
		return Grant{}, ErrNoTicket
	}
	if err != nil {
		return Grant{}, fmt.Errorf("%w: look up the ticket of a number in Redis: %w (is redis.addr reachable?)", ErrUnavailable, err)
	}
	g, err := s.take(ctx, d, who)
	if errors.Is(err, ErrInvalid) && !errors.Is(err, ErrWrongIdentity) {
		return Grant{}, ErrNoTicket
	}
	return g, err
}

func (s *Redis) take(ctx context.Context, d string, who Identity) (Grant, error) {
	key := s.prefix + d
	b, err := s.c.Get(ctx, key).Bytes()
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
	if !g.Admits(who) {
		return Grant{}, ErrWrongIdentity
	}
	if err := s.c.GetDel(ctx, key).Err(); errors.Is(err, redis.Nil) {
		return Grant{}, ErrInvalid // another redemption won
	} else if err != nil {
		return Grant{}, fmt.Errorf("%w: redeem ticket in Redis: %w (is redis.addr reachable?)", ErrUnavailable, err)
	}
	if g.Number != "" {
		// Only if it still points at this ticket, in one step: a newer ticket attached to the number meanwhile stays.
		_ = delIfScript.Run(ctx, s.c, []string{s.numKey(g.Number)}, d).Err()
	}
	return g, nil
}

// delIfScript deletes KEYS[1] if it holds ARGV[1].
var delIfScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// Redact returns what of a ticket may be logged.
func Redact(ticket string) string {
	if strings.HasPrefix(ticket, Prefix) && len(ticket) > len(Prefix)+4 {
		return ticket[:len(Prefix)+4] + "…"
	}
	return "(malformed)"
}
