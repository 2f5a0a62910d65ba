package signal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/wire"
)

var errTooLarge = errors.New("frame too large")

// Session is one browser connection. Its reader is the goroutine serving the
// HTTP request; its writer is the one goroutine that writes to the socket. Both
// end when the connection ends, before SessionClosed is called.
type Session struct {
	id     string
	srv    *Server
	conn   *websocket.Conn
	log    *slog.Logger
	remote string
	ip     string       // remote IP, for the unauthenticated-connection caps
	claims *auth.Claims // written by the reader once, before the session is published
	// unauthOnce releases the session's place among unauthenticated connections (on auth or end).
	unauthOnce sync.Once

	ctx    context.Context
	cancel context.CancelFunc
	send   chan *Message // pointers: a Message is ~600 bytes, and the queue is per session

	mu        sync.Mutex // guards closed, closeCode and hungUp against Send and Close
	closed    bool
	closeCode string
	hungUp    map[string]bool // calls that got their one hangup (see Send)
	hungOrder []string        // hungUp in insertion order, to bound it
	// used holds the call_ids opened on this connection (call, join, supervise with an offer; incoming; resumed),
	// so that reusing one is refused with duplicate_call: a reused call_id would get no hangup (hungUp) and a
	// refused reuse of a live one would end that call in the client. The oldest of more than 1024 is forgotten.
	used      map[string]bool
	usedOrder []string

	// Owned by the reader goroutine (control-frame handlers run on it too).
	bucket  *bucket
	dropped int // frames dropped in a row by the rate limit

	closing    chan struct{} // closed by closeWith: the writer flushes and says goodbye
	readerDone chan struct{}
	writerDone chan struct{}
	ended      chan struct{} // closed once SessionClosed has returned (or was not due)

	authed atomic.Bool // claims are set; the writer may send refreshes
	// leftCleanly: the browser closed with 1000/1001 (it left, it will not resume), or its token expired (its
	// calls end with the session, as docs/signalling.md says).
	leftCleanly atomic.Bool
	resumedFrom string // the session this one resumed; written by the reader before it is published
}

func newSession(srv *Server, conn *websocket.Conn, log *slog.Logger) *Session {
	id := "s-" + rand.Text()
	ctx, cancel := context.WithCancel(context.Background())
	return &Session{
		id:         id,
		srv:        srv,
		conn:       conn,
		log:        log.With("session", id),
		remote:     conn.RemoteAddr().String(),
		ctx:        ctx,
		cancel:     cancel,
		send:       make(chan *Message, srv.opts.SendQueue),
		bucket:     newBucket(srv.opts.RateLimit, time.Now()),
		closing:    make(chan struct{}),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
		ended:      make(chan struct{}),
	}
}

// ResumeGrace is how long a Resumer holds this session's calls after its connection drops; 0: end them at once.
// A browser that closed the socket itself (close frame 1000 or 1001: signed out, tab closed, page left) is not
// coming back, so its grace is 0; any other end (no close frame, a timeout, another code) may be a network
// failure and gets the server's grace.
func (s *Session) ResumeGrace() time.Duration {
	if s.leftCleanly.Load() {
		return 0
	}
	return s.srv.ResumeGrace()
}

// ResumedFrom is the ID of the session this one took over with a resume token, or "".
func (s *Session) ResumedFrom() string { return s.resumedFrom }

// ID is the server-chosen session identifier, also sent in "authed".
func (s *Session) ID() string { return s.id }

// Claims are the verified token claims; the caller must not modify them.
func (s *Session) Claims() *auth.Claims { return s.claims }

// User is the token's subject.
func (s *Session) User() string {
	if s.claims == nil {
		return ""
	}
	return s.claims.Subject
}

// Display is the token's display name.
func (s *Session) Display() string {
	if s.claims == nil {
		return ""
	}
	return s.claims.Name
}

// RemoteAddr is the peer address of the WebSocket connection.
func (s *Session) RemoteAddr() string { return s.remote }

// Context is cancelled as soon as the session starts closing.
func (s *Session) Context() context.Context { return s.ctx }

// Logger returns a logger carrying the session and user fields.
func (s *Session) Logger() *slog.Logger { return s.log.With("user", s.User()) }

// Send queues m for the browser without blocking. It fails if the session is
// closed or ctx is done. A full queue means the browser stopped reading: the
// message cannot be delivered in order any more, so the session is closed with
// "unavailable" and ErrQueueFull is returned.
//
// Every call ends with exactly one "hangup": a final error (Message.Final, see ErrorMessage) is followed at once
// by a hangup with wire.CauseForCode(code), and any later hangup for the same call_id is dropped, so the call
// layer may send its own hangup after an error without the browser seeing two.
func (s *Session) Send(ctx context.Context, m Message) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("send %s to session %s: %w", m.Type, s.id, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("send %s to session %s: %w", m.Type, s.id, ErrSessionClosed)
	}
	msgs := []Message{m}
	switch {
	case m.Type == TypeHangup && m.CallID != "":
		if s.hungUp[m.CallID] {
			s.mu.Unlock()
			return nil // the call already ended on the wire
		}
		s.markHungUp(m.CallID)
	case m.Type == TypeError && m.Final && m.CallID != "" && !s.hungUp[m.CallID]:
		msgs = append(msgs, HangupMessage(m.CallID, wire.CauseForCode(m.Error)))
		s.markHungUp(m.CallID)
	case m.Type == TypeIncoming && m.CallID != "":
		s.markUsed(m.CallID)
	}
	if len(s.send)+len(msgs) <= cap(s.send) {
		for _, x := range msgs {
			s.send <- &x // cannot block: only Send (under mu) fills the queue beyond closeWith's one error
		}
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.log.Warn("send queue full, closing session", "queue", cap(s.send), "type", m.Type, "call", m.CallID)
	s.closeWith(wire.CodeUnavailable, "send queue overflow")
	return fmt.Errorf("send %s to session %s: %w", m.Type, s.id, ErrQueueFull)
}

// markHungUp remembers that callID got its hangup; s.mu is held. The oldest of more than 1024 is forgotten.
func (s *Session) markHungUp(callID string) {
	if s.hungUp == nil {
		s.hungUp = make(map[string]bool)
	}
	s.hungUp[callID] = true
	s.hungOrder = append(s.hungOrder, callID)
	if len(s.hungOrder) > 1024 {
		delete(s.hungUp, s.hungOrder[0])
		s.hungOrder = s.hungOrder[1:]
	}
}

// markUsed remembers that callID was opened on this connection; s.mu is held.
func (s *Session) markUsed(callID string) {
	if s.used == nil {
		s.used = make(map[string]bool)
	}
	if s.used[callID] {
		return
	}
	s.used[callID] = true
	s.usedOrder = append(s.usedOrder, callID)
	if len(s.usedOrder) > 1024 {
		delete(s.used, s.usedOrder[0])
		s.usedOrder = s.usedOrder[1:]
	}
}

// openCallID claims callID for a call the browser opens; false if it was already used on this connection.
func (s *Session) openCallID(callID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used[callID] || s.hungUp[callID] {
		return false
	}
	s.markUsed(callID)
	return true
}

// opensCall reports whether a browser message of this type starts a new call: "call", "join", and "supervise"
// with an offer (without one it changes the mode of a supervision in progress).
func opensCall(typ string, hasSDP bool) bool {
	return typ == TypeCall || typ == TypeJoin || typ == TypeSupervise && hasSDP
}

// refuseDuplicate answers a message that opens a call with a call_id already used on this connection. The error is
// not final and no hangup follows: the call that owns the call_id, live or over, is not touched.
func (s *Session) refuseDuplicate(callID string) {
	s.reply(ErrorMessage(callID, wire.CodeDuplicateCall, "call_id "+callID+" is already used on this connection: choose a new one (a UUID)"))
}

// Close ends the session. A non-empty code (one of the Code* constants) is
// sent as an "error" message first and becomes the close frame's reason.
// Safe to call more than once and from any goroutine; only the first counts.
func (s *Session) Close(code string) { s.closeWith(code, "") }

func (s *Session) closeWith(code, text string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.closeCode = code
	if code != "" {
		if text == "" {
			text = closeText[code]
		}
		e := ErrorMessage("", code, text)
		select {
		case s.send <- &e:
		default: // the queue is full; the close frame still carries the code
		}
	}
	s.mu.Unlock()
	s.cancel()
	close(s.closing)
	if code != "" {
		s.log.Info("closing session", "code", code, "reason", text)
	}
}

// closeText explains a Close(code) that came without words of its own.
var closeText = map[string]string{
	wire.CodeUnauthorized:         "not allowed on this connection",
	wire.CodeTokenExpired:         "token expired: get a new token and reconnect",
	wire.CodeForbiddenDestination: "destination not allowed for this token",
	wire.CodeRateLimited:          "too many messages",
	wire.CodeUnavailable:          "service unavailable: reconnect later",
	wire.CodeInternal:             "internal error: reconnect",
}

func closeStatus(code string) int {
	switch code {
	case "":
		return websocket.CloseNormalClosure
	case wire.CodeTooLarge:
		return websocket.CloseMessageTooBig
	case wire.CodeUnavailable:
		return websocket.CloseGoingAway
	case wire.CodeInternal:
		return websocket.CloseInternalServerErr
	default:
		return websocket.ClosePolicyViolation
	}
}

// serve runs the connection to its end, then unpublishes the session and tells
// the Handler.
func (s *Session) serve() {
	defer s.leftUnauthenticated()
	go s.writeLoop()
	authed := s.readLoop()
	close(s.readerDone)
	s.closeWith("", "")
	<-s.writerDone
	s.srv.forgetUser(s)
	if authed {
		s.srv.opts.Handler.SessionClosed(s)
	}
	s.srv.forgetConn(s)
	close(s.ended)
	s.log.Debug("session ended", "user", s.User())
}

// read returns the next frame, or errTooLarge without reading past the limit.
func (s *Session) read() (int, []byte, error) {
	kind, r, err := s.conn.NextReader()
	if err != nil {
		return 0, nil, err
	}
	limit := s.srv.opts.MaxMessageBytes
	data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return 0, nil, err
	}
	if len(data) > limit {
		return kind, nil, errTooLarge
	}
	return kind, data, nil
}

// drain reads and discards until the connection fails, which the writer
// guarantees within CloseGrace. Reading on lets the peer's close reply arrive
// and avoids a TCP reset that could destroy our last error message.
func (s *Session) drain() {
	for {
		if _, _, err := s.conn.NextReader(); err != nil {
			return
		}
	}
}

func (s *Session) readLoop() (authed bool) {
	o := s.srv.opts
	alive := func() { _ = s.conn.SetReadDeadline(time.Now().Add(o.PingInterval + o.PongTimeout)) }
	// Pongs only count once authenticated: unsolicited pongs must not stretch
	// the auth deadline.
	s.conn.SetPongHandler(func(string) error {
		if authed && s.ctx.Err() == nil {
			alive()
		}
		return nil
	})
	// WebSocket pings count against the rate limit too: each costs us a pong.
	s.conn.SetPingHandler(func(data string) error {
		if s.limit() {
			// A failed pong surfaces as a read or write error elsewhere.
			_ = s.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(o.WriteTimeout))
		}
		return nil
	})
	_ = s.conn.SetReadDeadline(time.Now().Add(o.AuthTimeout))

	if !s.authenticate() {
		s.drain()
		return false
	}
	authed = true
	alive()
	if exp := s.claims.ExpiresAt; exp != nil {
		// With the leeway the token was verified with: a token accepted just after its exp is not closed at once.
		t := time.AfterFunc(time.Until(exp.Time.Add(s.srv.expiryLeeway)), func() {
			s.leftCleanly.Store(true)
			s.closeWith(wire.CodeTokenExpired, "token expired: get a new token and reconnect")
		})
		defer t.Stop()
	}

	for {
		kind, data, err := s.read()
		switch {
		case errors.Is(err, errTooLarge):
			s.closeWith(wire.CodeTooLarge, fmt.Sprintf("frame larger than %d bytes", o.MaxMessageBytes))
			s.drain()
			return true
		case err != nil:
			s.logReadError(err)
			return true
		case s.ctx.Err() != nil: // closing: keep reading only to see the peer's close
			s.drain()
			return true
		}
		alive()
		if !s.limit() {
			if s.ctx.Err() != nil {
				s.drain()
				return true
			}
			continue
		}
		if kind != websocket.TextMessage {
			s.reply(ErrorMessage("", wire.CodeBadMessage, "binary frames are not accepted: send JSON text frames"))
			continue
		}
		m, err := Decode(data)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Code == wire.CodeUnauthorized {
				pe = &Error{Code: wire.CodeBadMessage, Message: "invalid message"}
			}
			opens := opensCall(pe.msgType, pe.sdp) && pe.CallID != ""
			if opens && !s.openCallID(pe.CallID) {
				s.refuseDuplicate(pe.CallID)
				continue
			}
			em := ErrorMessage(pe.CallID, pe.Code, pe.Message)
			// A refused call, join or supervise never reached the call layer: the call is over before it began,
			// so it ends as the call layer's refusals do (error, then hangup), whatever the code. A bad message
			// about a live call changes nothing.
			em.Final = em.Final && opens
			s.reply(em) // a final one is followed by its hangup (Send)
			if opens {
				s.reply(HangupMessage(pe.CallID, wire.RefusalCause(pe.Code))) // dropped if Send already sent it
			}
			continue
		}
		if opensCall(m.Type, m.SDP != "") && !s.openCallID(m.CallID) {
			s.refuseDuplicate(m.CallID)
			continue
		}
		switch m.Type {
		case TypePing:
			s.reply(Message{Type: TypePong})
		case TypeAuth:
			s.reply(ErrorMessage("", wire.CodeBadMessage, "already authenticated"))
		default:
			o.Handler.HandleMessage(s.ctx, s, m)
		}
	}
}

// limit applies the token bucket to one inbound frame and reports whether it
// may be processed. The first drop in a row is answered with rate_limited;
// MaxDropped in a row close the session.
func (s *Session) limit() bool {
	if s.bucket.allow(time.Now()) {
		s.dropped = 0
		return true
	}
	s.dropped++
	if s.dropped == 1 {
		s.reply(ErrorMessage("", wire.CodeRateLimited, "too many messages: slow down; further messages are dropped"))
	}
	if s.dropped >= s.srv.opts.RateLimit.MaxDropped {
		s.closeWith(wire.CodeRateLimited, "sustained flooding")
	}
	return false
}

// authenticate reads the first frame, which must be a valid auth, and
// registers the session. On failure the session is already closing.
func (s *Session) authenticate() bool {
	o := s.srv.opts
	kind, data, err := s.read()
	var ne net.Error
	switch {
	case errors.Is(err, errTooLarge):
		s.closeWith(wire.CodeTooLarge, fmt.Sprintf("frame larger than %d bytes", o.MaxMessageBytes))
		return false
	case errors.As(err, &ne) && ne.Timeout():
		s.closeWith(wire.CodeUnauthorized, fmt.Sprintf("no auth message within %s", o.AuthTimeout))
		return false
	case err != nil:
		s.logReadError(err)
		return false
	case s.ctx.Err() != nil: // closed while we waited (rate limit, shutdown)
		return false
	}
	var m Message
	if kind == websocket.TextMessage {
		m, err = Decode(data)
	}
	if kind != websocket.TextMessage || err != nil || m.Type != TypeAuth {
		s.closeWith(wire.CodeUnauthorized, "the first message must be {\"type\":\"auth\",\"token\":...}")
		return false
	}
	claims, err := o.Verifier.Verify(m.Token)
	switch {
	case errors.Is(err, auth.ErrExpired):
		s.closeWith(wire.CodeTokenExpired, "token expired: get a new token")
		return false
	case err != nil:
		s.log.Info("token refused", "err", err) // err never contains the token itself
		s.closeWith(wire.CodeUnauthorized, "token not valid")
		return false
	case claims == nil || claims.Subject == "":
		s.closeWith(wire.CodeUnauthorized, "token names no user")
		return false
	case claims.ExpiresAt == nil:
		s.closeWith(wire.CodeUnauthorized, "token has no expiry")
		return false
	}
	s.claims = claims
	s.leftUnauthenticated()
	s.authed.Store(true)
	prev := ""
	if m.Resume != "" {
		prev = s.takeOver(m.Resume)
	}
	if !s.srv.register(s) {
		s.closeWith(wire.CodeUnavailable, "server shutting down")
		return false
	}
	authed := s.refreshMessage(TypeAuthed)
	authed.User, authed.Display, authed.Session = claims.Subject, claims.Name, s.id
	if r, ok := o.Handler.(Resumer); ok && prev != "" {
		authed.Resumed = r.SessionResumed(s.ctx, s, prev)
		s.mu.Lock()
		for _, id := range authed.Resumed {
			s.markUsed(id) // the resumed calls' call_ids stay taken on this connection
		}
		s.mu.Unlock()
	}
	s.reply(authed)
	s.log.Info("session authenticated", "user", claims.Subject, "remote", s.remote, "resumed_from", prev,
		"resumed_calls", len(authed.Resumed))
	return true
}

// takeOver checks a resume token for this session's user and, if it is good, ends the session it names (a socket
// the server has not yet seen die) and waits until that session's SessionClosed has run. It returns the old
// session's ID, or "" when the token is not usable: the browser then just gets no calls back.
func (s *Session) takeOver(token string) string {
	o := s.srv.opts
	if o.ResumeGrace < 0 {
		return ""
	}
	prev, ok := s.srv.checkResume(token, s.User(), time.Now())
	if !ok || prev == s.id {
		s.log.Info("resume token refused: expired, forged or for another user")
		return ""
	}
	if old := s.srv.conn(prev); old != nil {
		if old.User() != s.User() {
			return ""
		}
		old.closeWith("", "")
		t := time.NewTimer(o.CloseGrace + o.WriteTimeout + time.Second)
		defer t.Stop()
		select {
		case <-old.ended:
		case <-t.C:
			s.log.Warn("resumed session did not close in time", "previous", prev)
			return ""
		}
	}
	s.resumedFrom = prev
	return prev
}

// refreshMessage builds an authed or refresh message: ICE servers with fresh TURN credentials and a fresh resume
// token.
func (s *Session) refreshMessage(typ string) Message {
	o := s.srv.opts
	now := time.Now()
	var ice []ICEServer
	if o.ICEServers != nil {
		ice = o.ICEServers()
	}
	if o.TURN.enabled() {
		ice = append(ice, o.TURN.Mint(s.User(), now))
	}
	m := Message{Type: typ, ICEServers: ice}
	if grace := s.srv.ResumeGrace(); grace > 0 {
		m.ResumeToken = s.srv.resumeToken(s.id, s.User(), now.Add(o.ResumeTTL))
		m.ResumeGrace = int(grace.Round(time.Second) / time.Second)
	}
	return m
}

// leftUnauthenticated frees the session's place under the unauthenticated caps, once.
func (s *Session) leftUnauthenticated() {
	s.unauthOnce.Do(func() { s.srv.authDone(s.ip) })
}

// reply sends from the reader; a failure already closed the session.
func (s *Session) reply(m Message) { _ = s.Send(s.ctx, m) }

func (s *Session) logReadError(err error) {
	var ne net.Error
	switch {
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway):
		s.leftCleanly.Store(true)
		s.log.Debug("browser closed the connection")
	case websocket.IsCloseError(err, websocket.CloseNoStatusReceived):
		s.log.Debug("browser closed the connection without a status")
	case errors.As(err, &ne) && ne.Timeout():
		s.log.Info("connection silent past the pong timeout, dropping it")
	default:
		s.log.Info("connection read failed", "err", err)
	}
}

// writeLoop is the only writer of the socket. On close it flushes what is
// queued (the final error among it), sends the close frame, waits up to
// CloseGrace for the reader to see the peer's reply, then closes the socket.
func (s *Session) writeLoop() {
	defer close(s.writerDone)
	o := s.srv.opts
	ping := time.NewTicker(o.PingInterval)
	defer ping.Stop()
	refresh := time.NewTicker(o.RefreshInterval)
	defer refresh.Stop()
	broken := false
loop:
	for {
		select {
		case <-refresh.C:
			if !s.authed.Load() {
				continue
			}
			if err := s.write(s.refreshMessage(TypeRefresh)); err != nil {
				broken = true
				break loop
			}
		case m := <-s.send:
			if err := s.write(*m); err != nil {
				broken = true
				break loop
			}
		case <-ping.C:
			if err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(o.WriteTimeout)); err != nil {
				broken = true
				break loop
			}
		case <-s.closing:
			break loop
		}
	}
	if broken {
		s.closeWith("", "")
		_ = s.conn.Close()
		return
	}
flush:
	for {
		select {
		case m := <-s.send:
			if err := s.write(*m); err != nil {
				_ = s.conn.Close()
				return
			}
		default:
			break flush
		}
	}
	s.mu.Lock()
	code := s.closeCode
	s.mu.Unlock()
	_ = s.conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(closeStatus(code), code), time.Now().Add(o.WriteTimeout))
	grace := time.NewTimer(o.CloseGrace)
	select {
	case <-s.readerDone:
	case <-grace.C:
	}
	grace.Stop()
	_ = s.conn.Close()
}

func (s *Session) write(m Message) error {
	b, err := Encode(m)
	if err != nil {
		s.log.Error("dropping unencodable message", "msg", m.String(), "err", err)
		return nil
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.srv.opts.WriteTimeout))
	if err := s.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		s.log.Info("write to browser failed", "type", m.Type, "err", err)
		return err
	}
	return nil
}
