package call

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/internal/webhook"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Click-to-call: the REST API (an API key) calls an extension or an outside number, with a caller ID the key may
// present. Legs, in order: the far leg created in Stasis and dialled at once; when it answers, either a room
// membership (an existing or new room; a one-time ticket lets a browser join it) or a browser user rung like any
// incoming call (phone_in.go). Progress goes to the API's call state, to signed webhooks and, for calls to a user,
// to that user's browsers.

// TicketIssuer issues one-time join tickets (internal/tickets).
type TicketIssuer interface {
	Issue(ctx context.Context, g tickets.Grant, ttl time.Duration) (string, error)
}

// Notifier receives progress events of API calls (internal/webhook).
type Notifier interface {
	Notify(ev webhook.Event)
}

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
	d    dialplan.Decision
}

var userRe = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`)

// keepEnded is how long an ended API call stays visible to GET.
const keepEnded = 10 * time.Minute

// Originate validates r, applies the key's grants, caller IDs and limits, prepares the room (and ticket) and
// starts the far leg. Every refusal happens before any ARI request and is logged as a security event; a store
// that is down (Redis) refuses with unavailable.
func (m *Manager) Originate(ctx context.Context, r OriginateRequest) (OriginateResult, error) {
	log := m.log.With("api_key", r.APIKey, "to", r.To)
	deny := func(rf *Refusal) (OriginateResult, error) {
		log.Warn("security: API call refused", "code", rf.Code, "reason", rf.Message)
		m.observeRefused(KindAPI, rf.Code, cdr.Record{APIKey: r.APIKey, To: r.To})
		return OriginateResult{}, rf
	}
	d, err := m.o.Router.Route(r.To)
	if err != nil {
		log = log.With(routeAttrs(err)...)
		return deny(routeRefusal(err))
	}
	grants := m.o.PSTN.APIDial[r.APIKey]
	if len(grants) == 0 {
		grants = []string{"ext"}
	}
	if !dialplan.Allowed(d, grants) {
		return deny(refuse(wire.CodeForbiddenDestination, "API key %s may not call %s destinations (api.dial)", r.APIKey, d.Kind))
	}
	if d.Kind != dialplan.KindExtension && d.Kind != dialplan.KindPSTN {
		return deny(refuse(wire.CodeForbiddenDestination, "the API calls extensions and outside numbers; browsers join with connect.user or a room ticket"))
	}
	targets := 0
	for _, set := range []bool{r.ConnectUser != "", r.Room != "", r.CreateRoom} {
		if set {
			targets++
		}
	}
	switch {
	case targets != 1:
		return deny(refuse(wire.CodeBadMessage, "give exactly one of connect.user, connect.room and connect.create_room"))
	case r.ConnectUser != "" && !userRe.MatchString(r.ConnectUser):
		return deny(refuse(wire.CodeBadMessage, "connect.user is not a browser user name"))
	case (r.Room != "" || r.CreateRoom) && m.o.Rooms == nil:
		return deny(refuse(wire.CodeUnavailable, "rooms are not enabled on this server"))
	case r.Room != "" && !m.o.Rooms.Exists(r.Room):
		return deny(refuse(wire.CodeUnknownRoom, "room %s does not exist or has ended", r.Room))
	case r.ConnectUser != "" && (r.TicketRole != "" || r.MapCallerID):
		return deny(refuse(wire.CodeBadMessage, "ticket and map_caller_id apply to room calls only"))
	case r.TicketRole != "" && !rooms.ValidRole(r.TicketRole):
		return deny(refuse(wire.CodeBadMessage, "ticket_role %q is not a room role", r.TicketRole))
	}
	def := ""
	callerID, rf := pickCallerID(r.CallerID, m.o.PSTN.APICallerIDs[r.APIKey], def)
	if rf != nil && (d.Kind == dialplan.KindPSTN || r.CallerID != "") {
		if r.CallerID == "" {
			rf = refuse(wire.CodeForbiddenCallerID, "outside calls need a caller ID: configure api.caller_ids for key %s", r.APIKey)
		}
		return deny(rf)
	}
	if r.MapCallerID && (callerID == "" || m.o.Numbers == nil) {
		return deny(refuse(wire.CodeBadMessage, "map_caller_id needs a caller ID and a number store"))
	}
	if why := m.unavailable(); why != "" {
		return deny(refuse(wire.CodeUnavailable, "%s", why))
	}
	lease, err := m.o.PSTN.APIKeyLimits.Start("apikey:"+r.APIKey, d.Kind == dialplan.KindPSTN)
	if err != nil {
		return deny(limitRefusal(err))
	}
	ok := false
	defer func() {
		if !ok {
			lease.End(0)
		}
	}()

	res := OriginateResult{State: StateDialing, CallerID: callerID}
	room := r.Room
	if r.CreateRoom {
		rm, err := m.o.Rooms.Create(ctx, rooms.CreateOptions{Name: "call to " + d.Number})
		if err != nil {
			return deny(refuse(wire.CodeUnavailable, "could not create a room: %v", err))
		}
		room = rm.ID
		defer func() {
			if !ok { // a room made for a call that never started is ended again
				ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.o.CloseTimeout)
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
			return deny(refuse(wire.CodeUnavailable, "join tickets are not enabled on this server"))
		}
		ttl := m.o.PSTN.TicketTTL
		if ttl <= 0 {
			ttl = time.Minute
		}
		tk, err := m.o.PSTN.Tickets.Issue(ctx, tickets.Grant{Room: room, Role: r.TicketRole, User: r.TicketUser}, ttl)
		if err != nil {
			return deny(storeRefusal("issue a join ticket", err))
		}
		res.Ticket, res.TicketExpires = tk, time.Now().Add(ttl).UTC()
	}
	if r.MapCallerID {
		ttl := r.MapTTL
		if ttl <= 0 {
			ttl = time.Hour
		}
		if err := m.o.Numbers.Map(ctx, callerID, room, ttl); err != nil {
			return deny(storeRefusal(fmt.Sprintf("map caller ID %s to room %s", callerID, room), err))
		}
		res.MappedNumber = callerID
	}

	c := m.newCall(KindAPI, m.log.With("api_key", r.APIKey, "to", d.Number, "dest", string(d.Kind)))
	c.lease = lease
	ac := &apiCall{c: c, d: d, info: APICall{ID: c.id, State: StateDialing, To: d.Number, Kind: string(d.Kind), CallerID: callerID,
		Room: room, User: r.ConnectUser, Created: time.Now().UTC(), apiKey: r.APIKey}}
	c.api = ac
	c.near = apiParty{ac}
	rec := &c.obs.rec
	rec.To, rec.CallerID, rec.Room, rec.User, rec.APIKey, rec.Trunk = d.Number, callerID, room, r.ConnectUser, r.APIKey, d.Trunk
	c.onFarAnswered = c.connectAPIAnswered
	m.apiMu.Lock()
	for id, old := range m.api {
		if old.info.State == StateEnded && time.Since(old.info.Ended) > keepEnded {
			delete(m.api, id)
		}
	}
	m.api[c.id] = ac
	m.apiMu.Unlock()
	if err := m.start(c, c.setupAPI); err != nil {
		m.apiMu.Lock()
		delete(m.api, c.id)
		m.apiMu.Unlock()
		return deny(refuse(wire.CodeUnavailable, "%v", err))
	}
	ok = true
	res.ID = c.id
	c.log.Info("API call placed", "caller_id", callerID, "room", room, "user", r.ConnectUser)
	return res, nil
}

// storeRefusal turns a failure of Redis (or another store) into unavailable, anything else into an error.
func storeRefusal(what string, err error) *Refusal {
	if errors.Is(err, tickets.ErrUnavailable) || errors.Is(err, dialplan.ErrStoreUnavailable) {
		return refuse(wire.CodeUnavailable, "%s: the store is unavailable; try again shortly", what)
	}
	return refuse(wire.CodeUnavailable, "%s: %v", what, err)
}

func (c *Call) setupAPI() error {
	ac := c.api
	if ac.d.Kind == dialplan.KindPSTN {
		// No bridge yet: the trunk leg presents the caller ID itself; the carrier picks the codec.
		c.trunks = newTrunkPlan(ac.d, ac.info.CallerID, "")
		return c.dialTrunk()
	}
	ctx, cancel := c.setupCtx()
	defer cancel()
	far, err := c.createLeg(ctx, "far", ari.CreateRequest{Endpoint: c.m.farEndpoint(ac.d), Formats: "ulaw",
		Variables: callerVars(ac.info.CallerID, "")})
	c.far = far
	if err != nil {
		return err
	}
	if err := c.a.Channel(far.id).Dial(ctx, "", c.m.o.DialTimeout); err != nil {
		return fmt.Errorf("dial the far end: %w", err)
	}
	return nil
}

// connectAPIAnswered puts the answered far party in its room, or rings the browser user.
func (c *Call) connectAPIAnswered() {
	ac := c.api
	ctx, cancel := c.setupCtx()
	defer cancel()
	// The far end's own law (a PCMA carrier stays PCMA): the room's leg and the browser's offer follow it.
	law := media.PCMU
	if v, err := c.nativeFormat(ctx, c.far.id); err == nil && strings.Contains(v, "alaw") {
		law = media.PCMA
	}
	switch {
	case ac.info.Room != "":
		mem, err := c.m.o.Rooms.Join(ctx, ac.info.Room, rooms.JoinSpec{
			Kind: rooms.KindPhone, Name: ac.d.Number, CallerID: ac.d.Number, Role: rooms.RoleParticipant,
			Channel: c.far.id, Format: law.Format(), Log: c.log,
			Kick: func(reason string) { c.post(inbound{kind: inKicked, reason: reason}) },
		})
		if err != nil {
			c.log.Error("put the answered call in the room", "room", ac.info.Room, "err", err)
			c.endWith(wire.CauseTemporaryFailure)
			return
		}
		c.member = mem
		c.log.Info("answered call is in the room", "room", ac.info.Room, "participant", mem.ID())
	case ac.info.User != "":
		var sessions []*signal.Session
		if dir := c.m.directory(); dir != nil {
			sessions = dir.SessionsOf(ac.info.User)
		}
		if len(sessions) == 0 {
			c.log.Info("the user has no browser online")
			c.endWith(wire.CauseUserBusy)
			return
		}
		c.ringSessions(ac.d.Number, "", law, sessions)
	}
}

// apiParty reports the far end's progress to the API client (state, webhooks, the user's browsers).
type apiParty struct{ ac *apiCall }

func (p apiParty) ringing(c *Call)  { c.m.progress(p.ac, StateRinging, "") }
func (p apiParty) answered(c *Call) { c.m.progress(p.ac, StateAnswered, "") }
func (p apiParty) dtmf(c *Call, d string) {
	if c.browser != nil {
		c.browser.dtmf(c, d)
	}
}

// apiEnded records the end of an API call.
func (m *Manager) apiEnded(ac *apiCall, cause string) { m.progress(ac, StateEnded, cause) }

// APICall returns the state of an API call placed with apiKey.
func (m *Manager) APICall(id, apiKey string) (APICall, bool) {
	m.apiMu.Lock()
	defer m.apiMu.Unlock()
	ac := m.api[id]
	if ac == nil || ac.info.apiKey != apiKey {
		return APICall{}, false
	}
	return ac.info, true
}

// HangupAPICall ends an API call placed with apiKey.
func (m *Manager) HangupAPICall(id, apiKey string) error {
	m.apiMu.Lock()
	ac := m.api[id]
	m.apiMu.Unlock()
	if ac == nil || ac.info.apiKey != apiKey {
		return refuse(wire.CodeUnknownCall, "no call %s for this API key", clip(id))
	}
	ac.c.log.Info("API asked to hang up")
	ac.c.endWith(wire.CauseNormalClearing)
	return nil
}

// progress updates an API call's state and tells the webhook and, for connect.user calls, the user's browsers.
func (m *Manager) progress(ac *apiCall, state, cause string) {
	m.apiMu.Lock()
	if ac.info.State == StateEnded || ac.info.State == state {
		m.apiMu.Unlock()
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
	m.apiMu.Unlock()

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
