package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/internal/cluster"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/limits"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/internal/webhook"
	"github.com/patchbay/patchbay/wire"
)

// The cluster's wiring (docs/cluster.md): with cluster.enabled this Patchbay is one node of several sharing state
// in Redis. newCluster runs right after numberStore (whose Redis client it shares) and before the parts that take
// its hooks: the room registry (the rooms directory), the limits (shared slots), call control (users and rooms on
// other nodes), signalling (presence) and the API (routing to the node that holds a room or call).

// clusterParts is what a node holds beyond a lone Patchbay; nil on a lone one.
type clusterParts struct {
	c        *cluster.Cluster
	shared   *limits.Shared
	notify   *apiStateNotifier // its writes are waited for when the node stops
	log      *slog.Logger
	draining atomic.Bool // shutting down: no user is online here any more for the other nodes
}

// newCluster builds the node's view of the cluster when cluster.enabled. Its heartbeat reads the calls, sessions
// and rooms of parts built after it, through s, once Run starts it.
func (s *Server) newCluster(cfg *config.Config, log *slog.Logger) error {
	if !cfg.Cluster.Enabled {
		return nil
	}
	log = log.With("component", "cluster")
	peers := make([]string, 0, len(cfg.Cluster.Peers))
	for _, p := range cfg.Cluster.Peers {
		peers = append(peers, p.ID)
	}
	c, err := cluster.New(cluster.Options{
		Client: s.redis, Prefix: cfg.Redis.Prefix,
		Self: cluster.Node{ID: cfg.ClusterNodeID(), PublicURL: cfg.Cluster.PublicURL, SIPAddress: cfg.ClusterSIPAddress(),
			MaxCPU: cfg.Cluster.MaxCPU, MaxCalls: cfg.Cluster.MaxCalls},
		Peers: peers, Heartbeat: cfg.Cluster.Heartbeat, TTL: cfg.Cluster.TTL,
		Load:   s.clusterLoad,
		Users:  s.clusterUsers,
		Rooms:  s.clusterRooms,
		Logger: log,
	})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	s.cluster = &clusterParts{c: c, shared: limits.NewShared(s.redis, cfg.Redis.Prefix, cfg.Cluster.TTL, log.With("part", "limits")), log: log}
	log.Info("cluster node", "node", c.ID(), "public_url", cfg.Cluster.PublicURL, "sip", cfg.ClusterSIPAddress(),
		"peers", peers, "redis", cfg.Redis.Where(), "heartbeat", cfg.Cluster.Heartbeat, "ttl", cfg.Cluster.TTL)
	return nil
}

// Cluster is this node's view of the cluster, nil on a lone Patchbay (tests and `patchbay cluster status`).
func (s *Server) Cluster() *cluster.Cluster {
	if s.cluster == nil {
		return nil
	}
	return s.cluster.c
}

func (s *Server) clusterLoad() cluster.Load {
	l := cluster.Load{}
	if s.calls != nil {
		l.Calls = s.calls.Active()
		// A draining node, or one that lost its Asterisk, is given no new room: its joins would fail.
		l.Unavailable = !s.calls.TakesCalls()
	}
	if s.signal != nil {
		l.Sessions = s.signal.Len()
	}
	return l
}

func (s *Server) clusterUsers() []string {
	if s.signal == nil || !s.ready.Load() || s.cluster.draining.Load() {
		return nil
	}
	return s.signal.Users()
}

// clusterDrain runs when shutdown starts: this node refuses new calls, so its users' presence is withdrawn at
// once and phones ring their tabs on the other nodes only. The node itself and its rooms stay listed until it
// has stopped.
func (s *Server) clusterDrain() {
	if s.cluster != nil {
		s.cluster.draining.Store(true)
		s.cluster.c.Kick()
	}
}

func (s *Server) clusterRooms() []cluster.RoomInfo {
	if s.rooms == nil {
		return nil
	}
	list := s.rooms.List()
	out := make([]cluster.RoomInfo, 0, len(list))
	for _, r := range list {
		b, _ := json.Marshal(r)
		out = append(out, cluster.RoomInfo{ID: r.ID, Participants: r.Participants, Room: b})
	}
	return out
}

// roomDirectory is the cluster's rooms directory as the room registry wants it (nil on a lone node).
func (s *Server) roomDirectory() rooms.Directory {
	if s.cluster == nil {
		return nil
	}
	return roomDirectory{s.cluster.c}
}

type roomDirectory struct{ c *cluster.Cluster }

func (d roomDirectory) ClaimRoom(ctx context.Context, room string) error {
	err := d.c.ClaimRoom(ctx, room)
	switch {
	case errors.Is(err, cluster.ErrRoomElsewhere):
		return fmt.Errorf("%w: another node holds it; pick another name or end it first", rooms.ErrExists)
	case err != nil:
		return fmt.Errorf("%w: %w; try again shortly", rooms.ErrUnavailable, err)
	}
	return nil
}

func (d roomDirectory) ReleaseRoom(ctx context.Context, room string) { d.c.ReleaseRoom(ctx, room) }

// callCluster is the cluster as call control wants it (nil on a lone node).
func (s *Server) callCluster() call.Cluster {
	if s.cluster == nil {
		return nil
	}
	return callCluster{s.cluster.c}
}

type callCluster struct{ c *cluster.Cluster }

func (a callCluster) ID() string { return a.c.ID() }
func (a callCluster) UserPeers(ctx context.Context, user string) ([]string, error) {
	return a.c.UserPeers(ctx, user)
}
func (a callCluster) Settle(ctx context.Context, key string) (bool, error) {
	return a.c.Settle(ctx, key)
}
func (a callCluster) SettledElsewhere(ctx context.Context, key string) bool {
	return a.c.SettledElsewhere(ctx, key)
}
func (a callCluster) RoomNode(ctx context.Context, room string) (call.ClusterNode, bool, error) {
	n, ok, err := a.c.RoomOwner(ctx, room)
	if err != nil || !ok {
		return call.ClusterNode{}, false, err
	}
	return call.ClusterNode{ID: n.ID, Endpoint: n.Endpoint(), URL: n.PublicURL}, true, nil
}

// clusterLimits makes the per-token, per-key and per-phone limiters shared by every node (nil: in this process).
func (s *Server) clusterLimits(cfg limits.Config) *limits.Limiter {
	if s.cluster == nil {
		return limits.New(cfg)
	}
	return s.cluster.shared.NewLimiter(cfg)
}

// apiStateNotifier stores every API call's state in Redis as it changes (so any node answers GET /calls/{id}),
// then passes the event on to the webhook sender, if there is one.
type apiStateNotifier struct {
	s    *Server
	next call.Notifier // nil: no webhook
	wg   sync.WaitGroup
	sem  chan struct{}
}

func (s *Server) clusterNotifier(next *webhook.Sender) call.Notifier {
	if s.cluster == nil {
		if next == nil {
			return nil
		}
		return next
	}
	n := &apiStateNotifier{s: s, sem: make(chan struct{}, 32)}
	if next != nil {
		n.next = next
	}
	s.cluster.notify = n
	return n
}

// Notify must not block the call: the write runs on its own goroutine (bounded; past the bound the state is
// written by the next event or the GET falls back to the owner's memory).
func (n *apiStateNotifier) Notify(ev webhook.Event) {
	if n.next != nil {
		n.next.Notify(ev)
	}
	select {
	case n.sem <- struct{}{}:
	default:
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() { <-n.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n.s.storeAPICall(ctx, ev.CallID, ev.APIKey)
	}()
}

// storeAPICall writes the API call's current state (as GET shows it) to Redis.
func (s *Server) storeAPICall(ctx context.Context, id, apiKey string) {
	info, ok := s.calls.APICall(id, apiKey)
	if !ok {
		return
	}
	b, err := json.Marshal(info)
	if err != nil {
		return
	}
	e := cluster.APICallEntry{State: b, APIKey: apiKey, Ended: info.State == call.StateEnded}
	if err := s.cluster.c.PutAPICall(ctx, id, e); err != nil {
		s.cluster.log.Warn("store API call state: other nodes answer GET from what they last read", "call", id, "err", err)
	}
}

// clusterCalls is the /calls service of a node: calls are placed here (the router sent the request to the right
// node), their state is stored for the other nodes, and a call another node placed is read from Redis.
type clusterCalls struct {
	s *Server
}

func (s *Server) callService() interface {
	Originate(ctx context.Context, r call.OriginateRequest) (call.OriginateResult, error)
	APICall(id, apiKey string) (call.APICall, bool)
	HangupAPICall(id, apiKey string) error
} {
	if s.cluster == nil {
		return s.calls
	}
	return clusterCalls{s}
}

func (c clusterCalls) Originate(ctx context.Context, r call.OriginateRequest) (call.OriginateResult, error) {
	res, err := c.s.calls.Originate(ctx, r)
	if err == nil {
		c.s.storeAPICall(ctx, res.ID, r.APIKey)
	}
	return res, err
}

func (c clusterCalls) HangupAPICall(id, apiKey string) error {
	return c.s.calls.HangupAPICall(id, apiKey)
}

// APICall answers from this node's memory, else from Redis. A call whose node stopped beating before it ended is
// shown ended (temporary_failure): its node's Asterisk channels go with that node's sweep.
func (c clusterCalls) APICall(id, apiKey string) (call.APICall, bool) {
	if info, ok := c.s.calls.APICall(id, apiKey); ok {
		return info, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	e, ok, err := c.s.cluster.c.APICall(ctx, id)
	if err != nil || !ok || e.APIKey != apiKey {
		return call.APICall{}, false
	}
	var info call.APICall
	if json.Unmarshal(e.State, &info) != nil {
		return call.APICall{}, false
	}
	if !e.Ended && !c.s.cluster.c.NodeAlive(ctx, e.Node) {
		info.State, info.Cause, info.Code = call.StateEnded, wire.CauseTemporaryFailure, wire.CauseCode(wire.CauseTemporaryFailure)
	}
	return info, true
}

// startCluster runs the heartbeat and the shared limits' refresh until stop, which Run defers so that it runs
// after the calls have ended and before the Redis client closes: the node then leaves the directory at once.
func (s *Server) startCluster() (stop func()) {
	if s.cluster == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = s.cluster.c.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		s.cluster.shared.Run(ctx)
	}()
	return func() {
		if n := s.cluster.notify; n != nil {
			n.wg.Wait()
		}
		cancel()
		wg.Wait()
	}
}

// clusterKick is signalling's OnUsersChanged: presence is published at once rather than at the next heartbeat.
func (s *Server) clusterKick() {
	if s.cluster != nil {
		s.cluster.c.Kick()
	}
}
