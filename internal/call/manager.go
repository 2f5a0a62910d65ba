// Package call coordinates calls between browsers and Asterisk. A Manager receives signalling from browsers and
// Stasis events from Asterisk and starts one Call per conversation; each Call owns its context, its goroutines and
// every resource it made (peer connection, relay socket, bridge, channels), and releases them in one idempotent
// close.
package call

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/relay"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Directory finds the live signalling sessions of a browser user (to ring all of them).
type Directory interface {
	SessionsOf(user string) []*signal.Session
}

// Options wire a Manager.
type Options struct {
	ARI    *ari.Client
	Media  *media.API
	Ports  *relay.Ports
	Router *dialplan.Router
	// Users maps numbers (e.g. "7001") to browser user names, so phones can dial users by number.
	Users map[string]string
	// RingTimeout bounds how long an incoming call rings the browsers; DialTimeout how long an outgoing one rings
	// the far end. MaxDuration, if set, ends any call that lasts longer.
	RingTimeout, DialTimeout, MaxDuration time.Duration
	Logger                                *slog.Logger
	// Rooms holds the rooms browsers (join) and phones (Stasis args room/did) enter; nil disables rooms.
	Rooms *rooms.Registry
	// Numbers maps DIDs, room numbers and caller IDs to rooms; nil: phones cannot reach rooms.
	Numbers dialplan.Store
	// Tickets redeems one-time join tickets; nil: joins with a ticket are refused.
	Tickets rooms.TicketRedeemer
	// RoomPeers, if set, is handed every browser peer that joined a room (video between browsers).
	RoomPeers RoomPeerHook
	// PSTN configures outside calls, click-to-call and call limits (pstn.go, originate.go).
	PSTN PSTNOptions
}

// Manager owns every call.
type Manager struct {
	o   Options
	log *slog.Logger
	dir Directory

	mu        sync.Mutex
	ctx       context.Context // set by Run; calls hang off it
	calls     map[string]*Call
	bySession map[string]map[string]*Call // session ID → browser call_id → call
	wg        sync.WaitGroup

	pstnOnce sync.Once
	pstnSt   *pstnState // limits and API calls (pstn.go)
}

// New checks the options and returns a Manager; Run starts it.
func New(o Options) (*Manager, error) {
	if o.ARI == nil || o.Media == nil || o.Ports == nil || o.Router == nil {
		return nil, errors.New("call manager needs ARI, Media, Ports and Router")
	}
	if o.RingTimeout == 0 {
		o.RingTimeout = 45 * time.Second
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Manager{
		o:         o,
		log:       o.Logger,
		calls:     map[string]*Call{},
		bySession: map[string]map[string]*Call{},
	}, nil
}

// SetDirectory sets where browser sessions are found. The signalling server is built with the Manager as its
// handler, so it can only be handed over afterwards.
func (m *Manager) SetDirectory(d Directory) {
	m.mu.Lock()
	m.dir = d
	m.mu.Unlock()
}

// Run serves Stasis events until ctx ends, then hangs up every call and waits for them to finish.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	sub := m.o.ARI.Subscribe(ari.Filter{Name: "call-manager", Types: []string{ari.TypeStasisStart, ari.TypeReconciled}})
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			m.hangupAll("shutdown")
			m.wg.Wait()
			return nil
		case ev := <-sub.Events():
			switch e := ev.(type) {
			case *ari.StasisStart:
				if m.pstnStasisStart(ctx, e) { // softphones' outside calls; DIDs of users and extensions
					break
				}
				if !m.roomStasisStart(ctx, e) {
					m.stasisStart(ctx, e)
				}
			case *ari.Reconciled:
				// Calls whose resources vanished while the events socket was down see it in their own
				// subscriptions; here it is only logged.
				m.log.Warn("ARI events socket reconnected", "active_calls", m.Active())
			}
		}
	}
}

// Active is the number of calls in progress.
func (m *Manager) Active() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.calls)
}

func (m *Manager) hangupAll(reason string) {
	m.mu.Lock()
	calls := make([]*Call, 0, len(m.calls))
	for _, c := range m.calls {
		calls = append(calls, c)
	}
	m.mu.Unlock()
	for _, c := range calls {
		c.post(inbound{kind: kindShutdown, cause: reason})
	}
}

// HandleMessage implements signal.Handler: it routes one validated message from a browser.
func (m *Manager) HandleMessage(ctx context.Context, s *signal.Session, msg signal.Message) {
	switch msg.Type {
	case signal.TypeCall:
		m.placeCall(s, msg)
	case signal.TypeJoin:
		m.joinRoom(s, msg)
	case signal.TypeCandidate, signal.TypeDTMF, signal.TypeHangup, signal.TypeAnswer, signal.TypeReject,
		signal.TypeOffer: // NETWORK-HOOK: an ICE restart on a live call
		c := m.lookup(s.ID(), msg.CallID)
		if c == nil {
			_ = s.Send(ctx, signal.ErrorMessage(msg.CallID, wire.CodeUnknownCall, "no call with this call_id on this connection"))
			return
		}
		c.post(inbound{kind: kindBrowser, session: s, msg: msg})
	}
}

// SessionClosed implements signal.Handler: a browser's connection is gone, so its calls end.
func (m *Manager) SessionClosed(s *signal.Session) {
	m.mu.Lock()
	calls := make([]*Call, 0, len(m.bySession[s.ID()]))
	for _, c := range m.bySession[s.ID()] {
		calls = append(calls, c)
	}
	m.mu.Unlock()
	for _, c := range calls {
		c.post(inbound{kind: kindSessionGone, session: s})
	}
}

// SessionResumed implements signal.Resumer (NETWORK-HOOK, for the lead's call package to re-implement): the calls
// the dropped session left held move to s, and each call's goroutine is told (kindResumed) so it sends to s from
// now on and stops its grace timer. Returns the browser call_ids given back.
func (m *Manager) SessionResumed(_ context.Context, s *signal.Session, previousSessionID string) []string {
	m.mu.Lock()
	held := m.bySession[previousSessionID]
	delete(m.bySession, previousSessionID)
	ids := make([]string, 0, len(held))
	calls := make([]*Call, 0, len(held))
	if len(held) > 0 {
		byID := m.bySession[s.ID()]
		if byID == nil {
			byID = map[string]*Call{}
			m.bySession[s.ID()] = byID
		}
		for id, c := range held {
			byID[id] = c
			ids = append(ids, id)
			calls = append(calls, c)
		}
	}
	m.mu.Unlock()
	for _, c := range calls {
		c.post(inbound{kind: kindResumed, session: s})
	}
	return ids
}

func (m *Manager) lookup(sessionID, callID string) *Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bySession[sessionID][callID]
}

// register adds c under its ID and binds (session, callID) to it. It fails when the browser reuses a call_id.
func (m *Manager) register(c *Call) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil || m.ctx.Err() != nil {
		return errors.New("call manager not running")
	}
	m.calls[c.id] = c
	m.wg.Add(1)
	return nil
}

func (m *Manager) bind(s *signal.Session, callID string, c *Call) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	byID := m.bySession[s.ID()]
	if byID == nil {
		byID = map[string]*Call{}
		m.bySession[s.ID()] = byID
	}
	if _, dup := byID[callID]; dup {
		return false
	}
	byID[callID] = c
	return true
}

func (m *Manager) unbind(s *signal.Session, callID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if byID := m.bySession[s.ID()]; byID != nil {
		delete(byID, callID)
		if len(byID) == 0 {
			delete(m.bySession, s.ID())
		}
	}
}

func (m *Manager) unregister(c *Call) {
	m.mu.Lock()
	delete(m.calls, c.id)
	m.mu.Unlock()
	m.wg.Done()
}

func (m *Manager) runCtx() context.Context {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ctx
}

func (m *Manager) directory() Directory {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dir
}

// userFor resolves a dialled user name or user number to a browser user.
func (m *Manager) userFor(d dialplan.Decision) (string, error) {
	if d.Kind != dialplan.KindUser {
		return "", fmt.Errorf("%s is not a browser user", d.Number)
	}
	if u, ok := m.o.Users[d.Number]; ok {
		return u, nil
	}
	if d.Number != "" && (d.Number[0] < '0' || d.Number[0] > '9') {
		return d.Number, nil
	}
	return "", fmt.Errorf("no browser user has number %s", d.Number)
}
