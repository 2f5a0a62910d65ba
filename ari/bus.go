package ari

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Filter selects events for a Subscription. Zero value: everything.
type Filter struct {
	// Name labels the subscription in logs (e.g. the call ID).
	Name string
	// Types keeps only these event types; empty keeps all.
	Types []string
	// IDs keeps only events concerning one of these channel or bridge IDs;
	// empty keeps all. Synthetic events (Connected, Disconnected, Reconciled)
	// pass the ID filter so every owner learns about connection loss.
	IDs []string
	// QueueSize overrides DefaultQueueSize.
	QueueSize int
}

// matchType reports whether the filter's type list admits t.
func (f *Filter) matchType(t string) bool {
	return len(f.Types) == 0 || slices.Contains(f.Types, t)
}

// Subscription receives the events matching its filter, in order, through a
// bounded queue. If the queue is ever full an event is dropped, counted and
// logged: the read loop never waits for a slow subscriber.
type Subscription struct {
	bus    *bus
	filter Filter
	ch     chan Event

	mu     sync.Mutex // guards closed and sending on ch
	closed bool

	dropped  atomic.Uint64
	lastWarn atomic.Int64 // unix nanos of the last drop warning
}

// Events returns the channel of matching events; it is closed by Close.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Dropped returns how many events were dropped because the queue was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes and closes Events. Safe to call more than once.
func (s *Subscription) Close() {
	s.bus.remove(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

// deliver enqueues ev without blocking.
func (s *Subscription) deliver(ev Event, log *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.ch <- ev:
		return
	default:
	}
	n := s.dropped.Add(1)
	// Warn at most once a second per subscription so a stuck consumer cannot
	// flood the log; the count carries the total.
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if n == 1 || now-last >= int64(time.Second) {
		if s.lastWarn.CompareAndSwap(last, now) {
			log.Warn("ari subscription queue full: event dropped",
				"subscription", s.filter.Name, "event_type", ev.EventType(),
				"dropped_total", n, "queue_size", cap(s.ch))
		}
	}
}

// bus fans events out to subscriptions. Subscriptions with IDs are indexed by
// ID, so an event costs work only for the subscriptions it concerns, not for
// every call on the system.
type bus struct {
	log  *slog.Logger
	mu   sync.RWMutex
	all  map[*Subscription]struct{}            // every subscription
	any  map[*Subscription]struct{}            // subscriptions without an ID filter
	byID map[string]map[*Subscription]struct{} // ID → subscriptions naming it
}

func newBus(log *slog.Logger) *bus {
	return &bus{log: log, all: map[*Subscription]struct{}{}, any: map[*Subscription]struct{}{},
		byID: map[string]map[*Subscription]struct{}{}}
}

func (b *bus) subscribe(f Filter) *Subscription {
	n := f.QueueSize
	if n <= 0 {
		n = DefaultQueueSize
	}
	f.Types = slices.Clone(f.Types)
	f.IDs = slices.Clone(f.IDs)
	s := &Subscription{bus: b, filter: f, ch: make(chan Event, n)}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.all[s] = struct{}{}
	if len(f.IDs) == 0 {
		b.any[s] = struct{}{}
	}
	for _, id := range f.IDs {
		m := b.byID[id]
		if m == nil {
			m = map[*Subscription]struct{}{}
			b.byID[id] = m
		}
		m[s] = struct{}{}
	}
	return s
}

// Add widens a subscription with an ID filter to more IDs (a call learns some IDs only as it goes: a phone
// that answers, a channel it adopts). Events published before Add are not replayed. A subscription without an
// ID filter already sees everything and stays so.
func (s *Subscription) Add(ids ...string) {
	b := s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.all[s]; !ok || len(s.filter.IDs) == 0 {
		return
	}
	for _, id := range ids {
		if id == "" || slices.Contains(s.filter.IDs, id) {
			continue
		}
		s.filter.IDs = append(s.filter.IDs, id)
		m := b.byID[id]
		if m == nil {
			m = map[*Subscription]struct{}{}
			b.byID[id] = m
		}
		m[s] = struct{}{}
	}
}

func (b *bus) remove(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.all, s)
	delete(b.any, s)
	for _, id := range s.filter.IDs {
		if m := b.byID[id]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(b.byID, id)
			}
		}
	}
}

func (b *bus) publish(ev Event) {
	t := ev.EventType()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if isSynthetic(t) { // connection state goes to everyone
		for s := range b.all {
			if s.filter.matchType(t) {
				s.deliver(ev, b.log)
			}
		}
		return
	}
	for s := range b.any {
		if s.filter.matchType(t) {
			s.deliver(ev, b.log)
		}
	}
	ids := slices.Concat(ev.ChannelIDs(), ev.BridgeIDs())
	for i, id := range ids {
		for s := range b.byID[id] {
			// Deliver once even if the event names several of s's IDs.
			if !s.filter.matchType(t) || namesEarlier(s, ids[:i]) {
				continue
			}
			s.deliver(ev, b.log)
		}
	}
}

// namesEarlier reports whether s also subscribed to one of the earlier IDs
// (and so already got the event).
func namesEarlier(s *Subscription, earlier []string) bool {
	for _, id := range earlier {
		if slices.Contains(s.filter.IDs, id) {
			return true
		}
	}
	return false
}

// Subscribe returns a subscription to events matching f. Subscribe to a
// resource's ID (see NewID) before creating it so its first events are kept.
// The caller must Close it.
func (c *Client) Subscribe(f Filter) *Subscription { return c.bus.subscribe(f) }

// Subscribe returns a subscription to this channel's events, optionally only
// of the given types.
func (h *ChannelHandle) Subscribe(types ...string) *Subscription {
	return h.c.Subscribe(Filter{Name: "channel " + h.id, IDs: []string{h.id}, Types: types})
}

// Subscribe returns a subscription to this bridge's events, optionally only
// of the given types.
func (h *BridgeHandle) Subscribe(types ...string) *Subscription {
	return h.c.Subscribe(Filter{Name: "bridge " + h.id, IDs: []string{h.id}, Types: types})
}
