package call

import (
	"context"
	"errors"

	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/wire"
)

// Tickets bound to a caller. A backend that knows a web visitor's phone number mints a ticket bound to it and
// attached to a number (POST /rooms/{room}/tickets with for_caller and number): calling that number presents the
// ticket. The caller ID of the phone's channel (from its StasisStart) must match; any other caller is refused with
// the unallocated treatment and a security line, and the ticket stays valid for its owner. Browsers present tickets
// in "join" (rooms.Admitter checks the token's subject against a ticket bound to a user).

// numberTickets is what the ticket store offers phones.
type numberTickets interface {
	RedeemByNumber(ctx context.Context, number string, who tickets.Identity) (tickets.Grant, error)
}

// ticketRoute is where a phone calling number goes by a ticket attached to it: the second result is false when the
// number carries no ticket (the number store decides then).
func (c *Call) ticketRoute(ctx context.Context, exists func(string) bool, number, callerID string) (phoneRoute, bool) {
	nt, ok := c.m.o.Tickets.(numberTickets)
	if !ok || number == "" {
		return phoneRoute{}, false
	}
	g, err := nt.RedeemByNumber(ctx, number, tickets.Identity{Caller: callerID})
	switch {
	case errors.Is(err, tickets.ErrNoTicket):
		return phoneRoute{}, false
	case errors.Is(err, tickets.ErrWrongIdentity):
		c.log.Warn("security: ticket refused", "code", wire.CodeInvalidTicket, "number", number, "caller", callerID,
			"reason", "the ticket on this number is bound to another caller (not consumed)")
		return phoneRoute{treatment: TreatmentUnallocated, reason: "ticket bound to another caller"}, true
	case errors.Is(err, tickets.ErrUnavailable):
		return phoneRoute{treatment: TreatmentUnavailable, reason: "ticket lookup failed: " + err.Error()}, true
	case err != nil:
		c.log.Warn("security: ticket refused", "code", wire.CodeInvalidTicket, "number", number, "caller", callerID, "err", err)
		return phoneRoute{treatment: TreatmentUnallocated, reason: "ticket refused"}, true
	}
	if !exists(g.Room) {
		return phoneRoute{treatment: TreatmentUnallocated, mapped: number, reason: "the ticket's room " + g.Room + " has ended"}, true
	}
	c.log.Info("phone admitted by a ticket bound to its caller ID", "room", g.Room, "caller", callerID)
	return phoneRoute{room: g.Room, mapped: number}, true
}
