package signal

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Resumer is implemented by a Handler that keeps a closed session's calls up for a while (ResumeGrace) so that the
// browser can reconnect and take them back. SessionClosed is still called when a connection ends; a Resumer holds
// the session's calls for Session.ResumeGrace() instead of ending them, and ends them with cause signalling_lost
// if no resume comes.
type Resumer interface {
	// SessionResumed runs when s authenticated with a valid resume token of previousSessionID, after that
	// session's SessionClosed has returned and before "authed" is sent. It rebinds the held calls to s and returns
	// their call_ids (sent to the browser in authed.resumed). It must not block for long and must not Send on s:
	// anything for the browser goes after authed, so queue it from another goroutine or the next message.
	SessionResumed(ctx context.Context, s *Session, previousSessionID string) []string
}

// resumeToken binds a session ID to its user with an expiry: "SESSION.EXPIRY.MAC", MAC = HMAC-SHA256 under a key
// that lives and dies with the process (held calls do too).
func (srv *Server) resumeToken(sessionID, user string, expiry time.Time) string {
	exp := strconv.FormatInt(expiry.Unix(), 10)
	return sessionID + "." + exp + "." + srv.resumeMAC(sessionID, user, exp)
}

func (srv *Server) resumeMAC(sessionID, user, exp string) string {
	mac := hmac.New(sha256.New, srv.resumeKey)
	mac.Write([]byte("patchbay-resume\x00" + user + "\x00" + sessionID + "\x00" + exp))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// checkResume returns the session ID a resume token names if it was minted here for user and has not expired.
func (srv *Server) checkResume(token, user string, now time.Time) (string, bool) {
	if len(token) > MaxResumeLen {
		return "", false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || now.Unix() > exp {
		return "", false
	}
	want := srv.resumeMAC(parts[0], user, parts[1])
	if !hmac.Equal([]byte(want), []byte(parts[2])) {
		return "", false
	}
	return parts[0], true
}

// MaxResumeLen bounds the resume field of auth.
const MaxResumeLen = 256
