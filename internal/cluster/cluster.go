// Package cluster lets several Patchbay nodes (each a Patchbay beside its own Asterisk) share what must outlive any
// one of them, in Redis: which nodes are up and how loaded, which users have live browser sessions where
// (presence), which node holds each room, which node's browser answered a call rung on several nodes, and the state
// of API calls. Everything a node writes carries a TTL its heartbeat refreshes, so a node that dies (kill -9, power
// loss) vanishes from the directory within cluster.ttl without anyone cleaning up after it. Calls cross nodes over
// SIP between the Asterisks (asterisk-configs renders the trunk); API requests for another node's room or call are
// forwarded to it over a Redis pub/sub channel (rpc.go). See docs/cluster.md.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Node is what a node publishes about itself with every heartbeat.
type Node struct {
	ID         string    `json:"id"`
	PublicURL  string    `json:"public_url"`
	SIPAddress string    `json:"sip_address"`
	Started    time.Time `json:"started"`
	// Load at the last heartbeat: calls in progress, rooms held, live signalling sessions, host CPU busy share.
	Calls    int     `json:"calls"`
	Rooms    int     `json:"rooms"`
	Sessions int     `json:"sessions"`
	CPU      float64 `json:"cpu"`
	// The node's admission ceiling for new rooms (cluster.max_cpu, cluster.max_calls; 0: none).
	MaxCPU   float64 `json:"max_cpu"`
	MaxCalls int     `json:"max_calls"`
	// Unavailable: the node takes no new calls (Load.Unavailable), so it is given no new room.
	Unavailable bool `json:"unavailable,omitempty"`

	// Filled in when read: the heartbeat's age by the Redis server's clock, and whether it is within the TTL.
	HeartbeatAge time.Duration `json:"heartbeat_age_ns"`
	Alive        bool          `json:"alive"`
}

// Endpoint is the PJSIP endpoint other nodes' Asterisks reach this node through (asterisk-configs).
func (n Node) Endpoint() string { return "cluster-" + n.ID }

// underCeiling reports whether the node may take a new room. A CPU ceiling of 1 (or 0) is none.
func (n Node) underCeiling() bool {
	return (n.MaxCPU <= 0 || n.MaxCPU >= 1 || n.CPU < n.MaxCPU) && (n.MaxCalls <= 0 || n.Calls < n.MaxCalls)
}

// Load is what the node reports about itself at each heartbeat.
type Load struct {
	Calls, Sessions int
	// Unavailable: the node refuses new calls (it is shutting down, or has lost its Asterisk). No new room goes
	// there, from this node or another, though its users, rooms and calls stay in the directory.
	Unavailable bool
}

// RoomInfo is a room a node holds, as the directory lists it (the rooms package's Room as JSON, plus its node).
type RoomInfo struct {
	ID           string `json:"id"`
	Participants int    `json:"participants"`
	// Room is the room's full description as the owner's API shows it (JSON), passed through untouched.
	Room json.RawMessage `json:"room,omitempty"`
	Node string          `json:"node,omitempty"`
}

// Options wire a Cluster.
type Options struct {
	Client redis.UniversalClient
	// Prefix starts every key (redis.prefix).
	Prefix string
	// Self is this node: ID, PublicURL, SIPAddress, MaxCPU, MaxCalls. Load and Started are filled in.
	Self Node
	// Peers are the node IDs this node's Asterisk has a trunk endpoint to (cluster.peers): calls only go there.
	Peers []string
	// Heartbeat and TTL: see config.Cluster (2 s and 10 s by default).
	Heartbeat, TTL time.Duration
	// Load, Users and Rooms read this node's state for each heartbeat; each must return at once.
	Load  func() Load
	Users func() []string
	Rooms func() []RoomInfo
	// CPU reads the host's CPU busy share since the previous call (load.go); nil uses /proc/stat.
	CPU    func() float64
	Logger *slog.Logger
}

// Cluster is this node's view of the cluster. Run keeps this node's entries alive; every other method may be
// called from any goroutine once New returned.
type Cluster struct {
	o    Options
	c    redis.UniversalClient
	keys Keys
	log  *slog.Logger

	kick chan struct{} // presence or rooms changed: heartbeat now

	mu         sync.Mutex
	nodes      map[string]Node // as of the last read of the nodes hash
	nodesAt    time.Time
	published  map[string]bool // users whose presence this node has written
	ownedRooms map[string]bool // rooms whose directory entry this node has written
	released   map[string]bool // rooms ReleaseRoom took out since the beat in progress read the rooms (rooms.go)

	lastCPU float64 // this node's CPU at its last heartbeat (guarded by mu)

	leases *leaseSet // API calls whose state this node keeps alive (apicalls.go)
	rpc    *rpc      // forwarded API requests (rpc.go)
}

// New checks the options and returns a Cluster; Run starts its heartbeat.
func New(o Options) (*Cluster, error) {
	if o.Client == nil {
		return nil, errors.New("cluster: no Redis client: a cluster shares its state in Redis (redis.addr, redis.addrs or redis.master_name)")
	}
	if o.Self.ID == "" {
		return nil, errors.New("cluster: this node has no ID (cluster.node_id)")
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 2 * time.Second
	}
	if o.TTL < 2*o.Heartbeat {
		o.TTL = 5 * o.Heartbeat
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Load == nil {
		o.Load = func() Load { return Load{} }
	}
	if o.Users == nil {
		o.Users = func() []string { return nil }
	}
	if o.Rooms == nil {
		o.Rooms = func() []RoomInfo { return nil }
	}
	if o.CPU == nil {
		o.CPU = newCPUSampler().sample
	}
	o.Self.Started = time.Now().UTC()
	c := &Cluster{
		o: o, c: o.Client, keys: Keys{Prefix: o.Prefix}, log: o.Logger.With("node", o.Self.ID),
		kick:       make(chan struct{}, 1),
		nodes:      map[string]Node{},
		published:  map[string]bool{},
		ownedRooms: map[string]bool{},
		released:   map[string]bool{},
		leases:     newLeaseSet(),
	}
	c.rpc = newRPC(c)
	return c, nil
}

// ID is this node's ID.
func (c *Cluster) ID() string { return c.o.Self.ID }

// Self is this node's description (without load).
func (c *Cluster) Self() Node { return c.o.Self }

// TTL is how long this node's entries live without a heartbeat.
func (c *Cluster) TTL() time.Duration { return c.o.TTL }

// Client is the Redis client the cluster's state lives in.
func (c *Cluster) Client() redis.UniversalClient { return c.c }

// Kick asks for a heartbeat now (a user's first session opened or last closed, a room was created or ended), so
// other nodes learn of it within a round trip rather than a heartbeat. It never blocks.
func (c *Cluster) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run beats until ctx ends, then takes this node's entries out of the directory (a clean leave: its users and rooms
// are gone at once instead of after the TTL). A beat that fails (Redis down, a failover in progress) is logged once
// per outage and retried at the next; nothing else waits for it.
func (c *Cluster) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.rpc.run(ctx)
	}()
	defer wg.Wait()
	t := time.NewTicker(c.o.Heartbeat)
	defer t.Stop()
	failing := false
	// A beat may take up to half the TTL (a slow Redis, a failover): entries still outlive it.
	beatTimeout := max(c.o.Heartbeat, c.o.TTL/2)
	for {
		bctx, cancel := context.WithTimeout(ctx, beatTimeout)
		err := c.beat(bctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			c.log.Error("cluster heartbeat failed: other nodes will see this node's users and rooms expire if it lasts past the TTL; retrying",
				"ttl", c.o.TTL, "err", err)
		case err == nil && failing:
			failing = false
			c.log.Info("cluster heartbeat works again")
		}
		select {
		case <-ctx.Done():
			lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if err := c.leave(lctx); err != nil {
				c.log.Warn("leave the cluster: entries expire by themselves within the TTL", "ttl", c.o.TTL, "err", err)
			}
			lcancel()
			return nil
		case <-t.C:
		case <-c.kick:
		}
	}
}

// beat publishes this node, its users and its rooms, and refreshes what it holds, in one pipeline.
func (c *Cluster) beat(ctx context.Context) error {
	self := c.o.Self
	l := c.o.Load()
	c.mu.Lock()
	clear(c.released) // before the rooms are read: a room released after this is put right by syncRooms
	c.mu.Unlock()
	rooms := c.o.Rooms()
	self.Calls, self.Sessions, self.Rooms, self.CPU = l.Calls, l.Sessions, len(rooms), c.o.CPU()
	self.Unavailable = l.Unavailable
	c.mu.Lock()
	c.lastCPU = self.CPU
	c.mu.Unlock()
	users := c.o.Users()
	errs := []error{c.publishNode(ctx, self), c.syncPresence(ctx, users), c.syncRooms(ctx, rooms), c.leases.refresh(ctx, c)}
	if _, err := c.readNodes(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

var nodeBeatScript = redis.NewScript(nowMillis + `
redis.call('HSET', KEYS[1], ARGV[1], now .. ' ' .. ARGV[2] .. ' ' .. ARGV[3])
return now`)

func (c *Cluster) publishNode(ctx context.Context, n Node) error {
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node: %w", err)
	}
	if err := nodeBeatScript.Run(ctx, c.c, []string{c.keys.Nodes()}, n.ID, c.o.TTL.Milliseconds(), b).Err(); err != nil {
		return unavailable(ctx, "publish this node", err)
	}
	return nil
}

var nodesScript = redis.NewScript(nowMillis + `
return {now, redis.call('HGETALL', KEYS[1])}`)

// forgetAfter is how long a node that stopped beating stays listed (as down) before its entry is removed.
const forgetAfter = time.Hour

// Nodes lists every node in the directory, alive or not (a dead node stays listed as down for an hour), sorted by
// ID. It reads Redis.
func (c *Cluster) Nodes(ctx context.Context) ([]Node, error) { return c.readNodes(ctx) }

func (c *Cluster) readNodes(ctx context.Context) ([]Node, error) {
	out, stale, err := ReadNodes(ctx, c.c, c.keys)
	if err != nil {
		return nil, err
	}
	if len(stale) > 0 {
		_ = c.c.HDel(ctx, c.keys.Nodes(), stale...).Err()
	}
	m := make(map[string]Node, len(out))
	for _, n := range out {
		m[n.ID] = n
	}
	c.mu.Lock()
	c.nodes, c.nodesAt = m, time.Now()
	c.mu.Unlock()
	return out, nil
}

// ReadNodes reads the node directory (for `patchbay cluster status`, which has no Cluster of its own): every node,
// and the IDs of those down for longer than an hour.
func ReadNodes(ctx context.Context, c redis.UniversalClient, k Keys) (nodes []Node, stale []string, err error) {
	res, err := nodesScript.Run(ctx, c, []string{k.Nodes()}).Slice()
	if err != nil {
		return nil, nil, unavailable(ctx, "read the node directory", err)
	}
	if len(res) != 2 {
		return nil, nil, fmt.Errorf("read the node directory: unexpected reply %v", res)
	}
	now, _ := res[0].(int64)
	flat, _ := res[1].([]any)
	for i := 0; i+1 < len(flat); i += 2 {
		id, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		n, ok := parseNode(v, now)
		if !ok {
			stale = append(stale, id)
			continue
		}
		if !n.Alive && n.HeartbeatAge > forgetAfter {
			stale = append(stale, id)
			continue
		}
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return nodes, stale, nil
}

// parseNode reads "<beat ms> <ttl ms> <json>" as of the server time now.
func parseNode(v string, now int64) (Node, bool) {
	f := strings.SplitN(v, " ", 3)
	if len(f) != 3 {
		return Node{}, false
	}
	beat, err1 := strconv.ParseInt(f[0], 10, 64)
	ttl, err2 := strconv.ParseInt(f[1], 10, 64)
	var n Node
	if err1 != nil || err2 != nil || json.Unmarshal([]byte(f[2]), &n) != nil || n.ID == "" {
		return Node{}, false
	}
	n.HeartbeatAge = time.Duration(now-beat) * time.Millisecond
	n.Alive = now-beat < ttl
	return n, true
}

// node returns a live node by ID from the last read (refreshed if older than a heartbeat, or if id is missing).
func (c *Cluster) node(ctx context.Context, id string) (Node, bool) {
	c.mu.Lock()
	n, ok := c.nodes[id]
	fresh := time.Since(c.nodesAt) < c.o.Heartbeat
	c.mu.Unlock()
	if !ok || !fresh {
		if _, err := c.readNodes(ctx); err == nil {
			c.mu.Lock()
			n, ok = c.nodes[id]
			c.mu.Unlock()
		}
	}
	return n, ok && n.Alive
}

// isPeer reports whether this node's Asterisk has a trunk to node id.
func (c *Cluster) isPeer(id string) bool { return slices.Contains(c.o.Peers, id) }

// ErrAtCapacity is returned by PickRoomNode when no live node that takes calls is below its admission ceiling.
var ErrAtCapacity = errors.New("cluster: every node is at its admission ceiling (cluster.max_cpu, cluster.max_calls); add a node or raise the ceiling")

// PickRoomNode chooses the node a new room goes to: among live nodes that take calls and are below their admission
// ceiling, the least busy CPU (in steps of 5 %, so noise does not decide), then the fewest calls, then this node,
// then the lowest ID. With every node at its ceiling (or unavailable) it fails: the caller answers unavailable.
func (c *Cluster) PickRoomNode(ctx context.Context) (Node, error) {
	nodes, err := c.readNodes(ctx)
	if err != nil {
		return Node{}, err
	}
	self := c.o.Self.ID
	// This node judges itself by its load now, not by its last heartbeat (nor its absence from the directory).
	me := c.o.Self
	l := c.o.Load()
	me.Calls, me.Unavailable, me.Alive = l.Calls, l.Unavailable, true
	c.mu.Lock()
	me.CPU = c.lastCPU
	c.mu.Unlock()
	cands := []Node{}
	if !me.Unavailable && me.underCeiling() {
		cands = append(cands, me)
	}
	for _, n := range nodes {
		if n.ID != self && n.Alive && !n.Unavailable && n.underCeiling() && c.isPeer(n.ID) {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return Node{}, ErrAtCapacity
	}
	return pickLeastLoaded(cands, self), nil
}

func pickLeastLoaded(cands []Node, self string) Node {
	bucket := func(cpu float64) int { return int(cpu * 20) }
	return slices.MinFunc(cands, func(a, b Node) int {
		if d := bucket(a.CPU) - bucket(b.CPU); d != 0 {
			return d
		}
		if d := a.Calls - b.Calls; d != 0 {
			return d
		}
		if (a.ID == self) != (b.ID == self) {
			if a.ID == self {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// leave removes this node's entries: node, presence, rooms.
func (c *Cluster) leave(ctx context.Context) error {
	c.mu.Lock()
	users := make([]string, 0, len(c.published))
	for u := range c.published {
		users = append(users, u)
	}
	rooms := make([]string, 0, len(c.ownedRooms))
	for r := range c.ownedRooms {
		rooms = append(rooms, r)
	}
	c.mu.Unlock()
	_, err := c.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, c.keys.Nodes(), c.o.Self.ID)
		for _, u := range users {
			p.ZRem(ctx, c.keys.Presence(u), c.o.Self.ID)
		}
		for _, r := range rooms {
			releaseRoomScript.Eval(ctx, p, []string{c.keys.Room(r)}, c.o.Self.ID)
		}
		p.Del(ctx, c.keys.NodeRooms(c.o.Self.ID))
		return nil
	})
	if err != nil {
		return unavailable(ctx, "leave the cluster", err)
	}
	return nil
}
