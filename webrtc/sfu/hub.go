package sfu

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/patchbay/patchbay/webrtc/media"
)

// Hub holds a server's SFU rooms by name: a Room is made on its first Join
// and closed after its last member leaves.
type Hub struct {
	o Options

	mu     sync.Mutex
	rooms  map[string]*hubRoom
	closed bool
}

type hubRoom struct {
	r *Room
	n int // memberships not yet left
}

// NewHub returns an empty hub; every room it makes uses o.
func NewHub(o Options) *Hub { return &Hub{o: o, rooms: map[string]*hubRoom{}} }

// Membership is one browser in one hub room.
type Membership struct {
	h    *Hub
	name string
	hr   *hubRoom
	id   string
	once sync.Once
}

// Join adds a browser's peer to the named room (see Room.Join).
func (h *Hub) Join(ctx context.Context, room, member string, p *media.Peer, o MemberOptions) (*Membership, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("join sfu room %s: %w", room, ErrRoomClosed)
	}
	hr := h.rooms[room]
	if hr == nil {
		o := h.o
		if o.Logger != nil {
			o.Logger = o.Logger.With("room", room)
		}
		hr = &hubRoom{r: NewRoom(room, o)}
		h.rooms[room] = hr
	}
	hr.n++
	h.mu.Unlock()
	ms := &Membership{h: h, name: room, hr: hr, id: member}
	if err := hr.r.Join(ctx, member, p, o); err != nil {
		h.release(ms)
		return nil, err
	}
	return ms, nil
}

// Answer passes the browser's answer to the room's outstanding offer.
func (m *Membership) Answer(ctx context.Context, sdp string) error {
	return m.hr.r.Answer(ctx, m.id, sdp)
}

// Share starts or stops forwarding this browser's screen (see Room.Share).
func (m *Membership) Share(ctx context.Context, on bool) error {
	return m.hr.r.Share(ctx, m.id, on)
}

// Leave removes the browser from the room; the last one out closes it.
// Safe to call more than once.
func (m *Membership) Leave(ctx context.Context) error {
	var err error
	m.once.Do(func() {
		err = m.hr.r.Leave(ctx, m.id)
		m.h.release(m)
	})
	return err
}

func (h *Hub) release(m *Membership) {
	h.mu.Lock()
	m.hr.n--
	last := m.hr.n == 0
	if last && h.rooms[m.name] == m.hr {
		delete(h.rooms, m.name)
	}
	h.mu.Unlock()
	if last {
		_ = m.hr.r.Close()
	}
}

// StopShare stops member target's screen share in the named room (a moderator's request): a no-op if it does not
// share or the room has no video open; ErrUnknownMember if target is not in an open room.
func (h *Hub) StopShare(ctx context.Context, room, target string) error {
	r := h.Room(room)
	if r == nil {
		return nil
	}
	if err := r.Share(ctx, target, false); err != nil && !errors.Is(err, ErrRoomClosed) {
		return err
	}
	return nil
}

// Rooms is the number of open rooms.
func (h *Hub) Rooms() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.rooms)
}

// Room returns the open room of that name, or nil: for tests and diagnostics.
func (h *Hub) Room(name string) *Room {
	h.mu.Lock()
	defer h.mu.Unlock()
	if hr := h.rooms[name]; hr != nil {
		return hr.r
	}
	return nil
}

// Close closes every room; later Joins fail with ErrRoomClosed.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.closed = true
	rooms := h.rooms
	h.rooms = map[string]*hubRoom{}
	h.mu.Unlock()
	var errs []error
	for _, hr := range rooms {
		errs = append(errs, hr.r.Close())
	}
	return errors.Join(errs...)
}
