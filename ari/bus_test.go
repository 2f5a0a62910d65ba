package ari

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

func mustDecode(t *testing.T, s string) Event {
	t.Helper()
	ev, err := DecodeEvent([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestBusFilter(t *testing.T) {
	b := newBus(slog.New(slog.DiscardHandler))
	start := mustDecode(t, `{"type":"StasisStart","channel":{"id":"c1"}}`)
	dtmf := mustDecode(t, `{"type":"ChannelDtmfReceived","digit":"1","channel":{"id":"c2"}}`)
	entered := mustDecode(t, `{"type":"ChannelEnteredBridge","bridge":{"id":"b1"},"channel":{"id":"c2"}}`)
	conn := &Connected{EventBase: EventBase{Type: TypeConnected}}

	tests := []struct {
		name   string
		filter Filter
		want   []string // event types received, in order
	}{
		{"all", Filter{}, []string{"StasisStart", "ChannelDtmfReceived", "ChannelEnteredBridge", "Connected"}},
		{"by type", Filter{Types: []string{TypeChannelDtmfReceived}}, []string{"ChannelDtmfReceived"}},
		{"by channel", Filter{IDs: []string{"c1"}}, []string{"StasisStart", "Connected"}},
		{"by bridge", Filter{IDs: []string{"b1"}}, []string{"ChannelEnteredBridge", "Connected"}},
		{"by channel and type", Filter{IDs: []string{"c2"}, Types: []string{TypeChannelEnteredBridge}}, []string{"ChannelEnteredBridge"}},
		{"unknown id", Filter{IDs: []string{"zzz"}}, []string{"Connected"}},
		{"two ids of one event, delivered once", Filter{IDs: []string{"c2", "b1"}}, []string{"ChannelDtmfReceived", "ChannelEnteredBridge", "Connected"}},
	}
	subs := make([]*Subscription, len(tests))
	for i, tt := range tests {
		subs[i] = b.subscribe(tt.filter)
	}
	for _, ev := range []Event{start, dtmf, entered, conn} {
		b.publish(ev)
	}
	for i, tt := range tests {
		s := subs[i]
		s.Close()
		var got []string
		for ev := range s.Events() {
			got = append(got, ev.EventType())
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
		s.Close() // twice is fine
	}
	if len(b.all)+len(b.any)+len(b.byID) != 0 {
		t.Errorf("subscriptions left after Close: %d %d %d", len(b.all), len(b.any), len(b.byID))
	}
}

func TestBusDropAccounting(t *testing.T) {
	lb := &logBuf{}
	b := newBus(slog.New(slog.NewTextHandler(lb, nil)))
	slow := b.subscribe(Filter{Name: "call-42", QueueSize: 2})
	fast := b.subscribe(Filter{Name: "fast"})
	defer slow.Close()
	defer fast.Close()
	ev := mustDecode(t, `{"type":"ChannelDtmfReceived","digit":"1","channel":{"id":"c"}}`)
	for range 5 {
		b.publish(ev)
	}
	if slow.Dropped() != 3 {
		t.Errorf("slow dropped = %d, want 3", slow.Dropped())
	}
	if fast.Dropped() != 0 || len(fast.Events()) != 5 {
		t.Errorf("fast subscriber affected: dropped %d, queued %d", fast.Dropped(), len(fast.Events()))
	}
	log := lb.String()
	for _, s := range []string{"level=WARN", "subscription=call-42", "event_type=ChannelDtmfReceived", "dropped_total=1"} {
		if !strings.Contains(log, s) {
			t.Errorf("log lacks %q: %s", s, log)
		}
	}
}

func TestBusConcurrentCloseAndPublish(t *testing.T) {
	b := newBus(slog.New(slog.DiscardHandler))
	ev := mustDecode(t, `{"type":"StasisStart","channel":{"id":"c"}}`)
	var wg sync.WaitGroup
	for range 8 {
		s := b.subscribe(Filter{QueueSize: 1})
		wg.Go(func() { s.Close() })
		wg.Go(func() {
			for range 100 {
				b.publish(ev)
			}
		})
	}
	wg.Wait()
}

func TestHandleSubscribe(t *testing.T) {
	c, err := New(Config{URL: "http://127.0.0.1:1", Username: "u", Password: "p", Application: "a"})
	if err != nil {
		t.Fatal(err)
	}
	chSub := c.Channel("c1").Subscribe(TypeChannelDtmfReceived)
	defer chSub.Close()
	brSub := c.Bridge("b1").Subscribe()
	defer brSub.Close()
	c.bus.publish(mustDecode(t, `{"type":"ChannelDtmfReceived","digit":"5","channel":{"id":"c1"}}`))
	c.bus.publish(mustDecode(t, `{"type":"StasisEnd","channel":{"id":"c1"}}`))
	c.bus.publish(mustDecode(t, `{"type":"ChannelLeftBridge","bridge":{"id":"b1"},"channel":{"id":"c1"}}`))
	if len(chSub.Events()) != 1 || len(brSub.Events()) != 1 {
		t.Errorf("channel sub got %d, bridge sub got %d; want 1 and 1", len(chSub.Events()), len(brSub.Events()))
	}
}

// BenchmarkDispatch: decode one ChannelDtmfReceived and fan it out to 500
// per-call subscriptions (one matches), as the read loop does.
func BenchmarkDispatch(b *testing.B) {
	c, err := New(Config{URL: "http://127.0.0.1:1", Username: "u", Password: "p", Application: "patchbay-test",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 500 {
		s := c.Subscribe(Filter{IDs: []string{NewID(), NewID()}})
		defer s.Close()
		if i == 0 {
			s.Close()
		}
	}
	hit := c.Subscribe(Filter{IDs: []string{"pb-c1"}, QueueSize: 1})
	defer hit.Close()
	msg := []byte(`{"type":"ChannelDtmfReceived",` + evCommon + `,"digit":"5","duration_ms":100,"channel":` + evChan + `}`)
	b.ReportAllocs()
	for b.Loop() {
		c.dispatch(msg)
		select {
		case <-hit.Events():
		default:
		}
	}
}
