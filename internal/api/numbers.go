package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/wire"
)

// numberError turns number store errors into API errors.
func numberError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, dialplan.ErrInvalidNumber):
		return Errorf(http.StatusBadRequest, wire.CodeInvalidNumber, "%v", err)
	case errors.Is(err, dialplan.ErrInvalidRoom):
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "%v", err)
	case errors.Is(err, dialplan.ErrNotMapped):
		return Errorf(http.StatusNotFound, wire.CodeNotMapped, "%v", err)
	case errors.Is(err, dialplan.ErrStoreUnavailable):
		return Errorf(http.StatusServiceUnavailable, wire.CodeUnavailable, "the number store is unavailable: %v", err)
	}
	return err
}

func (h *roomsAPI) store() (dialplan.Store, error) {
	if h.Numbers == nil {
		return nil, Errorf(http.StatusServiceUnavailable, wire.CodeUnavailable, "no number store is configured")
	}
	return h.Numbers, nil
}

type mapNumberRequest struct {
	Room       string   `json:"room"`
	TTLSeconds *float64 `json:"ttl_seconds"`
}

func (h *roomsAPI) mapNumber(w http.ResponseWriter, r *http.Request, caller string) error {
	st, err := h.store()
	if err != nil {
		return err
	}
	var req mapNumberRequest
	if err := DecodeJSON(r, &req); err != nil {
		return err
	}
	n, err := dialplan.NormalizeNumber(r.PathValue("number"))
	if err != nil {
		return numberError(err)
	}
	if err := dialplan.ValidateRoomID(req.Room); err != nil {
		return numberError(err)
	}
	if !h.Rooms.Exists(req.Room) {
		return Errorf(http.StatusNotFound, wire.CodeNotFound, "room %s does not exist; create it first (POST /rooms)", req.Room)
	}
	ttl := h.NumberTTL
	if req.TTLSeconds != nil {
		if *req.TTLSeconds < 0 || *req.TTLSeconds > 366*86400 {
			return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "ttl_seconds must be 0 (no expiry) up to a year")
		}
		ttl = time.Duration(*req.TTLSeconds * float64(time.Second))
	}
	if err := st.Map(r.Context(), n, req.Room, ttl); err != nil {
		return numberError(err)
	}
	h.log.Info("number mapped", "number", n, "room", req.Room, "ttl", ttl, "caller", caller)
	m := dialplan.Mapping{Number: n, Room: req.Room}
	if ttl > 0 {
		m.Expires = time.Now().Add(ttl).UTC()
	}
	WriteJSON(w, http.StatusOK, m)
	return nil
}

func (h *roomsAPI) getNumber(w http.ResponseWriter, r *http.Request, _ string) error {
	st, err := h.store()
	if err != nil {
		return err
	}
	m, err := st.Lookup(r.Context(), r.PathValue("number"))
	if err != nil {
		return numberError(err)
	}
	WriteJSON(w, http.StatusOK, m)
	return nil
}

func (h *roomsAPI) listNumbers(w http.ResponseWriter, r *http.Request, _ string) error {
	st, err := h.store()
	if err != nil {
		return err
	}
	ms, err := st.List(r.Context())
	if err != nil {
		return numberError(err)
	}
	if ms == nil {
		ms = []dialplan.Mapping{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"numbers": ms})
	return nil
}

func (h *roomsAPI) unmapNumber(w http.ResponseWriter, r *http.Request, caller string) error {
	st, err := h.store()
	if err != nil {
		return err
	}
	if err := st.Unmap(r.Context(), r.PathValue("number")); err != nil {
		return numberError(err)
	}
	h.log.Info("number unmapped", "number", r.PathValue("number"), "caller", caller)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
