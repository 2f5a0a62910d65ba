package limits

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/patchbay/patchbay/wire"
)

// Shared keeps limits state in Redis, so that every node of a cluster enforces one limit per caller: two nodes can
// never both admit a caller's last slot. Per caller (key) there are three keys, all carrying the caller as a Redis
// Cluster hash tag ({token:alice}) so they share a slot and one Lua script checks and takes them atomically:
//
//	lim:{K}:active    sorted set of calls in progress, each scored by an expiry its node's heartbeat pushes on
//	lim:{K}:bucket    the token bucket of the call rate (tokens, last refill)
//	lim:{K}:day:DATE  outbound milliseconds talked that UTC day
//
// Times come from the Redis server's clock. A node that dies stops refreshing its calls, which drop out of the
// count within the TTL. Redis down: Start refuses with unavailable; calls already admitted go on, and End, if it
// cannot reach Redis, leaves the slot to expire.
type Shared struct {
	c      redis.UniversalClient
	prefix string
	ttl    time.Duration
	log    *slog.Logger

	mu   sync.Mutex
	live map[*Lease]struct{} // leases whose slots this node keeps alive
}

// NewShared returns the shared state under prefix (redis.prefix), with leases kept alive for ttl past their last
// refresh (cluster.ttl). Run refreshes them.
func NewShared(c redis.UniversalClient, prefix string, ttl time.Duration, log *slog.Logger) *Shared {
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	return &Shared{c: c, prefix: prefix, ttl: ttl, log: log, live: map[*Lease]struct{}{}}
}

// NewShared returns a Limiter for cfg whose state lives in s.
func (s *Shared) NewLimiter(cfg Config) *Limiter {
	l := New(cfg)
	l.shared = s
	return l
}

// Run refreshes this node's leases every third of the TTL until ctx ends.
func (s *Shared) Run(ctx context.Context) {
	t := time.NewTicker(s.ttl / 3)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, s.ttl/3)
		err := s.refresh(rctx)
		cancel()
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			s.log.Warn("refresh call-limit slots in Redis failed; they expire after the TTL if this lasts", "ttl", s.ttl, "err", err)
		case err == nil && failing:
			failing = false
			s.log.Info("call-limit slots refreshed again")
		}
	}
}

// tag makes the caller a hash tag; braces in it would end the tag early and are escaped.
func tag(key string) string {
	if strings.ContainsAny(key, "{}%") {
		key = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D").Replace(key)
	}
	return "{" + key + "}"
}

func (s *Shared) activeKey(key string) string { return s.prefix + "lim:" + tag(key) + ":active" }
func (s *Shared) bucketKey(key string) string { return s.prefix + "lim:" + tag(key) + ":bucket" }
func (s *Shared) dayKey(key string, now time.Time) string {
	return s.prefix + "lim:" + tag(key) + ":day:" + now.UTC().Format(time.DateOnly)
}

const nowMillis = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// admitScript checks, in order, concurrency, the daily budget and the rate, and takes a slot only if all pass.
// KEYS: active, bucket, day. ARGV: lease id, ttl ms, max concurrent, rate per ms, burst, budget ms, outbound.
// Returns {0, budget ms left or -1} or {1 too many, in progress} {2 budget used up, 0} {3 rate, wait ms}.
var admitScript = redis.NewScript(nowMillis + `
local ttl = tonumber(ARGV[2])
local maxc = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if maxc > 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= maxc then return {1, n} end
end
local budget = -1
if ARGV[7] == '1' and tonumber(ARGV[6]) > 0 then
  budget = tonumber(ARGV[6]) - tonumber(redis.call('GET', KEYS[3]) or '0')
  if budget <= 0 then return {2, 0} end
end
local rate = tonumber(ARGV[4])
if rate > 0 then
  local burst = tonumber(ARGV[5])
  local b = redis.call('HMGET', KEYS[2], 'tokens', 'last')
  local tokens = tonumber(b[1]) or burst
  local last = tonumber(b[2]) or now
  if now > last then tokens = math.min(burst, tokens + (now - last) * rate) end
  if tokens < 1 then return {3, math.ceil((1 - tokens) / rate)} end
  redis.call('HSET', KEYS[2], 'tokens', tostring(tokens - 1), 'last', tostring(now))
  redis.call('PEXPIRE', KEYS[2], math.ceil(burst / rate) + 60000)
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return {0, budget}`)

// endScript frees a slot and charges the talk time. KEYS: active, day. ARGV: lease id, talked ms.
var endScript = redis.NewScript(`
redis.call('ZREM', KEYS[1], ARGV[1])
local talked = tonumber(ARGV[2])
if talked > 0 then
  redis.call('INCRBY', KEYS[2], talked)
  redis.call('PEXPIRE', KEYS[2], 172800000)
end
return 1`)

// refreshScript pushes a slot's expiry on (and puts it back if a failover lost it). KEYS: active. ARGV: id, ttl ms.
var refreshScript = redis.NewScript(nowMillis + `
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1`)

var usedScript = redis.NewScript(nowMillis + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return {redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}`)

func (s *Shared) start(ctx context.Context, l *Limiter, key string, outbound bool) (*Lease, error) {
	cfg := l.cfg
	var id [12]byte
	_, _ = rand.Read(id[:])
	lease := &Lease{l: l, key: key, outbound: outbound, id: hex.EncodeToString(id[:])}
	ob := "0"
	if outbound {
		ob = "1"
	}
	rate := cfg.CallsPerMinute / 60000 // tokens per ms
	budget := int64(cfg.DailyMinutes) * time.Minute.Milliseconds()
	res, err := admitScript.Run(ctx, s.c, []string{s.activeKey(key), s.bucketKey(key), s.dayKey(key, l.now())},
		lease.id, s.ttl.Milliseconds(), cfg.MaxConcurrent, strconv.FormatFloat(rate, 'g', -1, 64), cfg.Burst, budget, ob).Int64Slice()
	if err != nil {
		s.log.Warn("call limits cannot be checked: Redis unavailable", "key", key, "err", err)
		return nil, &Refusal{Code: wire.CodeUnavailable, Message: "call limits cannot be checked right now (the shared store is unavailable); try again shortly"}
	}
	if len(res) != 2 {
		return nil, fmt.Errorf("limits: unexpected reply from Redis: %v", res)
	}
	switch res[0] {
	case 1:
		return nil, &Refusal{Code: wire.CodeTooManyCalls, Message: fmt.Sprintf("%d calls already in progress, the most allowed; end one first", res[1])}
	case 2:
		return nil, &Refusal{Code: wire.CodeBudgetExhausted, Message: fmt.Sprintf("the daily budget of %d outbound minutes is used up; it renews at 00:00 UTC", cfg.DailyMinutes)}
	case 3:
		wait := time.Duration(res[1]) * time.Millisecond
		return nil, &Refusal{Code: wire.CodeCallRateLimited, Message: fmt.Sprintf("more than %g new calls per minute; retry in %v", cfg.CallsPerMinute, wait.Round(time.Second))}
	}
	if res[1] >= 0 {
		lease.Budget = time.Duration(res[1]) * time.Millisecond
	}
	s.mu.Lock()
	s.live[lease] = struct{}{}
	s.mu.Unlock()
	return lease, nil
}

func (s *Shared) end(lease *Lease, talked time.Duration) {
	lease.ended.Store(true)
	s.mu.Lock()
	delete(s.live, lease)
	s.mu.Unlock()
	ms := int64(0)
	if lease.outbound && lease.l.cfg.DailyMinutes > 0 && talked > 0 {
		ms = talked.Milliseconds()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := endScript.Run(ctx, s.c, []string{s.activeKey(lease.key), s.dayKey(lease.key, lease.l.now())}, lease.id, ms).Err()
	if err != nil {
		s.log.Warn("free a call-limit slot in Redis failed: it expires within the TTL; talk time not charged",
			"key", lease.key, "ttl", s.ttl, "talked", talked.Round(time.Second), "err", err)
	}
}

// refresh pushes on the expiry of every live lease. A lease that ends while its refresh is in flight could be put
// back after its End removed it: such leases are removed again once the refresh is done.
func (s *Shared) refresh(ctx context.Context) error {
	s.mu.Lock()
	leases := make([]*Lease, 0, len(s.live))
	for l := range s.live {
		leases = append(leases, l)
	}
	s.mu.Unlock()
	if len(leases) == 0 {
		return nil
	}
	ttl := s.ttl.Milliseconds()
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, l := range leases {
			refreshScript.Eval(ctx, p, []string{s.activeKey(l.key)}, l.id, ttl)
		}
		return nil
	})
	var undo []*Lease
	for _, l := range leases {
		if l.ended.Load() {
			undo = append(undo, l)
		}
	}
	if len(undo) > 0 {
		_, uerr := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, l := range undo {
				p.ZRem(ctx, s.activeKey(l.key), l.id)
			}
			return nil
		})
		err = errors.Join(err, uerr)
	}
	return err
}

func (s *Shared) used(ctx context.Context, key string, now time.Time) (time.Duration, int) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	res, err := usedScript.Run(ctx, s.c, []string{s.activeKey(key), s.dayKey(key, now)}).Int64Slice()
	if err != nil || len(res) != 2 {
		return 0, 0
	}
	return time.Duration(res[1]) * time.Millisecond, int(res[0])
}
