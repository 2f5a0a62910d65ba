package dialplan

import (
	"fmt"
	"regexp"

	"github.com/patchbay/patchbay/wire"
)

// callerIDRe is what a caller ID presented to a carrier may be: E.164, or a plain national number.
var callerIDRe = regexp.MustCompile(`^\+?[1-9][0-9]{1,14}$`)

// PickCallerID is the one check of a caller's chosen caller ID, shared by browsers (a token's caller_ids and
// the "call" message's caller_id) and the API (api.caller_ids and the request's caller_id). requested empty
// picks the first allowed one; otherwise requested must be exactly one of allowed. It returns "" and no error
// when there is nothing to pick (no allowed caller IDs and none requested): the caller then applies its
// default or refuses outside calls. Errors are *RouteError with code forbidden_caller_id, safe to show.
func PickCallerID(allowed []string, requested string) (string, error) {
	if requested != "" {
		for _, a := range allowed {
			if a == requested {
				return checkCallerID(a)
			}
		}
		if len(allowed) == 0 {
			return "", newRouteError(wire.CodeForbiddenCallerID, requested, "no caller IDs are allowed here, so none can be chosen")
		}
		return "", newRouteError(wire.CodeForbiddenCallerID, requested, fmt.Sprintf("caller ID %s is not among the %d allowed", quoteInput(requested), len(allowed)))
	}
	if len(allowed) == 0 {
		return "", nil
	}
	return checkCallerID(allowed[0])
}

// checkCallerID refuses an allowed caller ID that is no phone number (a backend's mistake in a token).
func checkCallerID(id string) (string, error) {
	if !callerIDRe.MatchString(id) {
		return "", newRouteError(wire.CodeForbiddenCallerID, id, "the allowed caller ID is not a phone number; mint tokens with E.164 caller_ids")
	}
	return id, nil
}
