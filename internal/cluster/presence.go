package cluster

import (
	"context"
	"errors"
	"slices"

	"github.com/redis/go-redis/v9"
)

// Presence: for every user with a live signalling session here, this node writes itself into the user's sorted
// set, scored with an expiry (server time + TTL) its heartbeat pushes on. A node that dies stops pushing: within the
// TTL it is no longer among the user's nodes, and phones calling that user are no longer sent there.

var presenceScript = redis.NewScript(nowMillis + `
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]))
return 1`)

var presenceReadScript = redis.NewScript(nowMillis + `
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')`)

// syncPresence writes every local user and takes out those whose last session closed since the last sync.
func (c *Cluster) syncPresence(ctx context.Context, users []string) error {
	now := make(map[string]bool, len(users))
	for _, u := range users {
		now[u] = true
	}
	c.mu.Lock()
	var gone []string
	for u := range c.published {
		if !now[u] {
			gone = append(gone, u)
		}
	}
	c.mu.Unlock()
	self, ttl := c.o.Self.ID, c.o.TTL.Milliseconds()
	_, err := c.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, u := range users {
			presenceScript.Eval(ctx, p, []string{c.keys.Presence(u)}, self, ttl)
		}
		for _, u := range gone {
			p.ZRem(ctx, c.keys.Presence(u), self)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable(ctx, "publish presence", err)
	}
	c.mu.Lock()
	for _, u := range gone {
		delete(c.published, u)
	}
	for _, u := range users {
		c.published[u] = true
	}
	c.mu.Unlock()
	return nil
}

// UserNodes lists the live nodes where user has a live session, this one included when it has.
func (c *Cluster) UserNodes(ctx context.Context, user string) ([]string, error) {
	return ReadPresence(ctx, c.c, c.keys, user)
}

// ReadPresence reads the nodes holding a live session of user.
func ReadPresence(ctx context.Context, c redis.UniversalClient, k Keys, user string) ([]string, error) {
	nodes, err := presenceReadScript.Run(ctx, c, []string{k.Presence(user)}).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(ctx, "look up where "+user+" is online", err)
	}
	slices.Sort(nodes)
	return nodes, nil
}

// UserPeers lists the other nodes, reachable over the inter-node trunk, where user has a live session: the PJSIP
// endpoints to ring. Nodes with no trunk from here (not in cluster.peers) are skipped with a warning.
func (c *Cluster) UserPeers(ctx context.Context, user string) ([]string, error) {
	nodes, err := c.UserNodes(ctx, user)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes {
		if n == c.o.Self.ID {
			continue
		}
		if !c.isPeer(n) {
			c.log.Warn("user is online on a node this node has no SIP trunk to: add it to cluster.peers", "user", user, "peer", n)
			continue
		}
		out = append(out, Node{ID: n}.Endpoint())
	}
	return out, nil
}
