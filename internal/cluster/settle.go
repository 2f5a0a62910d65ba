package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// A phone call for a user whose tabs are on several nodes rings all of them at once (the dialplan forks it over the
// inter-node trunk). The first tab to answer, on whichever node, wins: its node claims the call's key with SET NX
// before connecting; a node that loses tells its tab answered_elsewhere, and a node whose ringing ends because
// another node won tells its tabs the same.

// settleTTL bounds how long an answer claim is kept: past the ring timeout, nothing asks any more.
const settleTTL = 2 * time.Minute

// Settle claims the answer of cluster-wide call key for this node: true if this node's browser is the first to
// answer (or this node already claimed it), false if another node's was.
func (c *Cluster) Settle(ctx context.Context, key string) (bool, error) {
	ok, err := c.c.SetNX(ctx, c.keys.Answer(key), c.o.Self.ID, settleTTL).Result()
	if err != nil {
		return false, unavailable(ctx, "settle who answered call "+key, err)
	}
	if ok {
		return true, nil
	}
	winner, err := c.c.Get(ctx, c.keys.Answer(key)).Result()
	if errors.Is(err, redis.Nil) { // expired in between: claim again
		return c.Settle(ctx, key)
	}
	if err != nil {
		return false, unavailable(ctx, "settle who answered call "+key, err)
	}
	return winner == c.o.Self.ID, nil
}

// SettledElsewhere reports whether another node's browser answered call key. Redis down: false (the call ends
// with the cause its channel gave).
func (c *Cluster) SettledElsewhere(ctx context.Context, key string) bool {
	winner, err := c.c.Get(ctx, c.keys.Answer(key)).Result()
	return err == nil && winner != "" && winner != c.o.Self.ID
}
