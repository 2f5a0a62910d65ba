package signal

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST API (and coturn's use-auth-secret) is defined over HMAC-SHA1
	"encoding/base64"
	"errors"
	"strconv"
	"time"
)

// TURN mints time-limited TURN credentials for each session, as the TURN REST API draft
// (draft-uberti-behave-turn-rest) and coturn's use-auth-secret expect: username "EXPIRY:USER" with EXPIRY in Unix
// seconds, credential base64(HMAC-SHA1(secret, username)). A TURN server checks them when an allocation is made,
// so a session gets fresh ones before they run out (a "refresh" message) and an allocation outlives them.
type TURN struct {
	// URLs are the turn:/turns: URLs handed out with the credentials, e.g.
	// "turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp",
	// "turns:turn.example.com:443?transport=tcp".
	URLs []string
	// Secret is coturn's static-auth-secret. Never logged.
	Secret []byte
	// TTL is how long minted credentials stay valid; default 10 minutes.
	TTL time.Duration
}

// DefaultTURNTTL is TURN.TTL when unset.
const DefaultTURNTTL = 10 * time.Minute

func (t *TURN) enabled() bool { return t != nil && len(t.URLs) > 0 && len(t.Secret) > 0 }

func (t *TURN) ttl() time.Duration {
	if t == nil || t.TTL <= 0 {
		return DefaultTURNTTL
	}
	return t.TTL
}

func (t *TURN) check() error {
	if t == nil {
		return nil
	}
	if len(t.URLs) > 0 && len(t.Secret) == 0 {
		return errors.New("signal server: TURN URLs without a secret: set the TURN shared secret")
	}
	return nil
}

// Mint returns the ICE server entry for user, valid until now+TTL.
func (t *TURN) Mint(user string, now time.Time) ICEServer {
	return MintTURN(t.Secret, user, now.Add(t.ttl()), t.URLs)
}

// MintTURN builds TURN REST credentials for user that expire at expiry.
func MintTURN(secret []byte, user string, expiry time.Time, urls []string) ICEServer {
	username := strconv.FormatInt(expiry.Unix(), 10) + ":" + user
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return ICEServer{
		URLs:       append([]string(nil), urls...),
		Username:   username,
		Credential: base64.StdEncoding.EncodeToString(mac.Sum(nil)),
	}
}
