package call

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/relay"
	"github.com/patchbay/patchbay/wire"
)

// statsRelay is a mediaRelay whose counters the test sets.
type statsRelay struct{ st relay.Stats }

func (r *statsRelay) Start() error                 { return nil }
func (r *statsRelay) Close() error                 { return nil }
func (r *statsRelay) Stats() relay.Stats           { return r.st }
func (r *statsRelay) FirstPacket() <-chan struct{} { return nil }

// TestOneWayFindingOutlivesHold: one-way audio found before a hold is on the call's record at the end, although
// the hold restarts the watch (a held call is silent on purpose).
func TestOneWayFindingOutlivesHold(t *testing.T) {
	rl := &statsRelay{}
	start := time.Now()
	c := &Call{
		m:        &Manager{o: Options{OneWayAfter: 2 * time.Second}},
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		browser:  &browserLeg{rl: rl},
		answered: start,
	}
	// The browser sends, nothing comes back: one-way after 2 s.
	for i := range 10 {
		rl.st.ToAsterisk.Packets += 25
		c.observeTick(start.Add(time.Duration(i) * 500 * time.Millisecond))
	}
	c.cti.heldByFar = true
	c.observeTick(start.Add(5 * time.Second))
	c.cti.heldByFar = false
	c.observeEnd(&ending{cause: wire.CauseNormalClearing})
	if !c.obs.rec.Has(wire.QualityOneWayAudio) || c.obs.rec.OneWay == "" {
		t.Errorf("record after a hold: flags %v, one_way %q; want the one-way finding from before the hold", c.obs.rec.Flags, c.obs.rec.OneWay)
	}
}

// TestEveryKindIsADirection: a call's kind is its records' and metrics' direction, so every kind is in cdr's closed
// set (metrics count anything else as "other").
func TestEveryKindIsADirection(t *testing.T) {
	for _, k := range []Kind{KindBrowserOut, KindPhoneIn, KindRoom, KindPhoneRoom, KindPhonePSTN, KindAPI, KindTransfer, KindSupervise} {
		if !cdr.ValidDirection(string(k)) {
			t.Errorf("kind %q is not a cdr direction", k)
		}
	}
}
