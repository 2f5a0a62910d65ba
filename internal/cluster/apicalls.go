package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// API call state: the node that placed an API call writes its state (as GET /calls/{id} shows it) at every change,
// so any node answers GET; DELETE is forwarded to the owner (rpc.go). A live call's entry is refreshed by the
// owner's heartbeat; once ended it stays KeepEnded, as the owner keeps it in memory.

// KeepEnded is how long an ended API call stays readable (call.keepEnded).
const KeepEnded = 10 * time.Minute

// APICallEntry is the stored state of one API call.
type APICallEntry struct {
	// State is the call's state as the API shows it (call.APICall as JSON), passed through untouched.
	State  json.RawMessage `json:"state"`
	APIKey string          `json:"api_key"`
	Node   string          `json:"node"`
	Ended  bool            `json:"ended"`
}

// PutAPICall stores an API call's state. A live call is also refreshed by every heartbeat until it ends.
func (c *Cluster) PutAPICall(ctx context.Context, id string, e APICallEntry) error {
	e.Node = c.o.Self.ID
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode API call state: %w", err)
	}
	ttl := KeepEnded
	if e.Ended {
		c.leases.drop(id)
	} else {
		c.leases.add(id)
	}
	if err := c.c.Set(ctx, c.keys.APICall(id), b, ttl).Err(); err != nil {
		return unavailable(ctx, "store API call "+id, err)
	}
	return nil
}

// APICall reads an API call's state, false when none is stored (unknown, or ended more than KeepEnded ago).
func (c *Cluster) APICall(ctx context.Context, id string) (APICallEntry, bool, error) {
	b, err := c.c.Get(ctx, c.keys.APICall(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return APICallEntry{}, false, nil
	}
	if err != nil {
		return APICallEntry{}, false, unavailable(ctx, "read API call "+id, err)
	}
	var e APICallEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return APICallEntry{}, false, fmt.Errorf("API call %s: stored state is corrupt: %w", id, err)
	}
	return e, true, nil
}

// NodeAlive reports whether node id beats.
func (c *Cluster) NodeAlive(ctx context.Context, id string) bool {
	if id == c.o.Self.ID {
		return true
	}
	_, ok := c.node(ctx, id)
	return ok
}

// leaseSet is the live API calls whose entries this node's heartbeat keeps from expiring.
type leaseSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func newLeaseSet() *leaseSet { return &leaseSet{ids: map[string]bool{}} }

func (l *leaseSet) add(id string) {
	l.mu.Lock()
	l.ids[id] = true
	l.mu.Unlock()
}

func (l *leaseSet) drop(id string) {
	l.mu.Lock()
	delete(l.ids, id)
	l.mu.Unlock()
}

func (l *leaseSet) refresh(ctx context.Context, c *Cluster) error {
	l.mu.Lock()
	ids := make([]string, 0, len(l.ids))
	for id := range l.ids {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	_, err := c.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			p.PExpire(ctx, c.keys.APICall(id), KeepEnded)
		}
		return nil
	})
	if err != nil {
		return unavailable(ctx, "refresh API call state", err)
	}
	return nil
}
