package dialplan

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Store maps dialled numbers (DIDs, extensions) to Patchbay rooms.
//
// Numbers are normalised with NormalizeNumber and room IDs checked with
// ValidateRoomID before any backend sees them. A ttl of 0 means the mapping
// never expires.
type Store interface {
	Map(ctx context.Context, number, room string, ttl time.Duration) error
	// Lookup returns ErrNotMapped when the number has no live mapping.
	Lookup(ctx context.Context, number string) (Mapping, error)
	// Unmap returns ErrNotMapped when there was nothing to remove.
	Unmap(ctx context.Context, number string) error
	// List returns every live mapping, sorted by number.
	List(ctx context.Context) ([]Mapping, error)
}

// Mapping is one number→room entry. Expires is zero for a mapping without
// TTL.
type Mapping struct {
	Number  string    `json:"number"`
	Room    string    `json:"room"`
	Expires time.Time `json:"expires,omitzero"`
}

var roomIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateRoomID checks that room is 1-64 of [A-Za-z0-9_-].
func ValidateRoomID(room string) error {
	if !roomIDRe.MatchString(room) {
		return fmt.Errorf("room id %s: %w: use 1-64 letters, digits, '_' or '-'", quoteInput(room), ErrInvalidRoom)
	}
	return nil
}

// maxRawNumber bounds the input NormalizeNumber looks at.
const maxRawNumber = 64

// Stored numbers in international form have 8 to 15 digits after '+'.
const (
	e164Min = 8
	e164Max = 15
)

// NormalizeNumber returns number as E.164 ("+" and 8-15 digits) or as a plain
// DID/extension of 1-15 digits, after dropping spaces, dashes, dots and
// parentheses. Anything else is a *RouteError with code invalid_number.
func NormalizeNumber(number string) (string, error) {
	s := strings.Trim(number, " ")
	if s == "" {
		return "", invalidNumber(number, "empty number")
	}
	if len(s) > maxRawNumber {
		return "", invalidNumber(number, "longer than %d characters", maxRawNumber)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return "", invalidNumber(number, "control or non-ASCII character at byte %d", i)
		}
	}
	num, err := cleanNumber(number, s, true)
	if err != nil {
		return "", err
	}
	if num[0] == '+' {
		if d := len(num) - 1; d < e164Min || d > e164Max || num[1] == '0' {
			return "", invalidNumber(number, "international numbers are '+', a country code and %d-%d digits in all", e164Min, e164Max)
		}
		return num, nil
	}
	if len(num) > e164Max {
		return "", invalidNumber(number, "more than %d digits", e164Max)
	}
	return num, nil
}

// checkMapArgs normalises and validates the arguments of Map.
func checkMapArgs(number, room string, ttl time.Duration) (string, error) {
	n, err := NormalizeNumber(number)
	if err != nil {
		return "", fmt.Errorf("map number: %w", err)
	}
	if err := ValidateRoomID(room); err != nil {
		return "", fmt.Errorf("map %s: %w", n, err)
	}
	if ttl < 0 {
		return "", fmt.Errorf("map %s: ttl %v is negative; use 0 for no expiry", n, ttl)
	}
	return n, nil
}
