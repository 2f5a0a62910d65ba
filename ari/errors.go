package ari

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors, usable with errors.Is on any error returned by this package.
var (
	// ErrUnauthorized: Asterisk answered 401 (wrong ARI user or password).
	ErrUnauthorized = errors.New("ari: unauthorized")
	// ErrForbidden: Asterisk answered 403 (e.g. a read_only ARI user tried to write).
	ErrForbidden = errors.New("ari: forbidden")
	// ErrNotFound: the resource (channel, bridge, playback, ...) does not exist (404).
	ErrNotFound = errors.New("ari: not found")
	// ErrConflict: the resource is not in a state that allows the request (409),
	// typically a channel that is not in our Stasis application.
	ErrConflict = errors.New("ari: conflict")
	// ErrBadRequest: Asterisk rejected the parameters (400).
	ErrBadRequest = errors.New("ari: bad request")
	// ErrUnprocessable: a parameter names something that does not exist (422).
	ErrUnprocessable = errors.New("ari: unprocessable")
	// ErrPrecondition: a precondition failed, e.g. the channel is not answered (412).
	ErrPrecondition = errors.New("ari: precondition failed")
	// ErrUnreachable: no HTTP connection could be made to Asterisk.
	ErrUnreachable = errors.New("ari: Asterisk not reachable")
	// ErrAlreadyRunning: Run was called while another Run of the same client is active.
	ErrAlreadyRunning = errors.New("ari: Run already active on this client")
)

// Error is a non-2xx answer from the ARI REST interface.
type Error struct {
	Status  int    // HTTP status code
	Method  string // HTTP method of the request
	Path    string // path below /ari, e.g. /channels/abc/answer (never contains credentials)
	Message string // Asterisk's JSON "message", if any
	User    string // ARI user the request was made as (never the password)
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("ari: %s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	switch e.Status {
	case http.StatusUnauthorized:
		msg += fmt.Sprintf(" (check the ARI user %q and its password in ari.conf and in Patchbay's configuration)", e.User)
	case http.StatusForbidden:
		msg += fmt.Sprintf(" (ARI user %q may be read_only in ari.conf)", e.User)
	}
	return msg
}

// Is lets errors.Is(err, ErrNotFound) and friends match on the status code.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrForbidden:
		return e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrConflict:
		return e.Status == http.StatusConflict
	case ErrBadRequest:
		return e.Status == http.StatusBadRequest
	case ErrUnprocessable:
		return e.Status == http.StatusUnprocessableEntity
	case ErrPrecondition:
		return e.Status == http.StatusPreconditionFailed
	}
	return false
}

// UnreachableError says that the TCP/HTTP connection to Asterisk failed.
type UnreachableError struct {
	URL string // base URL without credentials
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("ari: Asterisk not reachable at %s: %v (check that Asterisk runs and that http.conf has enabled=yes with a matching bindaddr/bindport)", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnreachable) true.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// IsNotFound reports whether err means the ARI resource does not exist.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsUnauthorized reports whether err is a 401 from Asterisk.
func IsUnauthorized(err error) bool { return errors.Is(err, ErrUnauthorized) }
