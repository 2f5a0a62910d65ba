package rooms

import (
	"context"
	"errors"
	"fmt"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/wire"
)

// JoinRequest is what a browser asked to join: exactly one of Room, Number (agents only) or Ticket.
type JoinRequest struct {
	Room, Number, Ticket string
}

// Grant is what the browser's token allows for rooms.
type Grant struct {
	User string
	Room string // the token's room claim; must equal the room joined
	Role string
}

// Admission is the decision on a join, as a value: either Accept with the room and role, or a refusal with a
// stable signalling error code and a reason for the browser.
type Admission struct {
	Accept bool
	Room   string
	Role   string
	Via    string // "room", "number" or "ticket"
	Code   string // when refused: a wire.Code*
	Reason string
	// Detail is what only the log learns of a refusal (e.g. that a ticket is bound to someone else).
	Detail string
	// Redirect, when set (Accept false), is the signalling URL of the cluster node holding the room: the join is
	// not refused, it belongs there.
	Redirect string
}

func refuse(code, format string, args ...any) Admission {
	return Admission{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// Admitter decides joins. Store and Tickets may be nil (then joins by number or ticket are refused).
type Admitter struct {
	Rooms   interface{ Exists(id string) bool }
	Store   dialplan.Store
	Tickets TicketRedeemer
	// Elsewhere, if set, finds a room another node of a cluster holds: the URL browsers join it at, or "". An
	// error (the cluster's directory unreachable) refuses the join with unavailable.
	Elsewhere func(ctx context.Context, room string) (string, error)
}

// Admit decides whether g may join what r names. It never acts: the caller joins on Accept.
func (a Admitter) Admit(ctx context.Context, g Grant, r JoinRequest) Admission {
	var ad Admission
	switch {
	case r.Ticket != "":
		if a.Tickets == nil {
			return refuse(wire.CodeForbiddenDestination, "this server does not accept join tickets; join with a token for the room")
		}
		tg, err := a.Tickets.RedeemFor(ctx, r.Ticket, tickets.Identity{User: g.User})
		if errors.Is(err, tickets.ErrUnavailable) {
			return refuse(wire.CodeUnavailable, "tickets cannot be checked right now; try again shortly")
		}
		if err != nil {
			ad := refuse(wire.CodeInvalidTicket, "ticket refused: unknown, expired or already used; ask for a new one")
			if errors.Is(err, tickets.ErrWrongIdentity) {
				ad.Detail = "ticket is bound to another identity than user " + g.User + " (not consumed)"
			}
			return ad
		}
		room, role := tg.Room, tg.Role
		if dialplan.ValidateRoomID(room) != nil || !ValidRole(role) {
			return refuse(wire.CodeInternal, "the ticket names no valid room or role")
		}
		ad = Admission{Room: room, Role: role, Via: "ticket"}
	case r.Number != "":
		if g.Role != RoleAgent {
			return refuse(wire.CodeForbiddenDestination, "only agents may join a room by number; your token's role is %q", g.Role)
		}
		if a.Store == nil {
			return refuse(wire.CodeUnavailable, "no number store is configured")
		}
		m, err := a.Store.Lookup(ctx, r.Number)
		switch {
		case errors.Is(err, dialplan.ErrNotMapped):
			return refuse(wire.CodeUnknownRoom, "number %s is not mapped to a room (or the mapping expired)", r.Number)
		case errors.Is(err, dialplan.ErrInvalidNumber):
			return refuse(wire.CodeInvalidNumber, "%v", err)
		case errors.Is(err, dialplan.ErrStoreUnavailable):
			return refuse(wire.CodeUnavailable, "the number store is unavailable; try again shortly")
		case err != nil:
			return refuse(wire.CodeUnavailable, "number lookup failed; try again shortly")
		}
		ad = Admission{Room: m.Room, Role: RoleAgent, Via: "number"}
	case r.Room != "":
		if g.Room == "" {
			return refuse(wire.CodeForbiddenDestination, "your token is not for any room; get a token for room %s", r.Room)
		}
		if g.Room != r.Room {
			return refuse(wire.CodeForbiddenDestination, "your token is for another room, not %s", r.Room)
		}
		if !ValidRole(g.Role) {
			return refuse(wire.CodeForbiddenDestination, "your token's role %q is not a room role", g.Role)
		}
		ad = Admission{Room: r.Room, Role: g.Role, Via: "room"}
	default:
		return refuse(wire.CodeBadMessage, "join needs a room, number or ticket")
	}
	if ad.Role == "" {
		ad.Role = RoleParticipant
	}
	if a.Rooms == nil || !a.Rooms.Exists(ad.Room) {
		if a.Elsewhere != nil {
			url, err := a.Elsewhere(ctx, ad.Room)
			if err != nil {
				return refuse(wire.CodeUnavailable, "the cluster's rooms directory is unavailable; try again shortly")
			}
			if url != "" {
				ad.Redirect = url
				return ad
			}
		}
		return refuse(wire.CodeUnknownRoom, "room %s does not exist or has ended", ad.Room)
	}
	ad.Accept = true
	return ad
}
