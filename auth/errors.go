package auth

import "errors"

// Sentinel errors returned by Verify. Every Verify failure matches
// ErrInvalidToken; an expired token additionally matches ErrExpired, so a
// handler can tell the browser to fetch a fresh token instead of giving up.
var (
	ErrInvalidToken = errors.New("auth: invalid token")
	ErrExpired      = errors.New("auth: token expired")
)

// verifyError carries a safe, fixed reason for the caller and keeps the
// library's error in the chain without printing it: parser messages can echo
// fragments of the token.
type verifyError struct {
	reason string
	errs   []error
}

func (e *verifyError) Error() string   { return "verify token: " + e.reason }
func (e *verifyError) Unwrap() []error { return e.errs }

func invalid(reason string, cause error) error {
	errs := []error{ErrInvalidToken}
	if cause != nil {
		errs = append(errs, cause)
	}
	return &verifyError{reason: reason, errs: errs}
}
