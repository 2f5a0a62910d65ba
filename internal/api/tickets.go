package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/wire"
)

// TicketIssuer issues one-time join tickets (internal/tickets).
type TicketIssuer interface {
	Issue(ctx context.Context, g tickets.Grant, ttl time.Duration) (string, error)
}

type ticketRequest struct {
	Role       string  `json:"role"`
	Name       string  `json:"name"`
	ForUser    string  `json:"for_user"`
	ForCaller  string  `json:"for_caller"`
	Number     string  `json:"number"`
	TTLSeconds float64 `json:"ttl_seconds"`
}

type ticketReply struct {
	Ticket    string    `json:"ticket"`
	Room      string    `json:"room"`
	Role      string    `json:"role"`
	ForUser   string    `json:"for_user,omitempty"`
	ForCaller string    `json:"for_caller,omitempty"`
	Number    string    `json:"number,omitempty"`
	Expires   time.Time `json:"expires_at"`
}

// RegisterTickets adds POST /rooms/{room}/tickets: a one-time ticket to join the room, optionally bound to a browser
// user (for_user) or to a caller (for_caller), and then attached to a number the caller dials (number).
func (s *Server) RegisterTickets(rm *rooms.Registry, issuer TicketIssuer) {
	s.Handle("POST /rooms/{room}/tickets", func(w http.ResponseWriter, r *http.Request, caller string) error {
		var req ticketRequest
		if err := DecodeJSON(r, &req); err != nil {
			return err
		}
		room := r.PathValue("room")
		if rm == nil || !rm.Exists(room) {
			return Errorf(http.StatusNotFound, wire.CodeNotFound, "room %s does not exist", room)
		}
		if issuer == nil {
			return Errorf(http.StatusServiceUnavailable, wire.CodeUnavailable, "join tickets are not enabled on this server")
		}
		if req.Role == "" {
			req.Role = rooms.RoleCustomer
		}
		if !rooms.ValidRole(req.Role) {
			return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "role %q is not a room role", req.Role)
		}
		ttl := time.Minute
		if req.TTLSeconds != 0 {
			ttl = time.Duration(req.TTLSeconds * float64(time.Second))
			if ttl < time.Second || ttl > tickets.MaxTTL {
				return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "ttl_seconds must be 1 to %d", int(tickets.MaxTTL.Seconds()))
			}
		}
		if req.Number != "" {
			n, err := dialplan.NormalizeNumber(req.Number)
			if err != nil {
				return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "number: %v", err)
			}
			req.Number = n
		}
		g := tickets.Grant{Room: room, Role: req.Role, User: req.Name, ForUser: req.ForUser, ForCaller: req.ForCaller, Number: req.Number}
		tk, err := issuer.Issue(r.Context(), g, ttl)
		if errors.Is(err, tickets.ErrUnavailable) {
			return Errorf(http.StatusServiceUnavailable, wire.CodeUnavailable, "the ticket store is unavailable; try again shortly")
		}
		if err != nil {
			return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "%v", err)
		}
		s.log.Info("join ticket issued", "room", room, "role", req.Role, "for_user", req.ForUser, "for_caller", req.ForCaller,
			"number", req.Number, "ttl", ttl, "ticket", tickets.Redact(tk), "caller", caller)
		WriteJSON(w, http.StatusCreated, ticketReply{Ticket: tk, Room: room, Role: req.Role, ForUser: req.ForUser,
			ForCaller: req.ForCaller, Number: req.Number, Expires: time.Now().Add(ttl).UTC()})
		return nil
	})
}
