package call

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/webrtc/signal"
)

type downStore struct{ dialplan.Store }

func (downStore) Lookup(context.Context, string) (dialplan.Mapping, error) {
	return dialplan.Mapping{}, dialplan.ErrStoreUnavailable
}

func TestRoutePhone(t *testing.T) {
	ctx := context.Background()
	st := dialplan.NewMemoryStore()
	_ = st.Map(ctx, "+442079460000", "sales", 0)
	_ = st.Map(ctx, "8001", "sales", 0)
	_ = st.Map(ctx, "+15550001111", "vip", 0) // a caller ID
	_ = st.Map(ctx, "8002", "ended", 0)
	_ = st.Map(ctx, "8003", "sales", time.Nanosecond)
	time.Sleep(time.Millisecond)
	exists := func(r string) bool { return r == "sales" || r == "vip" }
	for _, tc := range []struct {
		dialled, caller, room, treatment string
	}{
		{"+442079460000", "", "sales", ""},
		{"8001", "101", "sales", ""},
		{"442079469999", "+15550001111", "vip", ""}, // unmapped DID, mapped caller ID
		{"8002", "", "", TreatmentUnallocated},      // mapped to a room that has ended
		{"8003", "", "", TreatmentUnallocated},      // expired
		{"8999", "", "", TreatmentUnallocated},
		{"8001&PJSIP/x", "", "", TreatmentUnallocated}, // injection never reaches the store
		{"", "", "", TreatmentUnallocated},
	} {
		got := routePhone(ctx, st, exists, tc.dialled, tc.caller)
		if got.room != tc.room || got.treatment != tc.treatment || (got.treatment != "" && got.reason == "") {
			t.Errorf("routePhone(%q, %q) = %+v, want room %q treatment %q", tc.dialled, tc.caller, got, tc.room, tc.treatment)
		}
	}
	got := routePhone(ctx, downStore{}, exists, "8001", "")
	if got.treatment != TreatmentUnavailable || !strings.Contains(got.reason, "unavailable") {
		t.Errorf("store down: %+v", got)
	}
	if got := routePhone(ctx, nil, exists, "8001", ""); got.treatment != TreatmentUnallocated {
		t.Errorf("no store: %+v", got)
	}
}

func TestRoomMessage(t *testing.T) {
	ev := rooms.Event{Type: rooms.EventJoined, Room: "r", Participant: rooms.Participant{ID: "p1", Kind: rooms.KindPhone, CallerID: "101"}}
	m := roomMessage("c1", ev, "p2")
	if m.Type != signal.TypeRoom || m.Event != signal.RoomEventJoined || m.Participant == nil || m.Participant.You || m.Participant.Kind != "phone" {
		t.Errorf("joined: %+v", m)
	}
	if m := roomMessage("c1", ev, "p1"); !m.Participant.You {
		t.Errorf("own participant not marked: %+v", m.Participant)
	}
	if m := roomMessage("c1", rooms.Event{Type: rooms.EventEnded, Room: "r"}, "p1"); m.Event != signal.RoomEventEnded || m.Participant != nil {
		t.Errorf("ended: %+v", m)
	}
}
