// Package call is Patchbay's call control. A Manager receives signalling from browsers, Stasis events from Asterisk
// and requests from the REST API, and starts one Call per conversation. Every call has the same life (call.go):
// one goroutine owns it, its legs are made in an order that cannot leak, one idempotent close releases them, and
// whatever close could not remove is swept by the ARI client. Kinds of call differ only in how their legs are
// made, each in a file of its own: browser_out.go (a browser dials), phone_in.go (a phone rings browsers),
// room.go (browsers and phones in rooms), phone_pstn.go (a softphone dials out), api.go (click-to-call),
// did.go (where a call from the trunk goes).
package call

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/limits"
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

// Options wire a Manager. Zero durations take the defaults noted.
type Options struct {
	ARI    *ari.Client
	Media  *media.API
	Ports  *relay.Ports
	Router *dialplan.Router
	// Users maps numbers (e.g. "7001") to browser user names, so phones can dial users by number.
	Users map[string]string
	// RingTimeout bounds how long an incoming call rings the browsers (45 s); DialTimeout how long an outgoing one
	// rings the far end (60 s). MaxDuration, if set, ends any call that lasts longer.
	RingTimeout, DialTimeout, MaxDuration time.Duration
	// SetupTimeout bounds each setup step in Asterisk (10 s); CloseTimeout a call's teardown (5 s).
	SetupTimeout, CloseTimeout time.Duration
	// NoMediaTimeout: browser media must reach Asterisk within this of the answer (10 s); the far end is dialled
	// (or a phone answered) only once it flows. Mid-call silence alone ends nothing (browserLeg.watch).
	NoMediaTimeout time.Duration
	// MediaGrace: when the ARI events socket went silent and Asterisk misses a REST ping too, media from it this
	// recent proves it is alive but starved, and calls go on (1 s). Keep it at most ari.dead_after, so that a
	// frozen Asterisk's last media is older than this by the time the socket is found silent.
	MediaGrace time.Duration
	// MaxSetups bounds calls being set up at once (64): past it new calls are refused at once instead of queuing
	// behind a slow Asterisk.
	MaxSetups int
	// EndpointExtensions are extensions that are PJSIP endpoints of the same name, dialled straight into a
	// two-party bridge; DialplanExtensions are extensions the dialplan answers itself, which a browser's channel
	// runs with no bridge. Others go through a Local channel (browser_out.go).
	EndpointExtensions, DialplanExtensions dialplan.Patterns
	// DialplanContext is where Patchbay's calls enter the dialplan (the router's context, from-patchbay).
	DialplanContext string
	Logger          *slog.Logger
	// Rooms holds the rooms browsers (join) and phones (Stasis args room/did) enter; nil disables rooms.
	Rooms *rooms.Registry
	// Numbers maps DIDs, room numbers and caller IDs to rooms; nil: phones cannot reach rooms.
	Numbers dialplan.Store
	// Tickets redeems one-time join tickets; nil: joins with a ticket are refused.
	Tickets rooms.TicketRedeemer
	// RoomPeers, if set, is handed every browser peer that joined a room (video between browsers).
	RoomPeers RoomPeerHook
	// PSTN configures outside calls, click-to-call and call limits (admit.go, api.go).
	PSTN PSTNOptions
	// TrunkChannels counts calls per trunk against asterisk.trunks[].max_channels (trunks.go).
	TrunkChannels *limits.Channels

	// CTI configures hold, transfer, recording and supervision (cti.go).
	CTI CTIOptions

	// Observer is told about every call (metrics and call records, internal/cdr); nil: nothing observes.
	Observer cdr.Observer
	// OneWayAfter is how long one media direction may be silent while the other flows before the call is
	// flagged one_way_audio (4 s).
	OneWayAfter time.Duration

	// Cluster, if set, is the other nodes of a cluster: users and rooms may be there (cluster.go).
	Cluster Cluster
}

// Manager owns every call.
type Manager struct {
	o   Options
	log *slog.Logger

	mu        sync.Mutex
	ctx       context.Context // set by Run; calls hang off it
	dir       Directory
	calls     map[string]*Call
	bySession map[string]map[string]*Call // session ID → browser call_id → call
	// rung: the bindings of bySession that are incoming calls offered to a tab that has not answered. A tab being
	// rung drops out of the ringing when its socket goes (docs/signalling.md), so its closed session keeps none of
	// them for a resume to give back.
	rung map[string]map[string]bool
	wg   sync.WaitGroup // call goroutines and the manager's own helpers

	draining atomic.Bool // shutting down: no new call
	lost     atomic.Bool // Asterisk stopped answering: no new call until the events socket is back
	setups   chan struct{}

	apiMu sync.Mutex
	api   map[string]*apiCall // API call ID → state (api.go)
}

// New checks the options and returns a Manager; Run starts it.
func New(o Options) (*Manager, error) {
	if o.ARI == nil || o.Media == nil || o.Ports == nil || o.Router == nil {
		return nil, errors.New("call manager needs ARI, Media, Ports and Router")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.RingTimeout, 45*time.Second)
	def(&o.DialTimeout, 60*time.Second)
	def(&o.SetupTimeout, 10*time.Second)
	def(&o.CloseTimeout, 5*time.Second)
	def(&o.NoMediaTimeout, 10*time.Second)
	def(&o.MediaGrace, time.Second)
	if o.TrunkChannels == nil {
		o.TrunkChannels = limits.NewChannels()
	}
	if o.DialplanContext == "" {
		o.DialplanContext = dialplan.DefaultRules().Context
	}
	if o.MaxSetups <= 0 {
		o.MaxSetups = 64
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Manager{
		o:         o,
		log:       o.Logger,
		calls:     map[string]*Call{},
		bySession: map[string]map[string]*Call{},
		rung:      map[string]map[string]bool{},
		setups:    make(chan struct{}, o.MaxSetups),
		api:       map[string]*apiCall{},
	}, nil
}

// SetDirectory sets where browser sessions are found. The signalling server is built with the Manager as its
// handler, so it can only be handed over afterwards.
func (m *Manager) SetDirectory(d Directory) {
	m.mu.Lock()
	m.dir = d
	m.mu.Unlock()
}

// Run serves Stasis events and watches the connection to Asterisk until ctx ends, then ends every call that is
// left (cause server_shutdown) and waits for them to close.
func (m *Manager) Run(ctx context.Context) error {
	// Listen before taking calls: once m.ctx is set a call may start, and its phone's StasisStart must not be lost.
	sub := m.o.ARI.Subscribe(ari.Filter{Name: "call-manager",
		Types: []string{ari.TypeStasisStart, ari.TypeConnected, ari.TypeDisconnected}})
	defer sub.Close()
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			m.EndAll(wire.CauseServerShutdown)
			m.wg.Wait()
			return nil
		case ev := <-sub.Events():
			switch e := ev.(type) {
			case *ari.StasisStart:
				m.stasisStart(ctx, e)
			case *ari.Disconnected:
				m.asteriskSilent(ctx)
			case *ari.Connected:
				if m.lost.Swap(false) {
					m.log.Info("Asterisk is back: taking calls again")
				}
			}
		}
	}
}

// asteriskSilent runs when the events socket dropped. If Asterisk still answers a REST ping it is alive (a lost
// socket, a restart of its HTTP server) and calls go on. If it does not, but its media still reached us within
// MediaGrace, it is alive and starved of CPU: calls go on and it is asked again until it answers, the socket is
// back, or its media stops too. Otherwise (crashed, frozen: no media either) every call ends at once with
// asterisk_lost, because its media has stopped and nobody can hang it up for us.
func (m *Manager) asteriskSilent(ctx context.Context) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_, err := m.o.ARI.Asterisk().Ping(pctx)
			cancel()
			if err == nil || ctx.Err() != nil || m.o.ARI.Connected() {
				return
			}
			age := time.Since(m.o.Ports.Heard().Last())
			if age >= m.o.MediaGrace {
				m.lost.Store(true)
				n := m.EndAll(wire.CauseAsteriskLost)
				m.log.Error("Asterisk stopped answering and sends no media: calls ended", "calls", n, "err", err)
				return
			}
			m.log.Warn("Asterisk did not answer a ping but its media still flows: calls go on", "media_age", age, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(m.o.MediaGrace / 2):
			}
		}
	}()
}

// Drain stops taking new calls (shutdown): every new call and join is refused with unavailable. Calls in
// progress go on until they end or EndAll.
func (m *Manager) Drain() { m.draining.Store(true) }

// EndAll ends every call with cause and reports how many there were.
func (m *Manager) EndAll(cause string) int {
	m.mu.Lock()
	calls := make([]*Call, 0, len(m.calls))
	for _, c := range m.calls {
		calls = append(calls, c)
	}
	m.mu.Unlock()
	for _, c := range calls {
		c.end(&ending{cause: cause})
	}
	return len(calls)
}

// Wait blocks until every call has closed or ctx ends.
func (m *Manager) Wait(ctx context.Context) error {
	for m.Active() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d calls still closing: %w", m.Active(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// Active is the number of calls in progress.
func (m *Manager) Active() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.calls)
}

// TakesCalls reports whether a new call can start now: the node is not shutting down and has its PBX.
func (m *Manager) TakesCalls() bool { return m.unavailable() == "" }

// unavailable says why no new call can start now, or "" if one can.
func (m *Manager) unavailable() string {
	switch ctx := m.runCtx(); {
	case m.draining.Load() || ctx.Err() != nil:
		return "the server is shutting down; try again in a moment"
	case m.lost.Load() || !m.o.ARI.Connected():
		return "the server has lost its connection to the PBX; try again shortly"
	}
	return ""
}

// HandleMessage implements signal.Handler: it routes one validated message from a browser.
func (m *Manager) HandleMessage(ctx context.Context, s *signal.Session, msg signal.Message) {
	switch msg.Type {
	case signal.TypeCall:
		m.placeCall(s, msg)
	case signal.TypeJoin:
		m.joinRoom(s, msg)
	case signal.TypeConsole:
		m.console(s) // console.go
	case signal.TypeSupervise:
		if c := m.lookup(s.ID(), msg.CallID); c != nil { // a mode change
			c.post(inbound{kind: inBrowser, session: s, msg: &msg})
			return
		}
		m.supervise(s, msg) // supervise.go
	case signal.TypeHangup:
		if c := m.lookup(s.ID(), msg.CallID); c != nil {
			c.post(inbound{kind: inBrowser, session: s, msg: &msg})
		}
		// A hangup for a call that is already over is not an error: both sides may hang up at once.
	default:
		c := m.lookup(s.ID(), msg.CallID)
		if c == nil {
			_ = s.Send(ctx, signal.ErrorMessage(msg.CallID, wire.CodeUnknownCall, "no call with this call_id on this connection"))
			return
		}
		if msg.Type == signal.TypeAnswer {
			m.answering(s, msg.CallID) // before the session can close, so a resume gives the call back
		}
		c.post(inbound{kind: inBrowser, session: s, msg: &msg})
	}
}

// SessionClosed implements signal.Handler: a browser's connection is gone. Its calls end, or wait ResumeGrace for
// it to come back.
func (m *Manager) SessionClosed(s *signal.Session) {
	m.mu.Lock()
	byID := m.bySession[s.ID()]
	calls := make([]*Call, 0, len(byID))
	for _, c := range byID {
		calls = append(calls, c)
	}
	for callID := range m.rung[s.ID()] { // the call drops this tab from its ringing (inSessionGone)
		delete(byID, callID)
	}
	delete(m.rung, s.ID())
	if len(byID) == 0 {
		delete(m.bySession, s.ID())
	}
	m.mu.Unlock()
	for _, c := range calls {
		c.post(inbound{kind: inSessionGone, session: s})
	}
}

// SessionResumed moves the calls of a closed session to the browser's new one (it reconnected with its resume
// token within the grace) and returns their call_ids.
func (m *Manager) SessionResumed(ctx context.Context, s *signal.Session, previous string) []string {
	m.mu.Lock()
	old := m.bySession[previous]
	delete(m.bySession, previous)
	var ids []string
	if len(old) > 0 {
		byID := m.bySession[s.ID()]
		if byID == nil {
			byID = map[string]*Call{}
			m.bySession[s.ID()] = byID
		}
		for callID, c := range old {
			byID[callID] = c
			ids = append(ids, callID)
		}
	}
	m.mu.Unlock()
	for _, c := range old {
		c.post(inbound{kind: inResumed, session: s})
	}
	return ids
}

// start registers c and runs it on its own goroutine. It fails (and c never runs) when the manager is stopping.
func (m *Manager) start(c *Call, setup func() error) error {
	m.mu.Lock()
	if m.ctx == nil || m.ctx.Err() != nil {
		m.mu.Unlock()
		c.cancel(nil)
		return errors.New("call manager not running")
	}
	m.calls[c.id] = c
	m.wg.Add(1)
	m.mu.Unlock()
	c.observeStart()
	go c.run(setup)
	return nil
}

// unregister forgets a closed call and its session bindings.
func (m *Manager) unregister(c *Call) {
	m.mu.Lock()
	delete(m.calls, c.id)
	for sid, byID := range m.bySession {
		for callID, cc := range byID {
			if cc == c {
				delete(byID, callID)
				m.unring(sid, callID)
			}
		}
		if len(byID) == 0 {
			delete(m.bySession, sid)
		}
	}
	m.mu.Unlock()
	m.wg.Done()
}

func (m *Manager) lookup(sessionID, callID string) *Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bySession[sessionID][callID]
}

// bind ties (session, callID) to c. It fails when the browser reuses a call_id that is still live.
func (m *Manager) bind(s *signal.Session, callID string, c *Call) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bindLocked(s, callID, c)
}

// bindRung is bind for an incoming call offered to s (see Manager.rung).
func (m *Manager) bindRung(s *signal.Session, callID string, c *Call) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.bindLocked(s, callID, c) {
		return false
	}
	if m.rung[s.ID()] == nil {
		m.rung[s.ID()] = map[string]bool{}
	}
	m.rung[s.ID()][callID] = true
	return true
}

// answering: the tab rung on s answers callID, which is then its call, resumed with its session like any other.
func (m *Manager) answering(s *signal.Session, callID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unring(s.ID(), callID)
}

// unring forgets that callID is rung on session sid; m.mu held.
func (m *Manager) unring(sid, callID string) {
	if r := m.rung[sid]; r != nil {
		delete(r, callID)
		if len(r) == 0 {
			delete(m.rung, sid)
		}
	}
}

func (m *Manager) bindLocked(s *signal.Session, callID string, c *Call) bool {
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
	m.unring(s.ID(), callID)
	if byID := m.bySession[s.ID()]; byID != nil {
		delete(byID, callID)
		if len(byID) == 0 {
			delete(m.bySession, s.ID())
		}
	}
}

func (m *Manager) runCtx() context.Context {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil {
		return canceledCtx
	}
	return m.ctx
}

var canceledCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func (m *Manager) directory() Directory {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dir
}

// setupSlot takes one of the MaxSetups slots, or reports false at once when all are taken.
func (m *Manager) setupSlot() (release func(), ok bool) {
	select {
	case m.setups <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-m.setups }) }, true
	default:
		return nil, false
	}
}

// hangupAsync hangs up a channel Patchbay refuses without holding up the event dispatcher. The goroutine is the
// manager's: Run waits for it.
func (m *Manager) hangupAsync(ctx context.Context, id, reason string, log *slog.Logger) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.o.CloseTimeout)
		defer cancel()
		if err := m.o.ARI.Channel(id).Hangup(hctx, reason); err != nil && !ari.IsNotFound(err) {
			log.Warn("hang up refused channel; the sweep retries", "channel", id, "err", err)
			m.o.ARI.SweepSoon()
		}
	}()
}

// continueAsync sends a channel to a dialplan location without holding up the event dispatcher; if that fails
// it is hung up with reason.
func (m *Manager) continueAsync(ctx context.Context, id string, to ari.ContinueOptions, reason string, log *slog.Logger) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.o.CloseTimeout)
		defer cancel()
		err := m.o.ARI.Channel(id).Continue(cctx, to)
		if err == nil || ari.IsNotFound(err) {
			return
		}
		log.Warn("send channel to the dialplan failed: hanging up instead", "channel", id, "context", to.Context, "extension", to.Extension, "err", err)
		if err := m.o.ARI.Channel(id).Hangup(cctx, reason); err != nil && !ari.IsNotFound(err) {
			log.Warn("hang up refused channel; the sweep retries", "channel", id, "err", err)
			m.o.ARI.SweepSoon()
		}
	}()
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
