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
// truncated, so it is safe to log and to return to the caller.
type RouteError struct {
	Code   string // wire.CodeInvalidNumber or wire.CodeForbiddenDestination
	Input  string // quoted, truncated, ASCII-only
	Reason string
}

func (e *RouteError) Error() string {
	return fmt.Sprintf("route %s: %s: %s", e.Input, e.Code, e.Reason)
}

// Is lets errors.Is(err, ErrInvalidNumber) and
// errors.Is(err, ErrForbiddenDestination) work without errors.As.
func (e *RouteError) Is(target error) bool {
	switch target {
	case ErrInvalidNumber:
		return e.Code == wire.CodeInvalidNumber
	case ErrForbiddenDestination:
		return e.Code == wire.CodeForbiddenDestination
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

// quoteInput quotes s with every non-ASCII or control byte escaped, cut to
// maxQuotedInput bytes, so hostile input cannot forge log lines.
func quoteInput(s string) string {
	if len(s) <= maxQuotedInput {
		return strconv.QuoteToASCII(s)
	}
	return strconv.QuoteToASCII(s[:maxQuotedInput]) + fmt.Sprintf("…(%d bytes)", len(s))
}
