package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/wire"
)

// CallService is what the /calls endpoints drive (the call manager).
type CallService interface {
	Originate(ctx context.Context, r call.OriginateRequest) (call.OriginateResult, error)
	APICall(id, apiKey string) (call.APICall, bool)
	HangupAPICall(id, apiKey string) error
}

type callsAPI struct{ svc CallService }

// RegisterCalls adds click-to-call: POST /calls, GET and DELETE /calls/{id} (see openapi/calls.json).
func (s *Server) RegisterCalls(svc CallService) {
	h := &callsAPI{svc: svc}
	s.Handle("POST /calls", h.create)
	s.Handle("GET /calls/{id}", h.get)
	s.Handle("DELETE /calls/{id}", h.hangup)
}

type createCallBody struct {
	To       string `json:"to"`
	CallerID string `json:"caller_id"`
	Connect  struct {
		User       string `json:"user"`
		Room       string `json:"room"`
		CreateRoom bool   `json:"create_room"`
	} `json:"connect"`
	Ticket *struct {
		Role string `json:"role"`
		User string `json:"user"`
	} `json:"ticket"`
	MapCallerID   bool `json:"map_caller_id"`
	MapTTLSeconds int  `json:"map_ttl_seconds"`
}

func (h *callsAPI) create(w http.ResponseWriter, r *http.Request, caller string) error {
	var b createCallBody
	if err := DecodeJSON(r, &b); err != nil {
		return err
	}
	if b.MapTTLSeconds < 0 || b.MapTTLSeconds > 7*24*3600 {
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "map_ttl_seconds must be 0 (default 1 hour) to 604800")
	}
	req := call.OriginateRequest{
		APIKey: caller, To: b.To, CallerID: b.CallerID,
		ConnectUser: b.Connect.User, Room: b.Connect.Room, CreateRoom: b.Connect.CreateRoom,
		MapCallerID: b.MapCallerID, MapTTL: time.Duration(b.MapTTLSeconds) * time.Second,
	}
	if b.Ticket != nil {
		// Checked here: the call manager reports any refusal of the ticket store as unavailable.
		if b.Ticket.User != "" && tickets.CheckUser(b.Ticket.User) != nil {
			return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "ticket.user must be 1-64 of A-Z a-z 0-9 . _ -")
		}
		req.TicketRole, req.TicketUser = b.Ticket.Role, b.Ticket.User
		if req.TicketRole == "" {
			req.TicketRole = "participant"
		}
	}
	res, err := h.svc.Originate(r.Context(), req)
	if err != nil {
		return callError(err)
	}
	w.Header().Set("Location", Prefix+"/calls/"+res.ID)
	WriteJSON(w, http.StatusCreated, res)
	return nil
}

func (h *callsAPI) get(w http.ResponseWriter, r *http.Request, caller string) error {
	c, ok := h.svc.APICall(r.PathValue("id"), caller)
	if !ok {
		return Errorf(http.StatusNotFound, wire.CodeUnknownCall, "no call with this id for this API key (ended calls are kept 10 minutes)")
	}
	WriteJSON(w, http.StatusOK, c)
	return nil
}

func (h *callsAPI) hangup(w http.ResponseWriter, r *http.Request, caller string) error {
	if err := h.svc.HangupAPICall(r.PathValue("id"), caller); err != nil {
		return callError(err)
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// callStatus is the HTTP status of each refusal code.
var callStatus = map[string]int{
	wire.CodeBadMessage:           http.StatusBadRequest,
	wire.CodeInvalidNumber:        http.StatusBadRequest,
	wire.CodeForbiddenDestination: http.StatusForbidden,
	wire.CodeForbiddenCallerID:    http.StatusForbidden,
	wire.CodeCallRateLimited:      http.StatusTooManyRequests,
	wire.CodeTooManyCalls:         http.StatusTooManyRequests,
	wire.CodeBudgetExhausted:      http.StatusTooManyRequests,
	wire.CodeUnknownRoom:          http.StatusNotFound,
	wire.CodeUnknownCall:          http.StatusNotFound,
	wire.CodeUnavailable:          http.StatusServiceUnavailable,
}

func callError(err error) error {
	var ref *call.Refusal
	if !errors.As(err, &ref) {
		return err // logged, answered 500 internal
	}
	code := ref.Code
	if code == wire.CodeInternal {
		return err // a failure, not a refusal: logged, answered 500 internal without its text
	}
	if code == wire.CodeBadMessage {
		code = wire.CodeBadRequest
	}
	st, ok := callStatus[ref.Code]
	if !ok {
		st = http.StatusBadRequest
	}
	return Errorf(st, code, "%s", ref.Message)
}
