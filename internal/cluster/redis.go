package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/patchbay/patchbay/internal/config"
)

// NewRedisClient builds the one Redis client a Patchbay uses, in the mode the configuration names: one server
// (redis.addr), a Redis Cluster (redis.addrs) or a master found and followed through Sentinel (redis.master_name
// with redis.sentinels). Timeouts are short and retries few, so an unreachable Redis surfaces as "unavailable"
// within about a second instead of stalling a call, while the same client picks Redis up again (a restart, or the
// replica Sentinel promotes) without a Patchbay restart. Nil when no Redis is configured.
func NewRedisClient(r config.Redis) redis.UniversalClient {
	if !r.Enabled() {
		return nil
	}
	o := &redis.UniversalOptions{
		Password:              r.Password.Reveal(),
		DB:                    r.DB,
		SentinelPassword:      r.SentinelPassword.Reveal(),
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
	switch {
	case r.MasterName != "":
		o.MasterName, o.Addrs = r.MasterName, r.Sentinels
	case len(r.Addrs) > 0:
		o.Addrs, o.IsClusterMode = r.Addrs, true
	default:
		o.Addrs = []string{r.Addr}
	}
	return redis.NewUniversalClient(o)
}

// ErrUnavailable wraps every failure to reach Redis: callers answer 503 / unavailable.
var ErrUnavailable = errors.New("cluster: shared state (Redis) unavailable")

// unavailable wraps a Redis failure with what failed; a cancelled caller stays a plain error.
func unavailable(ctx context.Context, what string, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
}

// tag makes s a Redis Cluster hash tag: every key of one user, room, call or caller carries the same {...} and so
// lands in one slot, where a Lua script may touch several of them. s may hold anything: braces, which would end
// the tag early, are replaced (distinct names stay distinct: '{' and '}' become "%7B" and "%7D", and '%' itself is
// escaped first).
func tag(kind, s string) string {
	if strings.ContainsAny(s, "{}%") {
		s = strings.NewReplacer("%", "%25", "{", "%7B", "}", "%7D").Replace(s)
	}
	return "{" + kind + ":" + s + "}"
}

// Keys names every key and channel of the shared state under one prefix (redis.prefix).
type Keys struct{ Prefix string }

// Nodes is the hash of live nodes: node ID → "<beat ms> <ttl ms> <json>".
func (k Keys) Nodes() string { return k.Prefix + "nodes" }

// Presence is the sorted set of nodes holding a live session of user, scored by expiry (ms, server time).
func (k Keys) Presence(user string) string { return k.Prefix + "presence:" + tag("u", user) }

// Room is the owner of room (a node ID), with the TTL its owner refreshes.
func (k Keys) Room(room string) string { return k.Prefix + "room:" + tag("r", room) }

// NodeRooms is the hash of the rooms node holds: room ID → JSON (for listing every room of the cluster).
func (k Keys) NodeRooms(node string) string { return k.Prefix + "noderooms:" + tag("n", node) }

// Answer holds the node whose browser answered cluster-wide call key first.
func (k Keys) Answer(key string) string { return k.Prefix + "answer:" + tag("c", key) }

// APICall is the state of an API call, readable from any node.
func (k Keys) APICall(id string) string { return k.Prefix + "apicall:" + tag("a", id) }

// RPC is the channel node reads forwarded API requests from; RPCReply where node reads the replies to its own.
func (k Keys) RPC(node string) string      { return k.Prefix + "rpc:" + node }
func (k Keys) RPCReply(node string) string { return k.Prefix + "rpc-reply:" + node }

// nowMillis is the Lua snippet every script starts with: the server's clock in ms, so that all nodes judge TTLs by
// the clock of the master holding the key, never by their own.
const nowMillis = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`
