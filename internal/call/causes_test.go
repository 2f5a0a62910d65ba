package call

import (
	"testing"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/wire"
)

func TestDialStatusCause(t *testing.T) {
	for status, want := range map[string]string{
		"BUSY":        wire.CauseUserBusy,
		"NOANSWER":    wire.CauseNoAnswer,
		"CONGESTION":  wire.CauseCongestion,
		"CHANUNAVAIL": wire.CauseSubscriberAbsent,
		"CANCEL":      wire.CauseNormalClearing,
		"TORTURE":     wire.CauseTemporaryFailure,
	} {
		if got := dialStatusCause(status); got != want {
			t.Errorf("dialStatusCause(%s) = %s, want %s", status, got, want)
		}
	}
}

func TestARIReasonRoundTrip(t *testing.T) {
	// Every cause the browser can be told maps to a hangup reason ARI accepts.
	valid := map[string]bool{"normal": true, "busy": true, "congestion": true, "no_answer": true, "rejected": true,
		"unallocated": true, "answered_elsewhere": true, "failure": true}
	for _, cause := range []string{wire.CauseUserBusy, wire.CauseNoAnswer, wire.CauseCongestion,
		wire.CauseCallRejected, wire.CauseUnallocatedNumber, wire.CauseAnsweredElsewhere,
		wire.CauseTemporaryFailure, wire.CauseNormalClearing, "something_new"} {
		if r := ariReason(cause); !valid[r] {
			t.Errorf("ariReason(%s) = %q, not an ARI hangup reason", cause, r)
		}
	}
}

func TestUserFor(t *testing.T) {
	m := &Manager{o: Options{Users: map[string]string{"7001": "alice"}}}
	for _, tc := range []struct {
		d       dialplan.Decision
		want    string
		wantErr bool
	}{
		{dialplan.Decision{Kind: dialplan.KindUser, Number: "7001"}, "alice", false},
		{dialplan.Decision{Kind: dialplan.KindUser, Number: "bob"}, "bob", false},
		{dialplan.Decision{Kind: dialplan.KindUser, Number: "7002"}, "", true},
		{dialplan.Decision{Kind: dialplan.KindExtension, Number: "600"}, "", true},
	} {
		got, err := m.userFor(tc.d)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("userFor(%+v) = %q, %v", tc.d, got, err)
		}
	}
}
