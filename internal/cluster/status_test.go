package cluster

import (
	"bytes"
	"strings"
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
