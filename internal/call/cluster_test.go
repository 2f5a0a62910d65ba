package call

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/wire"
)

// fakeCluster knows rooms on other nodes, and can be down.
type fakeCluster struct {
	rooms map[string]ClusterNode
	down  bool
}

func (f fakeCluster) ID() string { return "a" }
func (f fakeCluster) UserPeers(context.Context, string) ([]string, error) {
	return nil, nil
}
func (f fakeCluster) RoomNode(_ context.Context, room string) (ClusterNode, bool, error) {
	if f.down {
		return ClusterNode{}, false, errors.New("redis down")
	}
	n, ok := f.rooms[room]
	return n, ok, nil
}
func (f fakeCluster) Settle(context.Context, string) (bool, error)  { return true, nil }
func (f fakeCluster) SettledElsewhere(context.Context, string) bool { return false }

// TestPhonesFindRoomsOnOtherNodes: a number mapped to a room another node holds routes there (the phone is
// forwarded over the trunk), one held here is joined here, and a directory that is down gives the unavailable
// treatment rather than "no such room".
func TestPhonesFindRoomsOnOtherNodes(t *testing.T) {
	ctx := context.Background()
	reg := rooms.New(rooms.Options{NewBackend: func(string, string) rooms.Backend { return nil }})
	if _, err := reg.Create(ctx, rooms.CreateOptions{ID: "here"}); err != nil {
		t.Fatal(err)
	}
	st := dialplan.NewMemoryStore()
	_ = st.Map(ctx, "8001", "here", 0)
	_ = st.Map(ctx, "8002", "there", 0)
	_ = st.Map(ctx, "8003", "gone", 0)
	b := ClusterNode{ID: "b", Endpoint: "cluster-b", URL: "wss://b/ws"}
	m := &Manager{o: Options{Rooms: reg, Numbers: st, Cluster: fakeCluster{rooms: map[string]ClusterNode{"there": b, "here": {ID: "a"}}}}}
	c := &Call{m: m}
	for _, tc := range []struct {
		number, room string
		elsewhere    bool
	}{{"8001", "here", false}, {"8002", "there", true}, {"8003", "", false}} {
		loc := c.roomLocator(ctx)
		rt := routePhone(ctx, st, loc.exists, tc.number, "")
		n, elsewhere := loc.nodes[rt.room]
		if rt.room != tc.room || elsewhere != tc.elsewhere || (elsewhere && n != b) {
			t.Errorf("%s: room %q elsewhere %v (%+v), want %q %v", tc.number, rt.room, elsewhere, n, tc.room, tc.elsewhere)
		}
	}
	m.o.Cluster = fakeCluster{down: true}
	loc := c.roomLocator(ctx)
	if rt := routePhone(ctx, st, loc.exists, "8002", ""); rt.room != "" || loc.failed == nil {
		t.Errorf("directory down: %+v failed %v", rt, loc.failed)
	}
	if rt := routePhone(ctx, st, c.roomLocator(ctx).exists, "8001", ""); rt.room != "here" {
		t.Errorf("a room held here needs no directory: %+v", rt)
	}
}

func TestRoomElsewhereRedirects(t *testing.T) {
	ctx := context.Background()
	m := &Manager{o: Options{Cluster: fakeCluster{rooms: map[string]ClusterNode{"there": {ID: "b", URL: "wss://b/ws"}, "mine": {ID: "a", URL: "wss://a/ws"}}}}}
	for room, want := range map[string]string{"there": "wss://b/ws", "mine": "", "nowhere": ""} {
		if got, err := m.roomElsewhere(ctx, room); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", room, got, err, want)
		}
	}
	m.o.Cluster = fakeCluster{down: true}
	if _, err := m.roomElsewhere(ctx, "there"); err == nil {
		t.Error("directory down: no error")
	}
	ad := rooms.Admitter{Rooms: rooms.New(rooms.Options{NewBackend: func(string, string) rooms.Backend { return nil }}), Elsewhere: m.roomElsewhere}.
		Admit(ctx, rooms.Grant{User: "u", Room: "there"}, rooms.JoinRequest{Room: "there"})
	if ad.Accept || ad.Redirect != "" || ad.Code != wire.CodeUnavailable {
		t.Errorf("join while the directory is down: %+v", ad)
	}
}

// TestRedirectTicketStaysBound: the ticket a redirected browser gets for the room's node admits that browser's user
// only, whether or not the ticket it redeemed here was bound.
func TestRedirectTicketStaysBound(t *testing.T) {
	ctx := context.Background()
	st := tickets.NewMemory()
	tk, err := st.Issue(ctx, redirectTicket(rooms.Admission{Room: "sales", Role: rooms.RoleModerator, Via: "ticket"}, "alice"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.RedeemFor(ctx, tk, tickets.Identity{User: "mallory"}); !errors.Is(err, tickets.ErrWrongIdentity) {
		t.Errorf("another user redeemed the redirect ticket: %v", err)
	}
	g, err := st.RedeemFor(ctx, tk, tickets.Identity{User: "alice"})
	if err != nil || g.Room != "sales" || g.Role != rooms.RoleModerator {
		t.Errorf("alice redeeming her redirect ticket: %+v %v", g, err)
	}
}

func TestClusterKeys(t *testing.T) {
	for key, ok := range map[string]bool{"a.1732190400.12": true, "node-b.1.2": true, "": false, "A.1": false, "a;b": false, "a,b": false} {
		if clusterKeyRe.MatchString(key) != ok {
			t.Errorf("key %q valid = %v", key, !ok)
		}
	}
}
