package rooms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patchbay/patchbay/ari"
)

// Options configure a Registry.
type Options struct {
	ARI *ari.Client
	// Grace is how long a room lives once its last participant left (default 60 s); a room may override it.
	Grace time.Duration
	// MaxRooms bounds live rooms (default 1000).
	MaxRooms int
	// NewBackend makes a room's backend; tests replace it. Default: ARI bridge or ConfBridge by kind.
	NewBackend func(kind, roomID string) Backend
	Logger     *slog.Logger
	// OnBridge, if set, is told (on the joining goroutine) when a room's mixing bridge has been created: recording
	// by policy starts there (record.go).
	OnBridge func(room, bridgeID string)
	// Directory, if set, is a cluster's rooms directory: a room's ID is claimed there before the room is made, so
	// no two nodes hold one ID, and released when it ends.
	Directory Directory
}

// Directory is a cluster's rooms directory (internal/cluster, through the server's wiring). ClaimRoom's errors
// wrap ErrExists (another node holds the ID) or ErrUnavailable (the directory cannot be reached).
type Directory interface {
	ClaimRoom(ctx context.Context, room string) error
	ReleaseRoom(ctx context.Context, room string)
}

// Registry holds the live rooms of this Patchbay instance. It is safe for concurrent use.
type Registry struct {
	o   Options
	log *slog.Logger

	mu     sync.Mutex
	rooms  map[string]*room
	closed bool
	wg     sync.WaitGroup // grace-timer and end goroutines
}

type room struct {
	info    Room
	backend Backend
	members map[string]*Member
	timer   *time.Timer
	gen     int // bumped on every join, so a stale grace timer does nothing
	ended   bool
}

// New returns an empty Registry.
func New(o Options) *Registry {
	if o.Grace <= 0 {
		o.Grace = 60 * time.Second
	}
	if o.MaxRooms <= 0 {
		o.MaxRooms = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NewBackend == nil {
		a := o.ARI
		o.NewBackend = func(kind, id string) Backend {
			if kind == BackendConfBridge {
				return &confBackend{a: a, room: id}
			}
			b := newBridgeBackend(a, id)
			b.onCreate = o.OnBridge
			return b
		}
	}
	return &Registry{o: o, log: o.Logger, rooms: map[string]*room{}}
}

// CreateOptions describe a new room. Empty ID: a random one.
type CreateOptions struct {
	ID      string
	Name    string
	Backend string        // BackendBridge (default) or BackendConfBridge
	Grace   time.Duration // 0: the registry's
}

// Create makes a room. No Asterisk resource is made until someone joins.
func (r *Registry) Create(ctx context.Context, o CreateOptions) (Room, error) {
	if o.ID != "" {
		if err := ValidateName(o.ID); err != nil {
			return Room{}, err
		}
	}
	if !ValidBackend(o.Backend) {
		return Room{}, fmt.Errorf("%w: backend %q: use %q or %q", ErrInvalid, safeText(o.Backend, 32), BackendBridge, BackendConfBridge)
	}
	if o.Backend == "" {
		o.Backend = BackendBridge
	}
	if o.Grace < 0 || o.Grace > 24*time.Hour {
		return Room{}, fmt.Errorf("%w: grace %v: use 0 (the default) up to 24h", ErrInvalid, o.Grace)
	}
	if o.Grace == 0 {
		o.Grace = r.o.Grace
	}
	id := o.ID
	if id == "" {
		id = NewRoomID()
	}
	if d := r.o.Directory; d != nil && !r.Exists(id) {
		if err := d.ClaimRoom(ctx, id); err != nil {
			return Room{}, fmt.Errorf("room %s: %w", id, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fail := func(err error) (Room, error) {
		if d := r.o.Directory; d != nil && r.rooms[id] == nil {
			d.ReleaseRoom(context.WithoutCancel(ctx), id)
		}
		return Room{}, err
	}
	if r.closed {
		return fail(fmt.Errorf("create room: %w: Patchbay is shutting down", ErrEnded))
	}
	if _, dup := r.rooms[id]; dup {
		return Room{}, fmt.Errorf("room %s: %w; pick another name or end it first", id, ErrExists)
	}
	if len(r.rooms) >= r.o.MaxRooms {
		return fail(fmt.Errorf("%w: %d rooms are live (rooms.max_rooms); try again when some have ended", ErrFull, r.o.MaxRooms))
	}
	rm := &room{
		info: Room{ID: id, Name: safeText(o.Name, 128), Backend: o.Backend, Created: time.Now().UTC(),
			Grace: o.Grace, GraceSeconds: o.Grace.Seconds()},
		backend: r.o.NewBackend(o.Backend, id),
		members: map[string]*Member{},
	}
	r.rooms[id] = rm
	r.log.Info("room created", "room", id, "backend", o.Backend)
	return rm.info, nil
}

// Exists reports whether room id is live.
func (r *Registry) Exists(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm := r.rooms[id]
	return rm != nil && !rm.ended
}

// Get returns room id.
func (r *Registry) Get(id string) (Room, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm := r.rooms[id]
	if rm == nil {
		return Room{}, fmt.Errorf("room %s: %w", id, ErrNotFound)
	}
	info := rm.info
	info.Participants = len(rm.members)
	return info, nil
}

// List returns every live room, oldest first.
func (r *Registry) List() []Room {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Room, 0, len(r.rooms))
	for _, rm := range r.rooms {
		info := rm.info
		info.Participants = len(rm.members)
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b Room) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Participants lists room id's members, in join order.
func (r *Registry) Participants(id string) ([]Participant, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm := r.rooms[id]
	if rm == nil {
		return nil, fmt.Errorf("room %s: %w", id, ErrNotFound)
	}
	return rm.snapshotLocked(), nil
}

func (rm *room) snapshotLocked() []Participant {
	out := make([]Participant, 0, len(rm.members))
	for _, m := range rm.members {
		if m.att != nil { // still attaching: not in the mix yet
			out = append(out, m.p)
		}
	}
	slices.SortFunc(out, func(a, b Participant) int {
		if c := a.Joined.Compare(b.Joined); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// JoinSpec describes a participant joining. Channel must already be in Stasis and answered (or be an
// externalMedia channel). Kick is called, once, when the participant is removed (kick, room end); it must not
// block: the owner of the call hangs up and then calls Leave.
type JoinSpec struct {
	Kind     string
	Name     string
	CallerID string
	Role     string
	Channel  string
	Format   string // the channel's G.711 format, "ulaw" (default) or "alaw"
	Kick     func(reason string)
	Log      *slog.Logger
}

// Member is one participant's membership; its owner (the participant's call) calls Leave when done.
type Member struct {
	r    *Registry
	room string
	p    Participant // guarded by r.mu
	att  Attachment
	kick func(string)

	events  chan Event
	dropped atomic.Uint64
	left    atomic.Bool
	kicked  atomic.Bool
	log     *slog.Logger
}

// Join adds a participant to room id and puts its channel into the room's mix. The first event on Events is the
// participant's own "joined"; Participants lists the room at that moment.
func (r *Registry) Join(ctx context.Context, id string, s JoinSpec) (*Member, error) {
	if s.Kind != KindBrowser && s.Kind != KindPhone {
		return nil, fmt.Errorf("%w: participant kind %q", ErrInvalid, s.Kind)
	}
	if s.Channel == "" {
		return nil, fmt.Errorf("%w: participant has no channel", ErrInvalid)
	}
	log := s.Log
	if log == nil {
		log = r.log
	}
	r.mu.Lock()
	rm := r.rooms[id]
	if rm == nil || rm.ended {
		r.mu.Unlock()
		return nil, fmt.Errorf("join room %s: %w", id, ErrNotFound)
	}
	m := &Member{
		r: r, room: id, kick: s.Kick,
		p: Participant{ID: "p-" + randomID(10), Kind: s.Kind, Name: safeText(s.Name, 64), CallerID: safeText(s.CallerID, 64),
			Role: s.Role, Joined: time.Now().UTC(), Channel: s.Channel},
		events: make(chan Event, 64),
	}
	m.log = log.With("room", id, "participant", m.p.ID)
	backend := rm.backend
	rm.gen++
	if rm.timer != nil {
		rm.timer.Stop()
		rm.timer = nil
	}
	// Reserve the seat while attaching, so the grace timer cannot end the room under this join.
	rm.members[m.p.ID] = m
	r.mu.Unlock()

	att, err := backend.Attach(ctx, m.p.ID, s.Channel, s.Format)
	r.mu.Lock()
	if err == nil && rm.ended {
		err = fmt.Errorf("join room %s: %w", id, ErrEnded)
	}
	if err != nil {
		delete(rm.members, m.p.ID)
		r.maybeGraceLocked(rm)
		r.mu.Unlock()
		if att != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = att.Detach(dctx)
			cancel()
		}
		return nil, fmt.Errorf("join room %s: %w", id, err)
	}
	m.att = att
	r.publishLocked(rm, Event{Type: EventJoined, Room: id, Participant: m.p})
	r.mu.Unlock()
	m.log.Info("joined room", "kind", s.Kind, "name", m.p.Name, "caller_id", m.p.CallerID, "role", s.Role, "channel", s.Channel)
	return m, nil
}

// ID is the participant's ID.
func (m *Member) ID() string { return m.p.ID }

// Room is the room's ID.
func (m *Member) Room() string { return m.room }

// Events delivers room events to the participant's owner. It is never closed; stop reading after Leave.
func (m *Member) Events() <-chan Event { return m.events }

// Participants lists the room now.
func (m *Member) Participants() []Participant {
	ps, _ := m.r.Participants(m.room)
	return ps
}

// SetTalking records talk detection for the participant and tells the room.
func (m *Member) SetTalking(talking bool) {
	m.r.update(m, func(p *Participant) bool {
		if p.Talking == talking {
			return false
		}
		p.Talking = talking
		return true
	})
}

// Leave takes the participant out of the mix and the room. Safe to call more than once.
func (m *Member) Leave(ctx context.Context, reason string) {
	if !m.left.CompareAndSwap(false, true) {
		return
	}
	if m.att != nil {
		if err := m.att.Detach(ctx); err != nil {
			m.log.Warn("take participant out of the room's mix", "err", err)
		}
	}
	r := m.r
	r.mu.Lock()
	rm := r.rooms[m.room]
	if rm != nil && rm.members[m.p.ID] == m {
		delete(rm.members, m.p.ID)
		r.publishLocked(rm, Event{Type: EventLeft, Room: m.room, Participant: m.p})
		r.maybeGraceLocked(rm)
	}
	r.mu.Unlock()
	m.log.Info("left room", "reason", reason)
}

func (r *Registry) update(m *Member, f func(p *Participant) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm := r.rooms[m.room]
	if rm == nil || rm.members[m.p.ID] != m || !f(&m.p) {
		return
	}
	r.publishLocked(rm, Event{Type: EventUpdated, Room: m.room, Participant: m.p})
}

// publishLocked hands ev to every member without blocking; a member whose queue is full misses it, counted
// and logged.
func (r *Registry) publishLocked(rm *room, ev Event) {
	for _, m := range rm.members {
		select {
		case m.events <- ev:
		default:
			if n := m.dropped.Add(1); n == 1 || n%100 == 0 {
				m.log.Warn("room event queue full: event dropped", "event", ev.Type, "dropped_total", n)
			}
		}
	}
}

// maybeGraceLocked starts the empty-room timer.
func (r *Registry) maybeGraceLocked(rm *room) {
	if len(rm.members) > 0 || rm.ended || r.closed {
		return
	}
	if rm.timer != nil {
		rm.timer.Stop()
	}
	gen, id := rm.gen, rm.info.ID
	rm.timer = time.AfterFunc(rm.info.Grace, func() { r.graceExpired(id, gen) })
}

func (r *Registry) graceExpired(id string, gen int) {
	r.mu.Lock()
	rm := r.rooms[id]
	if rm == nil || rm.gen != gen || len(rm.members) > 0 || rm.ended || r.closed {
		r.mu.Unlock()
		return
	}
	r.wg.Add(1)
	r.mu.Unlock()
	defer r.wg.Done()
	r.log.Info("room empty past its grace period: ending it", "room", id, "grace", rm.info.Grace)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.End(ctx, id, "empty")
}

// Mute mutes or unmutes a participant: its audio no longer reaches the room.
func (r *Registry) Mute(ctx context.Context, roomID, pid string, muted bool) (Participant, error) {
	m, err := r.member(roomID, pid)
	if err != nil {
		return Participant{}, err
	}
	h := r.o.ARI.Channel(m.p.Channel)
	if muted {
		err = h.Mute(ctx, "in")
	} else {
		err = h.Unmute(ctx, "in")
	}
	if err != nil {
		return Participant{}, fmt.Errorf("mute participant %s of room %s: %w", pid, roomID, err)
	}
	r.update(m, func(p *Participant) bool {
		if p.Muted == muted {
			return false
		}
		p.Muted = muted
		return true
	})
	m.log.Info("participant mute changed", "muted", muted)
	r.mu.Lock()
	defer r.mu.Unlock()
	return m.p, nil
}

// SetSharing records that a participant started or stopped sharing its screen and tells the room; the share itself
// is the SFU's (webrtc/sfu). A participant that has left is ErrNoParticipant.
func (r *Registry) SetSharing(roomID, pid string, on bool) error {
	m, err := r.member(roomID, pid)
	if err != nil {
		return err
	}
	r.update(m, func(p *Participant) bool {
		if p.Sharing == on {
			return false
		}
		p.Sharing = on
		return true
	})
	return nil
}

// Kick removes a participant: its call is ended by its owner.
func (r *Registry) Kick(_ context.Context, roomID, pid string) error {
	m, err := r.member(roomID, pid)
	if err != nil {
		return err
	}
	m.log.Info("participant kicked")
	m.doKick("kicked")
	return nil
}

func (m *Member) doKick(reason string) {
	if m.kicked.CompareAndSwap(false, true) && m.kick != nil {
		m.kick(reason)
	}
}

func (r *Registry) member(roomID, pid string) (*Member, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm := r.rooms[roomID]
	if rm == nil {
		return nil, fmt.Errorf("room %s: %w", roomID, ErrNotFound)
	}
	m := rm.members[pid]
	if m == nil {
		return nil, fmt.Errorf("participant %s in room %s: %w", pid, roomID, ErrNoParticipant)
	}
	return m, nil
}

// End ends room id: every participant is removed (their calls end) and the backend's resources go.
func (r *Registry) End(ctx context.Context, id, reason string) error {
	r.mu.Lock()
	rm := r.rooms[id]
	if rm == nil {
		r.mu.Unlock()
		return fmt.Errorf("end room %s: %w", id, ErrNotFound)
	}
	rm.ended = true
	delete(r.rooms, id)
	if rm.timer != nil {
		rm.timer.Stop()
	}
	members := make([]*Member, 0, len(rm.members))
	var atts []Attachment // a member still attaching sees the room ended and detaches itself
	for _, m := range rm.members {
		members = append(members, m)
		if m.att != nil {
			atts = append(atts, m.att)
		}
	}
	r.publishLocked(rm, Event{Type: EventEnded, Room: id})
	r.mu.Unlock()
	r.log.Info("room ended", "room", id, "reason", reason, "participants", len(members))
	if d := r.o.Directory; d != nil {
		d.ReleaseRoom(ctx, id)
	}
	for _, m := range members {
		m.doKick("room ended")
	}
	// Take the channels out now: a member's own Leave will find its attachment already detached.
	var errs []error
	for _, a := range atts {
		if err := a.Detach(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := rm.backend.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		r.log.Warn("room resources not fully released", "room", id, "err", err)
		return fmt.Errorf("end room %s: %w", id, err)
	}
	return nil
}

// Close ends every room and waits for grace timers that are running. Further Creates fail.
func (r *Registry) Close(ctx context.Context) {
	r.mu.Lock()
	r.closed = true
	ids := make([]string, 0, len(r.rooms))
	for id, rm := range r.rooms {
		if rm.timer != nil {
			rm.timer.Stop()
		}
		ids = append(ids, id)
	}
	r.mu.Unlock()
	for _, id := range ids {
		_ = r.End(ctx, id, "shutdown")
	}
	r.wg.Wait()
}
