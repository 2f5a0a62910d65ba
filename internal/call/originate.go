package call

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/internal/webhook"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// TicketIssuer issues one-time join tickets (internal/tickets).
type TicketIssuer interface {
	Issue(ctx context.Context, g tickets.Grant, ttl time.Duration) (string, error)
}

// Notifier receives progress events of API calls (internal/webhook).
type Notifier interface {
	Notify(ev webhook.Event)
}

// kindAPIHangup asks an API call to end (DELETE /calls/{id}).
const kindAPIHangup inboundKind = 200

// API call states.
const (
	StateDialing  = "dialing"
	StateRinging  = "ringing"
	StateAnswered = "answered"
	StateEnded    = "ended"
)

// OriginateRequest is a click-to-call placed through the REST API with an API key.
type OriginateRequest struct {
	APIKey string // the key's name (already authenticated)
	To     string // extension, PSTN number
	// CallerID is the number the far end sees; it must be one of the key's allowed caller IDs. Empty: the first.
	CallerID string
	// Exactly one of: ConnectUser (ring this browser user once the far end answers), Room (an existing room) or
	// CreateRoom (a new room with a random ID).
	ConnectUser string
	Room        string
	CreateRoom  bool
	// TicketRole, for room calls, asks for a one-time join ticket in this role (default participant when a room
	// is created). MapCallerID maps the caller ID to the room for MapTTL, so that the far party calling back
	// lands in the same room.
	TicketRole  string
	TicketUser  string
	MapCallerID bool
	MapTTL      time.Duration
}

// OriginateResult says what was started.
type OriginateResult struct {
	ID            string    `json:"id"`
	State         string    `json:"state"`
	Room          string    `json:"room,omitempty"`
	Ticket        string    `json:"ticket,omitempty"`
	TicketExpires time.Time `json:"ticket_expires_at,omitzero"`
	MappedNumber  string    `json:"mapped_number,omitempty"`
	CallerID      string    `json:"caller_id,omitempty"`
}

// APICall is the state of a call the API placed, as GET /calls/{id} shows it.
type APICall struct {
	ID       string    `json:"id"`
	State    string    `json:"state"`
	To       string    `json:"to"`
	Kind     string    `json:"kind"`
	CallerID string    `json:"caller_id,omitempty"`
	Room     string    `json:"room,omitempty"`
	User     string    `json:"user,omitempty"`
	Cause    string    `json:"cause,omitempty"`
	Code     int       `json:"code,omitempty"`
	Created  time.Time `json:"created"`
	Answered time.Time `json:"answered,omitzero"`
	Ended    time.Time `json:"ended,omitzero"`
	apiKey   string
}

type apiCall struct {
	info APICall
	c    *Call
}

// Refusal is an API call refused before anything was made in Asterisk. Code is stable (signal's codes).
type Refusal struct {
	Code    string
	Message string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

func refused(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Message: fmt.Sprintf(format, args...)}
}

var userRe = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)

// keepEnded is how long an ended API call stays visible to GET.
const keepEnded = 10 * time.Minute

// Originate validates r, applies the key's grants, caller IDs and limits, prepares the room (and ticket) and
// starts the far leg. Every refusal happens before any ARI request and is logged as a security event.
func (m *Manager) Originate(ctx context.Context, r OriginateRequest) (OriginateResult, error) {
	log := m.log.With("api_key", r.APIKey, "to", r.To)
	refuse := func(code, format string, args ...any) (OriginateResult, error) {
		ref := refused(code, format, args...)
		log.Warn("security: API call refused", "code", code, "reason", ref.Message)
		return OriginateResult{}, ref
	}
	d, err := m.o.Router.Route(r.To)
	if err != nil {
		code := wire.CodeInvalidNumber
		var re *dialplan.RouteError
		if errors.As(err, &re) {
			code = re.Code
		}
		return refuse(code, "%v", err)
	}
	grants := m.o.PSTN.APIDial[r.APIKey]
	if len(grants) == 0 {
		grants = []string{"ext"}
	}
	if !dialplan.Allowed(d, grants) {
		return refuse(wire.CodeForbiddenDestination, "API key %s may not call %s destinations (api.dial)", r.APIKey, d.Kind)
	}
	if d.Kind != dialplan.KindExtension && d.Kind != dialplan.KindPSTN {
		return refuse(wire.CodeForbiddenDestination, "the API calls extensions and outside numbers; browsers join with connect.user or a room ticket")
	}
	targets := 0
	for _, set := range []bool{r.ConnectUser != "", r.Room != "", r.CreateRoom} {
		if set {
			targets++
		}
	}
	if targets != 1 {
		return refuse(wire.CodeBadMessage, "give exactly one of connect.user, connect.room and connect.create_room")
	}
	if r.ConnectUser != "" && !userRe.MatchString(r.ConnectUser) {
		return refuse(wire.CodeBadMessage, "connect.user is not a browser user name")
	}
	if (r.Room != "" || r.CreateRoom) && m.o.Rooms == nil {
		return refuse(wire.CodeUnavailable, "rooms are not enabled on this server")
	}
	if r.Room != "" && !m.o.Rooms.Exists(r.Room) {
		return refuse(wire.CodeUnknownRoom, "room %s does not exist or has ended", r.Room)
	}
	if r.ConnectUser != "" && (r.TicketRole != "" || r.MapCallerID) {
		return refuse(wire.CodeBadMessage, "ticket and map_caller_id apply to room calls only")
	}
	if r.TicketRole != "" && !rooms.ValidRole(r.TicketRole) {
		return refuse(wire.CodeBadMessage, "ticket_role %q is not a room role", r.TicketRole)
	}
	allowed := m.o.PSTN.APICallerIDs[r.APIKey]
	callerID := r.CallerID
	switch {
	case callerID != "" && !slices.Contains(allowed, callerID):
		return refuse(wire.CodeForbiddenCallerID, "caller ID %q is not among this key's allowed caller IDs (api.caller_ids)", clip(callerID))
	case callerID == "" && len(allowed) > 0:
		callerID = allowed[0]
	}
	if d.Kind == dialplan.KindPSTN && callerID == "" {
		return refuse(wire.CodeForbiddenCallerID, "outside calls need a caller ID: configure api.caller_ids for key %s", r.APIKey)
	}
	if r.MapCallerID && (callerID == "" || m.o.Numbers == nil) {
		return refuse(wire.CodeBadMessage, "map_caller_id needs a caller ID and a number store")
	}
	lease, err := m.o.PSTN.APIKeyLimits.Start("apikey:"+r.APIKey, d.Kind == dialplan.KindPSTN)
	if err != nil {
		code, text := refusalCode(err)
		return refuse(code, "%s", text)
	}
	ok := false
	defer func() {
		if !ok {
			lease.End(0)
		}
	}()
	runCtx := m.runCtx()
	if runCtx == nil || runCtx.Err() != nil || !m.o.ARI.Connected() {
		return OriginateResult{}, refused(wire.CodeUnavailable, "Patchbay is not connected to Asterisk or is shutting down; try again shortly")
	}

	res := OriginateResult{State: StateDialing, CallerID: callerID}
	room := r.Room
	if r.CreateRoom {
		rm, err := m.o.Rooms.Create(ctx, rooms.CreateOptions{Name: "call to " + d.Number})
		if err != nil {
			return OriginateResult{}, fmt.Errorf("create room for API call: %w", err)
		}
		room = rm.ID
		defer func() {
			if !ok { // a room made for a call that never started is ended again
				ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if err := m.o.Rooms.End(ectx, room, "call setup failed"); err != nil {
					log.Warn("end room of failed API call", "room", room, "err", err)
				}
			}
		}()
		if r.TicketRole == "" {
			r.TicketRole = rooms.RoleParticipant
		}
	}
	res.Room = room
	if room != "" && r.TicketRole != "" {
		if m.o.PSTN.Tickets == nil {
			return OriginateResult{}, refused(wire.CodeUnavailable, "join tickets are not enabled on this server")
		}
		ttl := m.o.PSTN.TicketTTL
		if ttl <= 0 {
			ttl = time.Minute
		}
		tk, err := m.o.PSTN.Tickets.Issue(ctx, tickets.Grant{Room: room, Role: r.TicketRole, User: r.TicketUser}, ttl)
		if err != nil {
			return OriginateResult{}, fmt.Errorf("issue join ticket: %w", err)
		}
		res.Ticket, res.TicketExpires = tk, time.Now().Add(ttl).UTC()
	}
	if r.MapCallerID {
		ttl := r.MapTTL
		if ttl <= 0 {
			ttl = time.Hour
		}
		if err := m.o.Numbers.Map(ctx, callerID, room, ttl); err != nil {
			return OriginateResult{}, fmt.Errorf("map caller ID %s to room %s: %w", callerID, room, err)
		}
		res.MappedNumber = callerID
	}

	c := m.newCall(runCtx, m.log.With("api_key", r.APIKey))
	c.farID = "pb-far-" + c.id
	if err := m.register(c); err != nil {
		return OriginateResult{}, refused(wire.CodeUnavailable, "%v", err)
	}
	ok = true
	m.holdLease(c.id, lease)
	ac := &apiCall{c: c, info: APICall{ID: c.id, State: StateDialing, To: d.Number, Kind: string(d.Kind), CallerID: callerID,
		Room: room, User: r.ConnectUser, Created: time.Now().UTC(), apiKey: r.APIKey}}
	st := m.pstn()
	st.mu.Lock()
	for id, old := range st.api {
		if old.info.State == StateEnded && time.Since(old.info.Ended) > keepEnded {
			delete(st.api, id)
		}
	}
	st.api[c.id] = ac
	st.mu.Unlock()
	res.ID = c.id
	c.log.Info("API call placed", "to", d.Number, "kind", d.Kind, "caller_id", callerID, "room", room, "user", r.ConnectUser)
	go c.runAPI(ac, d)
	return res, nil
}

func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// APICall returns the state of an API call placed with apiKey.
func (m *Manager) APICall(id, apiKey string) (APICall, bool) {
	st := m.pstn()
	st.mu.Lock()
	defer st.mu.Unlock()
	ac := st.api[id]
	if ac == nil || ac.info.apiKey != apiKey {
		return APICall{}, false
	}
	return ac.info, true
}

// HangupAPICall ends an API call placed with apiKey.
func (m *Manager) HangupAPICall(id, apiKey string) error {
	st := m.pstn()
	st.mu.Lock()
	ac := st.api[id]
	st.mu.Unlock()
	if ac == nil || ac.info.apiKey != apiKey {
		return refused(wire.CodeUnknownCall, "no call %s for this API key", clip(id))
	}
	ac.c.post(inbound{kind: kindAPIHangup})
	return nil
}

// progress updates an API call's state and tells the webhook and, for connect.user calls, the user's browsers.
func (m *Manager) progress(ac *apiCall, state, cause string) {
	st := m.pstn()
	st.mu.Lock()
	if ac.info.State == StateEnded || ac.info.State == state {
		st.mu.Unlock()
		return
	}
	ac.info.State = state
	now := time.Now().UTC()
	switch state {
	case StateAnswered:
		ac.info.Answered = now
	case StateEnded:
		ac.info.Ended = now
		ac.info.Cause, ac.info.Code = cause, wire.CauseCode(cause)
	}
	info := ac.info
	st.mu.Unlock()

	ev := webhook.Event{CallID: info.ID, At: now, To: info.To, Kind: info.Kind, Room: info.Room, APIKey: info.apiKey}
	msg := signal.Message{Type: signal.TypeProgress, CallID: info.ID, To: info.To}
	switch state {
	case StateRinging:
		ev.Type, msg.Event = webhook.EventRinging, signal.ProgressRinging
	case StateAnswered:
		ev.Type, msg.Event = webhook.EventAnswered, signal.ProgressAnswered
	case StateEnded:
		ev.Type, msg.Event = webhook.EventEnded, signal.ProgressEnded
		ev.Cause, ev.Code = info.Cause, info.Code
		msg.Cause, msg.Code = info.Cause, info.Code
		if !info.Answered.IsZero() {
			ev.Duration = now.Sub(info.Answered).Round(time.Millisecond).Seconds()
		}
	default:
		return
	}
	if m.o.PSTN.Webhooks != nil {
		m.o.PSTN.Webhooks.Notify(ev)
	}
	if info.User != "" {
		if dir := m.directory(); dir != nil {
			for _, s := range dir.SessionsOf(info.User) {
				_ = s.Send(s.Context(), msg)
			}
		}
	}
}

// runAPI owns an API call: it dials the far leg and, once answered, puts it in the room or rings the browser
// user; it ends when the far party hangs up, DELETE asks, the maximum duration passes or Patchbay stops.
func (c *Call) runAPI(ac *apiCall, d dialplan.Decision) {
	ctx, cancel := context.WithCancel(c.ctx)
	c.ctx = ctx
	a := c.m.o.ARI
	cause := wire.CauseNormalClearing
	var mem *rooms.Member
	sub := a.Subscribe(ari.Filter{Name: "api-call-" + c.id, IDs: []string{c.farID}})
	defer func() {
		sub.Close()
		hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if mem != nil {
			mem.Leave(hctx, cause)
		}
		if !c.farGone {
			if err := a.Channel(c.farID).Hangup(hctx, ariReason(cause)); err != nil && !ari.IsNotFound(err) {
				c.log.Warn("hang up far leg", "err", err)
			}
		}
		hcancel()
		cancel()
		c.m.progress(ac, StateEnded, cause)
		c.m.endCall(c.id)
		c.m.unregister(c)
		c.log.Info("API call ended", "cause", cause, "duration", time.Since(c.started).Round(time.Millisecond))
	}()

	setupCtx, setupCancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := a.Channels().Create(setupCtx, ari.CreateRequest{
		Endpoint: farEndpoint(d), App: a.Application(), AppArgs: "leg," + c.id, ChannelID: c.farID,
		Formats: "ulaw", Variables: callerVars(ac.info.CallerID, ""),
	})
	if err == nil {
		err = waitStasisStart(setupCtx, sub, c.farID)
	}
	setupCancel()
	if err == nil {
		err = a.Channel(c.farID).Dial(ctx, "", c.m.o.DialTimeout)
	}
	if err != nil {
		c.log.Error("API call setup failed", "err", err)
		cause = wire.CauseTemporaryFailure
		return
	}
	var maxDur <-chan time.Time
	if dur := c.m.maxDuration(c.id); dur > 0 {
		t := time.NewTimer(dur)
		defer t.Stop()
		maxDur = t.C
	}
	answered := false
	onAnswer := func() bool {
		if answered {
			return true
		}
		answered = true
		c.m.noteAnswered(c.id)
		c.m.progress(ac, StateAnswered, "")
		jctx, jcancel := context.WithTimeout(ctx, 10*time.Second)
		defer jcancel()
		switch {
		case ac.info.Room != "":
			var err error
			mem, err = c.m.o.Rooms.Join(jctx, ac.info.Room, rooms.JoinSpec{
				Kind: rooms.KindPhone, Name: d.Number, CallerID: d.Number, Role: rooms.RoleParticipant,
				Channel: c.farID, Format: "ulaw", Log: c.log,
				Kick: func(reason string) { c.post(inbound{kind: kindKicked, cause: reason}) },
			})
			if err != nil {
				c.log.Error("put answered call in the room", "room", ac.info.Room, "err", err)
				cause = wire.CauseTemporaryFailure
				return false
			}
			c.log.Info("answered call is in the room", "room", ac.info.Room, "participant", mem.ID())
		case ac.info.User != "":
			ch, err := a.Channel(c.farID).Get(jctx)
			if err != nil {
				c.log.Error("get answered channel", "err", err)
				cause = wire.CauseTemporaryFailure
				return false
			}
			// The far channel now also belongs to an incoming call ringing the user's browsers; this call keeps
			// watching it for progress events and DELETE.
			ch.Caller.Number, ch.Caller.Name = d.Number, ""
			c.m.incoming(ctx, *ch, ac.info.User, c.log)
		}
		return true
	}
	for {
		var memEvents <-chan rooms.Event
		if mem != nil {
			memEvents = mem.Events()
		}
		select {
		case <-ctx.Done():
			return
		case <-maxDur:
			c.log.Warn("security: API call reached the maximum duration", "max", c.m.maxDuration(c.id))
			return
		case <-memEvents:
		case in := <-c.inbox:
			switch in.kind {
			case kindShutdown:
				cause = wire.CauseCongestion
				return
			case kindAPIHangup:
				c.log.Info("API asked to hang up")
				return
			case kindKicked:
				c.log.Info("removed from the room", "reason", in.cause)
				return
			}
		case ev := <-sub.Events():
			switch e := ev.(type) {
			case *ari.Dial:
				if e.Peer.ID != c.farID {
					continue
				}
				switch e.Dialstatus {
				case "RINGING", "PROGRESS":
					c.m.progress(ac, StateRinging, "")
				case "ANSWER", "":
				default:
					cause = dialStatusCause(e.Dialstatus)
					return
				}
			case *ari.ChannelStateChange:
				if e.Channel.ID == c.farID && e.Channel.State == "Up" && !onAnswer() {
					return
				}
			case *ari.ChannelDestroyed:
				if e.Channel.ID == c.farID {
					c.farGone = true
					if cause = wire.CauseName(e.Cause); e.Cause == 0 {
						cause = wire.CauseNormalClearing
					}
					return
				}
			case *ari.Reconciled:
				if goneAny(e, c.farID) {
					c.farGone = true
					cause = wire.CauseTemporaryFailure
					return
				}
			}
		}
	}
}
