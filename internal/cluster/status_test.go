package cluster

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestStatusPrint(t *testing.T) {
	s := Status{Redis: "Sentinel master pb", Nodes: []Node{
		{ID: "a", PublicURL: "wss://a/ws", SIPAddress: "10.0.0.1:5060", Calls: 12, Rooms: 2, CPU: 0.31, MaxCPU: 0.85, Alive: true, HeartbeatAge: 700 * time.Millisecond},
		{ID: "b", Calls: 40, CPU: 0.9, MaxCPU: 0.85, MaxCalls: 100, Alive: true},
		{ID: "c", Alive: false, HeartbeatAge: 42 * time.Second},
	}}
	var buf bytes.Buffer
	if err := s.Print(&buf, false); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"NODE", "a     up", "700ms", "31%", "wss://a/ws", "b     full", "cpu 85%, 100 calls", "c     DOWN", "42s", "DOWN: c"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	if err := s.Print(&buf, true); err != nil || !strings.Contains(buf.String(), `"id": "b"`) {
		t.Errorf("json: %v %s", err, buf.String())
	}
}

func TestPickLeastLoaded(t *testing.T) {
	cases := []struct {
		name  string
		nodes []Node
		want  string
	}{
		{"lower cpu", []Node{{ID: "a", CPU: 0.5}, {ID: "b", CPU: 0.2}}, "b"},
		{"cpu within 5 % is a tie: fewer calls", []Node{{ID: "a", CPU: 0.21, Calls: 9}, {ID: "b", CPU: 0.22, Calls: 3}}, "b"},
		{"full tie: this node", []Node{{ID: "a"}, {ID: "self"}, {ID: "b"}}, "self"},
		{"then the lowest id", []Node{{ID: "c"}, {ID: "b"}}, "b"},
	}
	for _, c := range cases {
		if got := pickLeastLoaded(c.nodes, "self"); got.ID != c.want {
			t.Errorf("%s: picked %s, want %s", c.name, got.ID, c.want)
		}
	}
	if (Node{CPU: 0.9, MaxCPU: 0.85}).underCeiling() || (Node{Calls: 5, MaxCalls: 5}).underCeiling() || !(Node{CPU: 0.5, MaxCPU: 0.85}).underCeiling() ||
		!(Node{CPU: 1, MaxCPU: 1}).underCeiling() {
		t.Error("ceiling")
	}
}

// A node that refuses new calls (shutting down, or its Asterisk lost) beats on, with its rooms and calls, but is
// given no new room: neither by another node nor by itself. It would otherwise look the least loaded of all.
func TestPickRoomNodeSkipsUnavailable(t *testing.T) {
	ctx := context.Background()
	var aDown, bDown atomic.Bool
	a, rc := newTestCluster(t, Options{Self: Node{ID: "a", MaxCPU: 0.85}, Peers: []string{"b"},
		Load: func() Load { return Load{Calls: 50, Unavailable: aDown.Load()} }})
	b, err := New(Options{Client: rc, Prefix: "t:", Self: Node{ID: "b", MaxCPU: 0.85}, Peers: []string{"a"},
		Heartbeat: 200 * time.Millisecond, TTL: 10 * time.Second, CPU: func() float64 { return 0.1 },
		Load: func() Load { return Load{Unavailable: bDown.Load()} }})
	if err != nil {
		t.Fatal(err)
	}
	pick := func(c *Cluster) string {
		t.Helper()
		if err := a.beat(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.beat(ctx); err != nil {
			t.Fatal(err)
		}
		n, err := c.PickRoomNode(ctx)
		if errors.Is(err, ErrAtCapacity) {
			return "none"
		}
		if err != nil {
			t.Fatal(err)
		}
		return n.ID
	}
	if got := pick(a); got != "b" {
		t.Fatalf("a picked %s, want b (no calls)", got)
	}
	bDown.Store(true) // b drains: its calls end, so it has the fewest
	if got := pick(a); got != "a" {
		t.Errorf("a picked %s while b refuses new calls, want a", got)
	}
	if got := pick(b); got != "a" {
		t.Errorf("b, refusing new calls, picked %s for a new room, want a", got)
	}
	st, err := ReadStatus(ctx, rc, "t:", "test")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := st.Print(&buf, false); err != nil || !strings.Contains(buf.String(), "b     unavailable") {
		t.Errorf("status of a node refusing new calls: %v\n%s", err, buf.String())
	}
	aDown.Store(true)
	if got := pick(a); got != "none" {
		t.Errorf("every node refuses new calls, yet %s was picked", got)
	}
}
