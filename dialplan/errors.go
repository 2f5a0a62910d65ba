package dialplan

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/patchbay/patchbay/wire"
)

// Sentinels matching RouteError by code, for errors.Is.
var (
	ErrInvalidNumber        = errors.New("dialplan: " + wire.CodeInvalidNumber)
	ErrForbiddenDestination = errors.New("dialplan: " + wire.CodeForbiddenDestination)
	ErrForbiddenCallerID    = errors.New("dialplan: " + wire.CodeForbiddenCallerID)
	// ErrInvalidRoom is returned when a room ID is not [A-Za-z0-9_-]{1,64}.
	ErrInvalidRoom = errors.New("dialplan: invalid room id")
	// ErrNotMapped is returned by a Store for a number with no live mapping.
	ErrNotMapped = errors.New("dialplan: number is not mapped to a room")
	// ErrStoreUnavailable is returned when the store's backend cannot be
	// reached; the wrapped cause says why.
	ErrStoreUnavailable = errors.New("dialplan: number store unavailable")
)

// maxQuotedInput bounds how much of a refused input is echoed back in an error.
const maxQuotedInput = 40

// RouteError explains why an input was refused. Input is already quoted and
// truncated, so it is safe to log and to return to the caller. A refusal by
// policy (forbidden_destination) of a number that parsed also carries what the
// number was: its E.164 form, class and country. Every forbidden_destination
// for an outside number is a security event: log it as one.
type RouteError struct {
	Code   string // wire.CodeInvalidNumber, wire.CodeForbiddenDestination or wire.CodeForbiddenCallerID
	Input  string // quoted, truncated, ASCII-only
	Reason string
	// E164, Class and Country are set when the refused input parsed as an outside number.
	E164    string
	Class   Class
	Country string
}

func (e *RouteError) Error() string {
	return fmt.Sprintf("route %s: %s: %s", e.Input, e.Code, e.Reason)
}

// Message is the reason alone, for a browser or an API client ("premium-rate numbers are not allowed").
func (e *RouteError) Message() string { return e.Reason }

// LogAttrs are the fields of a security log line about this refusal.
func (e *RouteError) LogAttrs() []any {
	attrs := []any{"code", e.Code, "input", e.Input, "reason", e.Reason}
	if e.E164 != "" {
		attrs = append(attrs, "e164", e.E164, "class", string(e.Class), "country", e.Country)
	}
	return attrs
}

// Is lets errors.Is(err, ErrInvalidNumber) and
// errors.Is(err, ErrForbiddenDestination) work without errors.As.
func (e *RouteError) Is(target error) bool {
	switch target {
	case ErrInvalidNumber:
		return e.Code == wire.CodeInvalidNumber
	case ErrForbiddenDestination:
		return e.Code == wire.CodeForbiddenDestination
	case ErrForbiddenCallerID:
		return e.Code == wire.CodeForbiddenCallerID
	}
	return false
}

func newRouteError(code, input, reason string) *RouteError {
	return &RouteError{Code: code, Input: quoteInput(input), Reason: reason}
}

func invalidNumber(input, format string, args ...any) *RouteError {
	return newRouteError(wire.CodeInvalidNumber, input, fmt.Sprintf(format, args...))
}

func forbidden(input, format string, args ...any) *RouteError {
	return newRouteError(wire.CodeForbiddenDestination, input, fmt.Sprintf(format, args...))
}

// refuse is a policy refusal of the parsed number p.
func refuse(input string, p phoneNumber, format string, args ...any) *RouteError {
	e := forbidden(input, format, args...)
	e.E164, e.Class, e.Country = p.e164, p.class, p.country
	return e
}

// quoteInput quotes s with every non-ASCII or control byte escaped, cut to
// maxQuotedInput bytes, so hostile input cannot forge log lines.
func quoteInput(s string) string {
	if len(s) <= maxQuotedInput {
		return strconv.QuoteToASCII(s)
	}
	return strconv.QuoteToASCII(s[:maxQuotedInput]) + fmt.Sprintf("…(%d bytes)", len(s))
}
