package api

import (
	"net/http"
	"regexp"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/wire"
)

var tokenUserRe = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)

type tokenRequest struct {
	User       string  `json:"user"`
	Name       string  `json:"name"`
	Role       string  `json:"role"`
	TTLSeconds float64 `json:"ttl_seconds"`
}

type tokenReply struct {
	Token   string    `json:"token"`
	User    string    `json:"user"`
	Room    string    `json:"room,omitempty"`
	Role    string    `json:"role"`
	Expires time.Time `json:"expires"`
}

func (h *roomsAPI) mint(w http.ResponseWriter, req tokenRequest, room, caller string) error {
	if h.Signer == nil {
		return Errorf(http.StatusServiceUnavailable, wire.CodeUnavailable, "token signing is not configured")
	}
	if !tokenUserRe.MatchString(req.User) {
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "user must be 1-32 of a-z 0-9 . _ -, starting with a letter")
	}
	if len(req.Name) > 64 {
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "name longer than 64 characters")
	}
	ttl := h.TokenTTL
	if req.TTLSeconds != 0 {
		ttl = time.Duration(req.TTLSeconds * float64(time.Second))
		if ttl < time.Second || ttl > h.MaxTokenTTL {
			return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "ttl_seconds must be 1 to %d", int(h.MaxTokenTTL.Seconds()))
		}
	}
	c := auth.Claims{Name: req.Name, Room: room, Role: req.Role}
	c.Subject = req.User
	tok, err := h.Signer.Mint(c, ttl)
	if err != nil {
		return err
	}
	h.log.Info("room token minted", "user", req.User, "room", room, "role", req.Role, "ttl", ttl, "caller", caller)
	WriteJSON(w, http.StatusCreated, tokenReply{Token: tok, User: req.User, Room: room, Role: req.Role, Expires: time.Now().Add(ttl).UTC()})
	return nil
}

// roomToken mints a browser token for one room: its room claim is the room, its role participant or moderator.
func (h *roomsAPI) roomToken(w http.ResponseWriter, r *http.Request, caller string) error {
	var req tokenRequest
	if err := DecodeJSON(r, &req); err != nil {
		return err
	}
	id := r.PathValue("room")
	if !h.Rooms.Exists(id) {
		return Errorf(http.StatusNotFound, wire.CodeNotFound, "room %s does not exist", id)
	}
	if req.Role == "" {
		req.Role = rooms.RoleParticipant
	}
	if req.Role != rooms.RoleParticipant && req.Role != rooms.RoleModerator {
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "role must be %q or %q; agents get tokens from POST /agent-tokens", rooms.RoleParticipant, rooms.RoleModerator)
	}
	return h.mint(w, req, id, caller)
}

// agentToken mints a token with role agent (the default) or supervisor and no room: the agent joins the room mapped
// to a number; a supervisor sees every live call on the console and may supervise agents.
func (h *roomsAPI) agentToken(w http.ResponseWriter, r *http.Request, caller string) error {
	var req tokenRequest
	if err := DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Role != "" && req.Role != rooms.RoleAgent && req.Role != call.RoleSupervisor {
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "agent tokens have role %q or %q", rooms.RoleAgent, call.RoleSupervisor)
	}
	if req.Role == "" {
		req.Role = rooms.RoleAgent
	}
	return h.mint(w, req, "", caller)
}
