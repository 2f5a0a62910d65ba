// Package rooms keeps Patchbay's rooms: conferences that browsers and phones join. A room is mixed by one of two
// backends chosen when it is created: an ARI mixing bridge owned by Patchbay (the default), or Asterisk's
// ConfBridge reached through a Local channel. The package knows rooms, participants and their events; the calls
// that carry participants' audio live in internal/call and hand their Asterisk channel to Registry.Join.
package rooms

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/tickets"
)

// Backend kinds.
const (
	BackendBridge     = "bridge"     // an ARI mixing bridge owned by Patchbay
	BackendConfBridge = "confbridge" // Asterisk's ConfBridge(room), each participant through a Local channel
)

// Participant kinds.
const (
	KindBrowser = "browser"
	KindPhone   = "phone"
)

// Roles a browser token may carry for rooms.
const (
	RoleParticipant = "participant"
	RoleCustomer    = "customer" // a participant by another name: the contact-center side's word for it
	RoleModerator   = "moderator"
	RoleAgent       = "agent" // may also join by number (agent lookup)
)

// ValidRole reports whether role is one this package knows ("" counts as participant).
func ValidRole(role string) bool {
	switch role {
	case "", RoleParticipant, RoleCustomer, RoleModerator, RoleAgent:
		return true
	}
	return false
}

// Sentinel errors. Each error returned by this package wraps one of them.
var (
	ErrNotFound      = errors.New("rooms: no such room")
	ErrExists        = errors.New("rooms: room already exists")
	ErrNoParticipant = errors.New("rooms: no such participant")
	ErrEnded         = errors.New("rooms: room has ended")
	ErrForbidden     = errors.New("rooms: not allowed")
	ErrInvalid       = errors.New("rooms: invalid request")
	// ErrUnavailable: a cluster's rooms directory (Redis) cannot be reached, so no room can be created safely.
	ErrUnavailable = errors.New("rooms: the rooms directory is unavailable")
	// ErrFull: this node holds rooms.max_rooms live rooms. Not the client's mistake: the API answers 503.
	ErrFull = errors.New("rooms: no room can be created here now")
)

// TicketRedeemer redeems a one-time join ticket for the room and role it was issued for, if it admits who
// presents it (internal/tickets); a join that presents a ticket is refused when none is configured.
type TicketRedeemer interface {
	RedeemFor(ctx context.Context, ticket string, who tickets.Identity) (tickets.Grant, error)
}

// Room is what is known about a room, as a value.
type Room struct {
	ID           string        `json:"id"`
	Name         string        `json:"name,omitempty"`
	Backend      string        `json:"backend"`
	Created      time.Time     `json:"created"`
	Grace        time.Duration `json:"-"`
	GraceSeconds float64       `json:"grace_seconds"`
	Participants int           `json:"participants"`
}

// Participant is one member of a room.
type Participant struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Name     string    `json:"name,omitempty"`
	CallerID string    `json:"caller_id,omitempty"`
	Role     string    `json:"role,omitempty"`
	Muted    bool      `json:"muted"`
	Talking  bool      `json:"talking"`
	Sharing  bool      `json:"sharing,omitempty"` // sharing its screen with the room's browsers (the SFU's share)
	Joined   time.Time `json:"joined"`
	// Channel is the participant's Asterisk channel (a phone's own channel, a browser's externalMedia channel).
	Channel string `json:"channel"`
}

// Event types.
const (
	EventJoined  = "joined"
	EventLeft    = "left"
	EventUpdated = "updated"
	EventEnded   = "ended"
)

// Event is something that happened in a room.
type Event struct {
	Type        string
	Room        string
	Participant Participant // zero for EventEnded
}

// idEncoding is lower-case base32 without padding: IDs fit [a-z2-7], valid room IDs and safe in URLs.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewRoomID returns a random, unguessable room ID: 128 bits from crypto/rand, 26 characters.
func NewRoomID() string { return randomID(16) }

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux (Go 1.24+ panics rather than return an error)
	return idEncoding.EncodeToString(b)
}

// ValidateName checks an admin-chosen room ID like dialplan.ValidateRoomID, wrapping ErrInvalid.
func ValidateName(id string) error {
	if err := dialplan.ValidateRoomID(id); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// ValidBackend reports whether b names a backend ("" means the default, bridge).
func ValidBackend(b string) bool {
	return b == "" || b == BackendBridge || b == BackendConfBridge
}

// safeText keeps display names and caller IDs printable and short before they reach logs and browsers.
func safeText(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= max {
			break
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
