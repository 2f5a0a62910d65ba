// Package clustertest checks the cluster's shared state (presence, rooms directory, answer settling, API call
// state, forwarding) against a Redis under test: miniredis in the unit tests, a real Redis, Sentinel or Redis
// Cluster in the integration tests. Tests only.
package clustertest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/patchbay/patchbay/internal/cluster"
)

// NewClient returns a new client of the Redis under test (one per node).
type NewClient func(t *testing.T) redis.UniversalClient

// Node is one node of the suite: its Cluster and what its heartbeat reports.
type Node struct {
	*cluster.Cluster
	mu    sync.Mutex
	users []string
	rooms []cluster.RoomInfo
	stop  context.CancelFunc
	done  chan struct{}
}

// SetUsers sets the users with live sessions on the node and beats at once.
func (n *Node) SetUsers(u ...string) {
	n.mu.Lock()
	n.users = u
	n.mu.Unlock()
	n.Kick()
}

// SetRooms sets the rooms the node holds.
func (n *Node) SetRooms(r ...cluster.RoomInfo) {
	n.mu.Lock()
	n.rooms = r
	n.mu.Unlock()
	n.Kick()
}

// Kill stops the node's heartbeat without leaving, as kill -9 would: its client is closed first, so the leave
// that Run attempts on its way out cannot reach Redis.
func (n *Node) Kill() {
	_ = n.Client().Close()
	n.stop()
	<-n.done
}

// StartNode runs a node named id under prefix with a short heartbeat. killed: stop without the clean leave.
func StartNode(t *testing.T, newClient NewClient, prefix, id string, peers []string, hb, ttl time.Duration) *Node {
	t.Helper()
	n := &Node{done: make(chan struct{})}
	var err error
	n.Cluster, err = cluster.New(cluster.Options{Client: newClient(t), Prefix: prefix,
		Self:  cluster.Node{ID: id, PublicURL: "wss://" + id + ".example/ws", SIPAddress: "127.0.0.9:5060", MaxCPU: 0.9},
		Peers: peers, Heartbeat: hb, TTL: ttl,
		Users: func() []string { n.mu.Lock(); defer n.mu.Unlock(); return slices.Clone(n.users) },
		Rooms: func() []cluster.RoomInfo { n.mu.Lock(); defer n.mu.Unlock(); return slices.Clone(n.rooms) },
		Load:  func() cluster.Load { return cluster.Load{Calls: len(id)} },
		CPU:   func() float64 { return 0.1 },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	go func() {
		defer close(n.done)
		_ = n.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-n.done
	})
	return n
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// Run runs the suite. Keys are slot-safe when it passes against a Redis Cluster: every multi-key script touches
// keys of one hash tag.
func Run(t *testing.T, newClient NewClient) {
	ctx := context.Background()
	hb, ttl := 200*time.Millisecond, 1500*time.Millisecond

	t.Run("presence across nodes, and a dead node expires", func(t *testing.T) {
		a := StartNode(t, newClient, "p:", "a", []string{"b"}, hb, ttl)
		b := StartNode(t, newClient, "p:", "b", []string{"a"}, hb, ttl)
		a.SetUsers("alice", "bob")
		b.SetUsers("alice", "{carol}")
		waitFor(t, 2*time.Second, "alice on both nodes", func() bool {
			ns, err := a.UserNodes(ctx, "alice")
			return err == nil && slices.Equal(ns, []string{"a", "b"})
		})
		peers, err := a.UserPeers(ctx, "alice")
		if err != nil || !slices.Equal(peers, []string{"cluster-b"}) {
			t.Fatalf("a's peers for alice: %v %v", peers, err)
		}
		if ns, _ := a.UserNodes(ctx, "{carol}"); !slices.Equal(ns, []string{"b"}) {
			t.Errorf("a user with braces: %v", ns)
		}
		a.SetUsers("alice") // bob's last session here closed
		waitFor(t, time.Second, "bob gone", func() bool {
			ns, _ := b.UserNodes(ctx, "bob")
			return len(ns) == 0
		})
		b.Kill()
		took := waitFor(t, 3*ttl, "dead node's presence expired", func() bool {
			ns, _ := a.UserNodes(ctx, "alice")
			return slices.Equal(ns, []string{"a"})
		})
		t.Logf("presence of a killed node gone after %v (ttl %v)", took, ttl)
		waitFor(t, 2*ttl, "the killed node listed as down", func() bool {
			nodes, err := a.Nodes(ctx)
			if err != nil {
				return false
			}
			for _, n := range nodes {
				if n.ID == "b" {
					return !n.Alive
				}
			}
			return false
		})
	})

	t.Run("a clean leave takes presence and rooms out at once", func(t *testing.T) {
		a := StartNode(t, newClient, "l:", "a", []string{"b"}, hb, 10*time.Second)
		b := StartNode(t, newClient, "l:", "b", []string{"a"}, hb, 10*time.Second)
		b.SetUsers("erin")
		if err := b.ClaimRoom(ctx, "standup"); err != nil {
			t.Fatal(err)
		}
		b.SetRooms(cluster.RoomInfo{ID: "standup", Participants: 2})
		waitFor(t, 2*time.Second, "erin on b", func() bool { ns, _ := a.UserNodes(ctx, "erin"); return len(ns) == 1 })
		b.stop()
		<-b.done
		if ns, _ := a.UserNodes(ctx, "erin"); len(ns) != 0 {
			t.Errorf("after a clean leave erin is still on %v", ns)
		}
		if _, ok, _ := a.RoomOwner(ctx, "standup"); ok {
			t.Errorf("after a clean leave the room is still in the directory")
		}
	})

	t.Run("rooms directory", func(t *testing.T) {
		a := StartNode(t, newClient, "r:", "a", []string{"b"}, hb, ttl)
		b := StartNode(t, newClient, "r:", "b", []string{"a"}, hb, ttl)
		if err := a.ClaimRoom(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		if err := b.ClaimRoom(ctx, "r1"); !errors.Is(err, cluster.ErrRoomElsewhere) {
			t.Fatalf("second claim of r1: %v", err)
		}
		a.SetRooms(cluster.RoomInfo{ID: "r1", Participants: 3, Room: []byte(`{"id":"r1"}`)})
		waitFor(t, time.Second, "b knows a's node", func() bool { return b.NodeAlive(ctx, "a") })
		owner, ok, err := b.RoomOwner(ctx, "r1")
		if err != nil || !ok || owner.ID != "a" || owner.PublicURL != "wss://a.example/ws" {
			t.Fatalf("owner of r1 seen from b: %+v %v %v", owner, ok, err)
		}
		waitFor(t, time.Second, "r1 listed", func() bool {
			rs, err := b.Rooms(ctx)
			return err == nil && len(rs) == 1 && rs[0].Node == "a" && rs[0].Participants == 3
		})
		a.ReleaseRoom(ctx, "r1")
		a.SetRooms()
		if _, ok, _ := b.RoomOwner(ctx, "r1"); ok {
			t.Errorf("released room still owned")
		}
		if err := b.ClaimRoom(ctx, "r1"); err != nil {
			t.Fatalf("claim a released ID: %v", err)
		}
		b.SetRooms(cluster.RoomInfo{ID: "r1"})
		b.Kill()
		waitFor(t, 3*ttl, "dead node's room expired", func() bool { _, ok, _ := a.RoomOwner(ctx, "r1"); return !ok })
	})

	t.Run("settle the answer", func(t *testing.T) {
		a := StartNode(t, newClient, "s:", "a", nil, hb, ttl)
		b := StartNode(t, newClient, "s:", "b", nil, hb, ttl)
		var wins sync.Map
		var wg sync.WaitGroup
		for _, n := range []*Node{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				won, err := n.Settle(ctx, "a.1700000000.42")
				if err != nil {
					t.Error(err)
				}
				if won {
					wins.Store(n.ID(), true)
				}
			}()
		}
		wg.Wait()
		var winners []string
		wins.Range(func(k, _ any) bool { winners = append(winners, k.(string)); return true })
		if len(winners) != 1 {
			t.Fatalf("winners %v, want exactly one node", winners)
		}
		loser := a
		if winners[0] == "a" {
			loser = b
		}
		if !loser.SettledElsewhere(ctx, "a.1700000000.42") {
			t.Errorf("loser does not see the call answered elsewhere")
		}
	})

	t.Run("API call state and forwarding", func(t *testing.T) {
		a := StartNode(t, newClient, "f:", "a", []string{"b"}, hb, ttl)
		b := StartNode(t, newClient, "f:", "b", []string{"a"}, hb, ttl)
		b.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusTeapot)
			_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(body))
		}))
		if err := b.PutAPICall(ctx, "c1", cluster.APICallEntry{State: []byte(`{"id":"c1","state":"ringing"}`), APIKey: "crm"}); err != nil {
			t.Fatal(err)
		}
		e, ok, err := a.APICall(ctx, "c1")
		if err != nil || !ok || e.Node != "b" || e.APIKey != "crm" || !strings.Contains(string(e.State), "ringing") {
			t.Fatalf("API call seen from a: %+v %v %v", e, ok, err)
		}
		req, _ := http.NewRequest("DELETE", "/api/v1/calls/c1", nil)
		req.Header.Set("Authorization", "Bearer k")
		var rep cluster.Reply
		waitFor(t, 2*time.Second, "b listening", func() bool {
			rep, err = a.Forward(ctx, "b", req, []byte("x"))
			return err == nil
		})
		if rep.Status != http.StatusTeapot || string(rep.Body) != "DELETE /api/v1/calls/c1 Bearer k x" {
			t.Fatalf("forwarded reply %d %q", rep.Status, rep.Body)
		}
		if _, err := a.Forward(ctx, "nobody", req, nil); !errors.Is(err, cluster.ErrNodeUnreachable) {
			t.Fatalf("forward to a node that is not listening: %v", err)
		}
	})

	t.Run("a forwarded request slower than a resend runs once", func(t *testing.T) {
		a := StartNode(t, newClient, "r:", "a", []string{"b"}, hb, ttl)
		b := StartNode(t, newClient, "r:", "b", []string{"a"}, hb, ttl)
		var runs atomic.Int32
		b.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				runs.Add(1)
				time.Sleep(2500 * time.Millisecond) // two resends arrive meanwhile
			}
			w.WriteHeader(http.StatusCreated)
		}))
		ping, _ := http.NewRequest("GET", "/ping", nil)
		waitFor(t, 2*time.Second, "b listening", func() bool { _, err := a.Forward(ctx, "b", ping, nil); return err == nil })
		req, _ := http.NewRequest("POST", "/slow", nil)
		rep, err := a.Forward(ctx, "b", req, nil)
		if err != nil || rep.Status != http.StatusCreated {
			t.Fatalf("forwarded: %d %v", rep.Status, err)
		}
		time.Sleep(1500 * time.Millisecond) // a late resend would run it again
		if n := runs.Load(); n != 1 {
			t.Fatalf("the request ran %d times, want once", n)
		}
	})

	t.Run("new rooms go to the least loaded node", func(t *testing.T) {
		a := StartNode(t, newClient, "pick:", "a", []string{"bb"}, hb, ttl)
		_ = StartNode(t, newClient, "pick:", "bb", []string{"a"}, hb, ttl) // two calls (len of its ID) to a's one
		waitFor(t, time.Second, "bb known", func() bool { return a.NodeAlive(ctx, "bb") })
		n, err := a.PickRoomNode(ctx)
		if err != nil || n.ID != "a" {
			t.Fatalf("picked %+v %v, want a (fewer calls)", n, err)
		}
	})
}
