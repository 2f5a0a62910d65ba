package rooms

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/wire"
)

type fakeBackend struct {
	mu       sync.Mutex
	attached map[string]bool
	closed   int
	failNext error
}

type fakeAtt struct {
	b  *fakeBackend
	ch string
}

func (a fakeAtt) Detach(context.Context) error {
	a.b.mu.Lock()
	delete(a.b.attached, a.ch)
	a.b.mu.Unlock()
	return nil
}

func (b *fakeBackend) Kind() string { return "fake" }
func (b *fakeBackend) Attach(_ context.Context, _, ch, _ string) (Attachment, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.failNext; err != nil {
		b.failNext = nil
		return nil, err
	}
	b.attached[ch] = true
	return fakeAtt{b, ch}, nil
}
func (b *fakeBackend) Close(context.Context) error {
	b.mu.Lock()
	b.closed++
	b.mu.Unlock()
	return nil
}

func newTestRegistry(grace time.Duration) (*Registry, map[string]*fakeBackend) {
	bs := map[string]*fakeBackend{}
	var mu sync.Mutex
	r := New(Options{Grace: grace, NewBackend: func(_, id string) Backend {
		mu.Lock()
		defer mu.Unlock()
		b := &fakeBackend{attached: map[string]bool{}}
		bs[id] = b
		return b
	}})
	return r, bs
}

func TestNewRoomIDIsRandomAndValid(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewRoomID()
		if len(id) != 26 || dialplan.ValidateRoomID(id) != nil {
			t.Fatalf("room id %q: want 26 valid characters", id)
		}
		if seen[id] {
			t.Fatalf("duplicate room id %q", id)
		}
		seen[id] = true
	}
}

func TestCreateValidates(t *testing.T) {
	r, _ := newTestRegistry(time.Minute)
	ctx := context.Background()
	for _, o := range []CreateOptions{
		{ID: "a b"}, {ID: "x&PJSIP/evil"}, {ID: strings.Repeat("a", 65)}, {Backend: "sfu"}, {Grace: -time.Second},
	} {
		if _, err := r.Create(ctx, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%+v) = %v, want ErrInvalid", o, err)
		}
	}
	if _, err := r.Create(ctx, CreateOptions{ID: "sales"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Create(ctx, CreateOptions{ID: "sales"}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v, want ErrExists", err)
	}
	rm, err := r.Create(ctx, CreateOptions{})
	if err != nil || rm.Backend != BackendBridge || len(rm.ID) != 26 {
		t.Errorf("random room: %+v %v", rm, err)
	}
}

// A node holding rooms.max_rooms rooms refuses another with ErrFull (the API's 503), not ErrInvalid (a 400 that
// tells the client its request was wrong), and takes one again once a room has ended.
func TestCreateAtTheRoomLimit(t *testing.T) {
	r := New(Options{MaxRooms: 2, NewBackend: func(_, _ string) Backend { return &fakeBackend{attached: map[string]bool{}} }})
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := r.Create(ctx, CreateOptions{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.Create(ctx, CreateOptions{ID: "c"})
	if !errors.Is(err, ErrFull) || errors.Is(err, ErrInvalid) {
		t.Fatalf("third room: %v, want ErrFull", err)
	}
	if !strings.Contains(err.Error(), "rooms.max_rooms") {
		t.Errorf("the refusal does not name the setting: %v", err)
	}
	if err := r.End(ctx, "a", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Create(ctx, CreateOptions{ID: "c"}); err != nil {
		t.Errorf("after one ended: %v", err)
	}
}

func recv(t *testing.T, m *Member) Event {
	t.Helper()
	select {
	case ev := <-m.Events():
		return ev
	case <-time.After(time.Second):
		t.Fatal("no room event")
		return Event{}
	}
}

func TestJoinLeaveEventsAndGrace(t *testing.T) {
	r, bs := newTestRegistry(50 * time.Millisecond)
	ctx := context.Background()
	rm, _ := r.Create(ctx, CreateOptions{ID: "r1"})
	a, err := r.Join(ctx, rm.ID, JoinSpec{Kind: KindBrowser, Name: "Alice\x00\n", Channel: "em-a"})
	if err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, a); ev.Type != EventJoined || ev.Participant.ID != a.ID() || ev.Participant.Name != "Alice" {
		t.Errorf("own join event: %+v", ev)
	}
	b, err := r.Join(ctx, rm.ID, JoinSpec{Kind: KindPhone, CallerID: "+4420", Channel: "pjsip-b"})
	if err != nil {
		t.Fatal(err)
	}
	if ev := recv(t, a); ev.Type != EventJoined || ev.Participant.Kind != KindPhone || ev.Participant.CallerID != "+4420" {
		t.Errorf("b's join seen by a: %+v", ev)
	}
	recv(t, b)
	b.SetTalking(true)
	if ev := recv(t, a); ev.Type != EventUpdated || !ev.Participant.Talking {
		t.Errorf("talking: %+v", ev)
	}
	if ps := a.Participants(); len(ps) != 2 || ps[0].ID != a.ID() {
		t.Errorf("participants: %+v", ps)
	}
	b.Leave(ctx, "test")
	b.Leave(ctx, "twice is fine")
	if ev := recv(t, a); ev.Type != EventLeft || ev.Participant.ID != b.ID() {
		t.Errorf("leave: %+v", ev)
	}
	if bs["r1"].attached["pjsip-b"] {
		t.Error("left participant still attached")
	}
	a.Leave(ctx, "test")
	// Empty: ends after the grace period and closes its backend.
	closed := func() int {
		bs["r1"].mu.Lock()
		defer bs["r1"].mu.Unlock()
		return bs["r1"].closed
	}
	deadline := time.Now().Add(2 * time.Second)
	for closed() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r.Exists("r1") || closed() != 1 {
		t.Errorf("room not ended after grace: exists %v closed %d", r.Exists("r1"), closed())
	}
	r.Close(ctx)
}

func TestRejoinWithinGraceKeepsRoom(t *testing.T) {
	r, _ := newTestRegistry(100 * time.Millisecond)
	ctx := context.Background()
	r.Create(ctx, CreateOptions{ID: "r2"})
	a, _ := r.Join(ctx, "r2", JoinSpec{Kind: KindBrowser, Channel: "a"})
	a.Leave(ctx, "x")
	time.Sleep(40 * time.Millisecond)
	b, err := r.Join(ctx, "r2", JoinSpec{Kind: KindBrowser, Channel: "b"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if !r.Exists("r2") {
		t.Error("room ended although someone rejoined within the grace period")
	}
	b.Leave(ctx, "x")
	r.Close(ctx)
}

func TestKickAndEnd(t *testing.T) {
	r, bs := newTestRegistry(time.Minute)
	ctx := context.Background()
	r.Create(ctx, CreateOptions{ID: "r3"})
	kicked := make(chan string, 4)
	a, _ := r.Join(ctx, "r3", JoinSpec{Kind: KindBrowser, Channel: "a", Kick: func(s string) { kicked <- "a:" + s }})
	r.Join(ctx, "r3", JoinSpec{Kind: KindPhone, Channel: "b", Kick: func(s string) { kicked <- "b:" + s }})
	if err := r.Kick(ctx, "r3", a.ID()); err != nil {
		t.Fatal(err)
	}
	if got := <-kicked; got != "a:kicked" {
		t.Errorf("kick: %s", got)
	}
	if err := r.Kick(ctx, "r3", "p-nobody"); !errors.Is(err, ErrNoParticipant) {
		t.Errorf("kick unknown: %v", err)
	}
	if err := r.End(ctx, "r3", "test"); err != nil {
		t.Fatal(err)
	}
	if got := <-kicked; got != "b:room ended" {
		t.Errorf("end kicked: %s", got)
	}
	if len(bs["r3"].attached) != 0 || bs["r3"].closed != 1 {
		t.Errorf("after end: attached %v closed %d", bs["r3"].attached, bs["r3"].closed)
	}
	if _, err := r.Join(ctx, "r3", JoinSpec{Kind: KindBrowser, Channel: "c"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("join ended room: %v", err)
	}
	if err := r.End(ctx, "r3", "again"); !errors.Is(err, ErrNotFound) {
		t.Errorf("end twice: %v", err)
	}
	r.Close(ctx)
}

func TestJoinFailureLeavesNothing(t *testing.T) {
	r, bs := newTestRegistry(time.Minute)
	ctx := context.Background()
	r.Create(ctx, CreateOptions{ID: "r4"})
	bs["r4"].failNext = errors.New("asterisk said no")
	if _, err := r.Join(ctx, "r4", JoinSpec{Kind: KindBrowser, Channel: "a"}); err == nil {
		t.Fatal("join succeeded")
	}
	if ps, _ := r.Participants("r4"); len(ps) != 0 {
		t.Errorf("participants after failed join: %+v", ps)
	}
	r.Close(ctx)
}

type fakeTickets map[string][2]string

func (f fakeTickets) RedeemFor(_ context.Context, t string, _ tickets.Identity) (tickets.Grant, error) {
	v, ok := f[t]
	if !ok {
		return tickets.Grant{}, errors.New("unknown or used ticket")
	}
	return tickets.Grant{Room: v[0], Role: v[1]}, nil
}

func TestAdmit(t *testing.T) {
	r, _ := newTestRegistry(time.Minute)
	ctx := context.Background()
	r.Create(ctx, CreateOptions{ID: "sales"})
	st := dialplan.NewMemoryStore()
	_ = st.Map(ctx, "+442079460000", "sales", 0)
	_ = st.Map(ctx, "8001", "gone", 0)
	ad := Admitter{Rooms: r, Store: st, Tickets: fakeTickets{"tk1": {"sales", "participant"}, "tk2": {"nope", ""}}}
	for _, tc := range []struct {
		name string
		g    Grant
		req  JoinRequest
		code string // "" = accept
		room string
	}{
		{"own room", Grant{Room: "sales"}, JoinRequest{Room: "sales"}, "", "sales"},
		{"other room", Grant{Room: "support"}, JoinRequest{Room: "sales"}, wire.CodeForbiddenDestination, ""},
		{"no room claim", Grant{}, JoinRequest{Room: "sales"}, wire.CodeForbiddenDestination, ""},
		{"unknown room", Grant{Room: "ghost"}, JoinRequest{Room: "ghost"}, wire.CodeUnknownRoom, ""},
		{"bad role", Grant{Room: "sales", Role: "admin"}, JoinRequest{Room: "sales"}, wire.CodeForbiddenDestination, ""},
		{"agent by number", Grant{Role: RoleAgent}, JoinRequest{Number: "+44 20 7946 0000"}, "", "sales"},
		{"non-agent by number", Grant{Room: "sales"}, JoinRequest{Number: "+442079460000"}, wire.CodeForbiddenDestination, ""},
		{"agent unmapped", Grant{Role: RoleAgent}, JoinRequest{Number: "+442079461111"}, wire.CodeUnknownRoom, ""},
		{"agent injection", Grant{Role: RoleAgent}, JoinRequest{Number: "100&PJSIP/x"}, wire.CodeInvalidNumber, ""},
		{"agent mapped to ended room", Grant{Role: RoleAgent}, JoinRequest{Number: "8001"}, wire.CodeUnknownRoom, ""},
		{"ticket", Grant{}, JoinRequest{Ticket: "tk1"}, "", "sales"},
		{"bad ticket", Grant{}, JoinRequest{Ticket: "zzz"}, wire.CodeInvalidTicket, ""},
		{"ticket for unknown room", Grant{}, JoinRequest{Ticket: "tk2"}, wire.CodeUnknownRoom, ""},
	} {
		got := ad.Admit(ctx, tc.g, tc.req)
		if tc.code == "" && (!got.Accept || got.Room != tc.room) {
			t.Errorf("%s: %+v, want accept into %s", tc.name, got, tc.room)
		}
		if tc.code != "" && (got.Accept || got.Code != tc.code) {
			t.Errorf("%s: %+v, want refusal %s", tc.name, got, tc.code)
		}
	}
	if got := (Admitter{Rooms: r}).Admit(ctx, Grant{}, JoinRequest{Ticket: "tk1"}); got.Accept || got.Code != wire.CodeForbiddenDestination {
		t.Errorf("ticket without redeemer: %+v", got)
	}
	if got := (Admitter{Rooms: r}).Admit(ctx, Grant{Role: RoleAgent}, JoinRequest{Number: "8001"}); got.Accept || got.Code != wire.CodeUnavailable {
		t.Errorf("number without store: %+v", got)
	}
	r.Close(ctx)
}
