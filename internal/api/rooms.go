package api

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/wire"
)

// RoomsDeps is what the rooms, numbers and token endpoints work on.
type RoomsDeps struct {
	Rooms   *rooms.Registry
	Numbers dialplan.Store
	Signer  *auth.Signer
	// TokenTTL is the default lifetime of minted tokens; MaxTokenTTL bounds a requested one (default 24h).
	TokenTTL, MaxTokenTTL time.Duration
	// NumberTTL is the default lifetime of a mapping made without ttl_seconds; 0 means none.
	NumberTTL time.Duration
	Logger    *slog.Logger
}

type roomsAPI struct {
	RoomsDeps
	log *slog.Logger
}

// RegisterRooms adds /rooms, /numbers and the token endpoints (see openapi/rooms.json).
func (s *Server) RegisterRooms(d RoomsDeps) {
	if d.TokenTTL <= 0 {
		d.TokenTTL = time.Hour
	}
	if d.MaxTokenTTL <= 0 {
		d.MaxTokenTTL = 24 * time.Hour
	}
	if d.Logger == nil {
		d.Logger = s.log
	}
	h := &roomsAPI{RoomsDeps: d, log: d.Logger}
	s.Handle("POST /rooms", h.create)
	s.Handle("GET /rooms", h.list)
	s.Handle("GET /rooms/{room}", h.get)
	s.Handle("DELETE /rooms/{room}", h.end)
	s.Handle("GET /rooms/{room}/participants", h.participants)
	s.Handle("POST /rooms/{room}/participants/{participant}/mute", h.mute)
	s.Handle("DELETE /rooms/{room}/participants/{participant}", h.kick)
	s.Handle("PUT /numbers/{number}", h.mapNumber)
	s.Handle("GET /numbers", h.listNumbers)
	s.Handle("GET /numbers/{number}", h.getNumber)
	s.Handle("DELETE /numbers/{number}", h.unmapNumber)
	s.Handle("POST /rooms/{room}/tokens", h.roomToken)
	s.Handle("POST /agent-tokens", h.agentToken)
}

// roomError turns the rooms package's errors into API errors.
func roomError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rooms.ErrNotFound):
		return Errorf(http.StatusNotFound, wire.CodeNotFound, "%v", err)
	case errors.Is(err, rooms.ErrNoParticipant):
		return Errorf(http.StatusNotFound, wire.CodeNotFound, "%v", err)
	case errors.Is(err, rooms.ErrExists):
		return Errorf(http.StatusConflict, wire.CodeConflict, "%v", err)
	case errors.Is(err, rooms.ErrInvalid):
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "%v", err)
	case errors.Is(err, rooms.ErrEnded), errors.Is(err, rooms.ErrUnavailable), errors.Is(err, rooms.ErrFull):
		return Errorf(http.StatusServiceUnavailable, wire.CodeUnavailable, "%v", err)
	}
	return err
}

type createRoomRequest struct {
	ID           string  `json:"id"`
	Name         string  `json:"name"`
	Backend      string  `json:"backend"`
	GraceSeconds float64 `json:"grace_seconds"`
}

type roomView struct {
	rooms.Room
	ParticipantList []rooms.Participant `json:"participant_list"` // [] for an empty room, never absent
}

func (h *roomsAPI) create(w http.ResponseWriter, r *http.Request, caller string) error {
	var req createRoomRequest
	if err := DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.GraceSeconds < 0 || req.GraceSeconds > 86400 {
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "grace_seconds must be 0 (the default) to 86400")
	}
	rm, err := h.Rooms.Create(r.Context(), rooms.CreateOptions{ID: req.ID, Name: req.Name, Backend: req.Backend,
		Grace: time.Duration(req.GraceSeconds * float64(time.Second))})
	if err != nil {
		return roomError(err)
	}
	h.log.Info("room created through the API", "room", rm.ID, "backend", rm.Backend, "caller", caller)
	WriteJSON(w, http.StatusCreated, rm)
	return nil
}

func (h *roomsAPI) list(w http.ResponseWriter, _ *http.Request, _ string) error {
	WriteJSON(w, http.StatusOK, map[string]any{"rooms": h.Rooms.List()})
	return nil
}

func (h *roomsAPI) get(w http.ResponseWriter, r *http.Request, _ string) error {
	id := r.PathValue("room")
	rm, err := h.Rooms.Get(id)
	if err != nil {
		return roomError(err)
	}
	ps, err := h.Rooms.Participants(id)
	if err != nil {
		return roomError(err)
	}
	if ps == nil {
		ps = []rooms.Participant{}
	}
	WriteJSON(w, http.StatusOK, roomView{Room: rm, ParticipantList: ps})
	return nil
}

func (h *roomsAPI) end(w http.ResponseWriter, r *http.Request, caller string) error {
	id := r.PathValue("room")
	if err := h.Rooms.End(r.Context(), id, "ended through the API by "+caller); err != nil {
		if errors.Is(err, rooms.ErrNotFound) {
			return roomError(err)
		}
		// The room is gone; some Asterisk resource was not released and is logged.
		h.log.Warn("room ended with errors", "room", id, "err", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *roomsAPI) participants(w http.ResponseWriter, r *http.Request, _ string) error {
	ps, err := h.Rooms.Participants(r.PathValue("room"))
	if err != nil {
		return roomError(err)
	}
	WriteJSON(w, http.StatusOK, map[string]any{"participants": ps})
	return nil
}

func (h *roomsAPI) mute(w http.ResponseWriter, r *http.Request, caller string) error {
	var req struct {
		Muted *bool `json:"muted"`
	}
	if err := DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Muted == nil {
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, `send {"muted": true} or {"muted": false}`)
	}
	p, err := h.Rooms.Mute(r.Context(), r.PathValue("room"), r.PathValue("participant"), *req.Muted)
	if err != nil {
		return roomError(err)
	}
	h.log.Info("participant mute set through the API", "room", r.PathValue("room"), "participant", p.ID, "muted", p.Muted, "caller", caller)
	WriteJSON(w, http.StatusOK, p)
	return nil
}

func (h *roomsAPI) kick(w http.ResponseWriter, r *http.Request, caller string) error {
	if err := h.Rooms.Kick(r.Context(), r.PathValue("room"), r.PathValue("participant")); err != nil {
		return roomError(err)
	}
	h.log.Info("participant kicked through the API", "room", r.PathValue("room"), "participant", r.PathValue("participant"), "caller", caller)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
