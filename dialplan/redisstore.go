package dialplan

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix is used when NewRedisStore gets an empty prefix.
const DefaultRedisPrefix = "patchbay:dialplan:"

// RedisStore is a Store shared by every Patchbay instance, kept in Redis as
// one key per number (PREFIX + "num:" + number) whose TTL is the mapping's.
// The client may be a single server, a Sentinel-managed master or a Redis
// Cluster (redis.UniversalClient): every command touches one key, and List
// scans each master of a cluster.
type RedisStore struct {
	client redis.UniversalClient
	prefix string
}

var _ Store = (*RedisStore)(nil)

// RedisOptions returns client options suited to the store: short dial, read
// and write timeouts and a single retry, so an unreachable Redis surfaces as
// ErrStoreUnavailable within about a second instead of stalling a call
// setup, while a restarted Redis is picked up again by the same client.
func RedisOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		DialTimeout:           500 * time.Millisecond,
		DialerRetries:         1,
		ReadTimeout:           500 * time.Millisecond,
		WriteTimeout:          500 * time.Millisecond,
		PoolTimeout:           time.Second,
		MaxRetries:            1,
		MinRetryBackoff:       10 * time.Millisecond,
		MaxRetryBackoff:       100 * time.Millisecond,
		ContextTimeoutEnabled: true,
		// CLIENT SETINFO is noise in the server log of older Redis versions.
		DisableIdentity: true,
	}
}

// NewRedisStore returns a store keeping its keys under prefix
// (DefaultRedisPrefix if empty). The caller owns client and closes it.
func NewRedisStore(client redis.UniversalClient, prefix string) *RedisStore {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	return &RedisStore{client: client, prefix: prefix}
}

func (s *RedisStore) key(number string) string { return s.prefix + "num:" + number }

// Map implements Store.
func (s *RedisStore) Map(ctx context.Context, number, room string, ttl time.Duration) error {
	n, err := checkMapArgs(number, room, ttl)
	if err != nil {
		return err
	}
	if err := s.ready(); err != nil {
		return err
	}
	if ttl > 0 && ttl < time.Millisecond {
		ttl = time.Millisecond // Redis counts in milliseconds; never round to "no expiry"
	}
	if err := s.client.Set(ctx, s.key(n), room, ttl).Err(); err != nil {
		return s.fail(ctx, "map "+n, err)
	}
	return nil
}

// Lookup implements Store.
func (s *RedisStore) Lookup(ctx context.Context, number string) (Mapping, error) {
	n, err := NormalizeNumber(number)
	if err != nil {
		return Mapping{}, fmt.Errorf("look up number: %w", err)
	}
	if err := s.ready(); err != nil {
		return Mapping{}, err
	}
	ms, err := s.fetch(ctx, []string{n})
	if err != nil {
		return Mapping{}, s.fail(ctx, "look up "+n, err)
	}
	if len(ms) == 0 {
		return Mapping{}, fmt.Errorf("look up %s: %w", n, ErrNotMapped)
	}
	return ms[0], nil
}

// Unmap implements Store.
func (s *RedisStore) Unmap(ctx context.Context, number string) error {
	n, err := NormalizeNumber(number)
	if err != nil {
		return fmt.Errorf("unmap number: %w", err)
	}
	if err := s.ready(); err != nil {
		return err
	}
	deleted, err := s.client.Del(ctx, s.key(n)).Result()
	if err != nil {
		return s.fail(ctx, "unmap "+n, err)
	}
	if deleted == 0 {
		return fmt.Errorf("unmap %s: %w", n, ErrNotMapped)
	}
	return nil
}

// scanCount is the SCAN batch hint; List never uses KEYS, which blocks Redis.
const scanCount = 200

// List implements Store.
func (s *RedisStore) List(ctx context.Context) ([]Mapping, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	match := globEscape(s.prefix+"num:") + "*"
	var mu sync.Mutex
	seen := make(map[string]bool)
	var out []Mapping
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, match, scanCount).Result()
			if err != nil {
				return err
			}
			var numbers []string
			mu.Lock()
			for _, k := range keys {
				n := strings.TrimPrefix(k, s.prefix+"num:")
				// SCAN may repeat keys; skip keys this package did not write.
				if seen[n] {
					continue
				}
				seen[n] = true
				if norm, err := NormalizeNumber(n); err != nil || norm != n {
					continue
				}
				numbers = append(numbers, n)
			}
			mu.Unlock()
			ms, err := s.fetch(ctx, numbers)
			if err != nil {
				return err
			}
			mu.Lock()
			out = append(out, ms...)
			mu.Unlock()
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	var err error
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		// Each master of a cluster holds its own slots: SCAN every one of them.
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, s.client)
	}
	if err != nil {
		return nil, s.fail(ctx, "list mappings", err)
	}
	slices.SortFunc(out, func(a, b Mapping) int { return strings.Compare(a.Number, b.Number) })
	return out, nil
}

// fetch reads room and TTL of each number in one round trip, skipping numbers
// that are gone (or expired in between).
func (s *RedisStore) fetch(ctx context.Context, numbers []string) ([]Mapping, error) {
	if len(numbers) == 0 {
		return nil, nil
	}
	gets := make([]*redis.StringCmd, len(numbers))
	ttls := make([]*redis.DurationCmd, len(numbers))
	fill := func(p redis.Pipeliner) error {
		for i, n := range numbers {
			gets[i] = p.Get(ctx, s.key(n))
			ttls[i] = p.PTTL(ctx, s.key(n))
		}
		return nil
	}
	// One number: a transaction on its one key (a timed-out MULTI is not retried, so a hung Redis fails the lookup
	// within one read timeout). Several: a plain pipeline, since their keys may sit in different slots of a cluster.
	var err error
	if len(numbers) == 1 {
		_, err = s.client.TxPipelined(ctx, fill)
	} else {
		_, err = s.client.Pipelined(ctx, fill)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	now := time.Now()
	out := make([]Mapping, 0, len(numbers))
	for i, n := range numbers {
		room, err := gets[i].Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		m := Mapping{Number: n, Room: room}
		if ttl := ttls[i].Val(); ttl > 0 {
			m.Expires = now.Add(ttl)
		}
		out = append(out, m)
	}
	return out, nil
}

func (s *RedisStore) ready() error {
	if s == nil || s.client == nil {
		return errors.New("dialplan: RedisStore has no client; build it with NewRedisStore(client, prefix)")
	}
	return nil
}

// fail wraps a Redis error. A cancelled caller context stays a plain error;
// connection failures, timeouts and a server that is loading or has no
// master become ErrStoreUnavailable.
func (s *RedisStore) fail(ctx context.Context, op string, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("%s: %w: the Redis client was closed; the store cannot be used after shutdown: %w", op, ErrStoreUnavailable, err)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !unavailableReply(rerr.Error()) {
		return fmt.Errorf("%s: Redis refused the command: %w", op, err)
	}
	return fmt.Errorf("%s: %w: Redis at %s is not reachable or not answering; check that redis-server is running, listening on that address, not overloaded and not blocked by a firewall: %w",
		op, ErrStoreUnavailable, RedisWhere(s.client), err)
}

// RedisWhere names the server a client talks to, for error messages: its address, a cluster's seeds, or the
// Sentinel-managed master.
func RedisWhere(c redis.UniversalClient) string {
	switch cl := c.(type) {
	case *redis.ClusterClient:
		return "cluster " + strings.Join(cl.Options().Addrs, ",")
	case *redis.Client:
		if a := cl.Options().Addr; a != "FailoverClient" {
			return a
		}
		return "the master Sentinel names"
	}
	return "the configured address"
}

func unavailableReply(msg string) bool {
	for _, p := range []string{"LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// globEscape escapes the SCAN MATCH metacharacters in a literal prefix.
func globEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
