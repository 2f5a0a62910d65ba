package call

import (
	"errors"
	"fmt"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/limits"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// PSTNOptions configure outside calls, click-to-call and the limits on every call. The zero value allows no
// outside call without a caller ID and applies no limits.
type PSTNOptions struct {
	// Per-caller limits: browser users (token subject), API keys and softphones. Nil: unlimited.
	TokenLimits, APIKeyLimits, PhoneLimits *limits.Limiter
	// PhoneCallerIDs maps a softphone's endpoint name to the E.164 caller ID its outside calls present.
	PhoneCallerIDs map[string]string
	// DefaultCallerID is presented when a caller has none of its own; empty: such outside calls are refused.
	DefaultCallerID string
	// DIDs maps an inbound number to "user:NAME" or "ext:NUMBER"; other DIDs go to the rooms' number store.
	DIDs map[string]string
	// APICallerIDs maps an API key's name to the caller IDs its calls may present; APIDial to its grants.
	APICallerIDs, APIDial map[string][]string
	// Tickets issues one-time join tickets for API calls connected to a room; TicketTTL is their lifetime.
	Tickets   TicketIssuer
	TicketTTL time.Duration
	// Webhooks receives progress events of API calls; nil: none are sent.
	Webhooks Notifier
}

// Refusal is a call refused before it started, with the stable code (wire.Code*) the browser or API client sees.
type Refusal struct {
	Code, Message string
}

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

func refuse(code, format string, args ...any) *Refusal {
	return &Refusal{Code: code, Message: fmt.Sprintf(format, args...)}
}

// refusalCause is the hang-up cause that follows a refusal's error message, so a client that only reads hangup
// messages still learns the call is over and roughly why.
func refusalCause(code string) string {
	return wire.RefusalCause(code) // one table, shared with the signalling server's own refusals
}

// refuseBrowser tells a browser its call or join is refused: an error with the code, then a hangup with a cause,
// so every call_id a client opened ends with a hangup. A refusal is a security event in the log.
func (m *Manager) refuseBrowser(kind Kind, s *signal.Session, msg signal.Message, r *Refusal, attrs ...any) {
	to := msg.To
	if kind == KindRoom {
		to = msg.Room
	}
	m.observeRefused(kind, r.Code, cdr.Record{User: s.User(), From: s.User(), To: to})
	callID := msg.CallID
	attrs = append([]any{"session", s.ID(), "user", s.User(), "call_id", callID, "code", r.Code, "reason", r.Message}, attrs...)
	if r.Code == wire.CodeUnavailable {
		m.log.Warn("call refused: server unavailable", attrs...)
	} else {
		m.log.Warn("security: call refused", attrs...)
	}
	ctx := s.Context()
	_ = s.Send(ctx, signal.ErrorMessage(callID, r.Code, r.Message))
	_ = s.Send(ctx, signal.HangupMessage(callID, refusalCause(r.Code)))
}

// routeRefusal turns a router error into a refusal, in the words the caller may read.
func routeRefusal(err error) *Refusal {
	var re *dialplan.RouteError
	if errors.As(err, &re) {
		return refuse(re.Code, "%s", re.Message())
	}
	return refuse(wire.CodeInvalidNumber, "%s", err.Error())
}

// routeAttrs are the log fields of a router refusal (the number in E.164, its class and country).
func routeAttrs(err error) []any {
	var re *dialplan.RouteError
	if errors.As(err, &re) {
		return re.LogAttrs()
	}
	return nil
}

// limitRefusal turns a limits refusal into a call refusal.
func limitRefusal(err error) *Refusal {
	var r *limits.Refusal
	if errors.As(err, &r) {
		return refuse(r.Code, "%s", r.Message)
	}
	return refuse(wire.CodeInternal, "%v", err)
}

// pickCallerID chooses the caller ID an outside call presents (dialplan.PickCallerID, the one check shared by
// browsers, the API and `patchbay route`): the requested one if allowed, else the first allowed, else def. A
// requested ID outside the list is refused (forbidden_caller_id), never replaced.
func pickCallerID(requested string, allowed []string, def string) (string, *Refusal) {
	id, err := dialplan.PickCallerID(allowed, requested)
	switch {
	case err != nil:
		return "", routeRefusal(err)
	case id != "":
		return id, nil
	case def != "":
		return def, nil
	}
	return "", refuse(wire.CodeForbiddenCallerID, "outside calls need a caller ID: have the backend mint the token with caller_ids (or configure one)")
}

// browserGrants returns the token's claims the call layer uses (nil-safe).
func browserClaims(s *signal.Session) *auth.Claims {
	if cl := s.Claims(); cl != nil {
		return cl
	}
	return &auth.Claims{}
}

func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
