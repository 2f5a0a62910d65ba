package call

import (
	"testing"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/wire"
)

// TestLegEndCause: which cause a far leg's end is reported with, from the events Asterisk sends about it.
func TestLegEndCause(t *testing.T) {
	req := func(cause int) ari.Event {
		e := &ari.ChannelHangupRequest{Cause: cause}
		e.Channel.ID = "far"
		return e
	}
	destroyed := func(cause int) ari.Event {
		e := &ari.ChannelDestroyed{Cause: cause}
		e.Channel.ID = "far"
		return e
	}
	dial := func(status string) ari.Event {
		e := &ari.Dial{Dialstatus: status}
		e.Peer.ID = "far"
		return e
	}
	cases := []struct {
		name   string
		events []ari.Event
		want   string
	}{
		{"destroyed with a cause", []ari.Event{destroyed(17)}, wire.CauseUserBusy},
		{"destroyed without one", []ari.Event{destroyed(0)}, wire.CauseNormalClearing},
		{"request's cause when destroyed without one", []ari.Event{req(17), destroyed(0)}, wire.CauseUserBusy},
		// A Local channel whose ;2 ran Hangup(17): ;1 was asked to hang up with 17 and destroyed with 16.
		{"request's cause over a generic normal clearing", []ari.Event{req(17), destroyed(16)}, wire.CauseUserBusy},
		{"a specific cause at destruction wins", []ari.Event{req(16), destroyed(34)}, wire.CauseName(34)},
		{"normal clearing both times", []ari.Event{req(16), destroyed(16)}, wire.CauseNormalClearing},
		{"dial status first", []ari.Event{dial("BUSY"), destroyed(16)}, wire.CauseUserBusy},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := &chanLeg{id: "far", made: true}
			var got string
			for _, ev := range tc.events {
				if st, cause := l.observe(ev); st == legGone {
					got = cause
				}
			}
			if got != tc.want {
				t.Errorf("ended with %q, want %q", got, tc.want)
			}
		})
	}
}
