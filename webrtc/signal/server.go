package signal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/wire"
)

// TokenVerifier checks a browser token; *auth.Signer implements it. Errors
// wrapping auth.ErrExpired become token_expired, any other unauthorized.
type TokenVerifier interface {
	Verify(token string) (*auth.Claims, error)
}

// Handler is the call layer behind the server.
type Handler interface {
	// HandleMessage receives every validated message of an authenticated
	// session except auth and ping, in the order the browser sent them. It runs
	// on the connection's reader goroutine: it must not block for long. ctx is
	// the session's context.
	HandleMessage(ctx context.Context, s *Session, m Message)
	// SessionClosed is called once, after an authenticated session's connection
	// is gone and it has left the registry; the owner tears down its calls.
	SessionClosed(s *Session)
}

// ServerOptions configures a Server. Zero values take the defaults noted.
type ServerOptions struct {
	Verifier TokenVerifier // required
	Handler  Handler       // required

	// AllowedOrigins lists the exact Origin header values browsers may connect
	// from, e.g. "https://pbx.example.com". Empty: only pages from the same host
	// as the request. Requests without Origin (non-browser clients) are allowed:
	// the token, not a cookie, authenticates them.
	AllowedOrigins []string

	MaxMessageBytes int           // largest frame accepted; default 64 KiB
	RateLimit       RateLimit     // per connection; see RateLimit for defaults
	AuthTimeout     time.Duration // auth must arrive within this; default 10s
	PingInterval    time.Duration // WebSocket ping period; default 25s
	PongTimeout     time.Duration // silence after a ping before the connection is dropped; default 2×PingInterval
	WriteTimeout    time.Duration // one frame write; default 10s
	CloseGrace      time.Duration // wait for the peer's close reply; default 2s
	SendQueue       int           // queued outgoing messages per session; default 64

	// MaxUnauthenticatedPerIP and MaxUnauthenticated cap connections that have not authenticated yet, per remote
	// address (default 32) and in all (default 1024); past them a new connection is closed at once with
	// too_many_connections (close status 1013, try again later), so a flood of idle sockets costs next to nothing.
	MaxUnauthenticatedPerIP int
	MaxUnauthenticated      int

	// ICEServers gives the static servers (e.g. STUN) put in each "authed" and "refresh"; nil sends none.
	ICEServers func() []ICEServer
	// TURN, when it has URLs and a secret, adds per-session time-limited TURN credentials to authed and refresh.
	TURN *TURN
	// ResumeGrace is how long a Resumer holds a dropped session's calls for the browser to come back; default
	// 20s; negative disables resume (no resume_token is sent).
	ResumeGrace time.Duration
	// ResumeTTL is the life of a resume token; default 5 minutes. Sessions get a fresh one in "refresh".
	ResumeTTL time.Duration
	// RefreshInterval is how often a session gets a "refresh"; default half the shorter of ResumeTTL and TURN.TTL.
	RefreshInterval time.Duration
	Logger          *slog.Logger // default slog.Default()
	// OnUsersChanged, if set, is called when a user's first session authenticates or its last one closes (a
	// cluster publishes presence then). It must return at once; Users tells who is online.
	OnUsersChanged func()
}

func (o ServerOptions) withDefaults() ServerOptions {
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultFrameSize
	}
	o.RateLimit = o.RateLimit.withDefaults()
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = 10 * time.Second
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = 2 * o.PingInterval
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.CloseGrace <= 0 {
		o.CloseGrace = 2 * time.Second
	}
	if o.SendQueue <= 0 {
		o.SendQueue = 64
	}
	if o.MaxUnauthenticatedPerIP <= 0 {
		o.MaxUnauthenticatedPerIP = 32
	}
	if o.MaxUnauthenticated <= 0 {
		o.MaxUnauthenticated = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ResumeGrace == 0 {
		o.ResumeGrace = DefaultResumeGrace
	}
	if o.ResumeTTL <= 0 {
		o.ResumeTTL = 5 * time.Minute
	}
	if o.RefreshInterval <= 0 {
		shortest := o.ResumeTTL
		if o.TURN.enabled() && o.TURN.ttl() < shortest {
			shortest = o.TURN.ttl()
		}
		o.RefreshInterval = shortest / 2
	}
	return o
}

// DefaultResumeGrace is ServerOptions.ResumeGrace when unset.
const DefaultResumeGrace = 20 * time.Second

// Server accepts browser WebSocket connections on the path it is mounted at
// (/ws) and runs one Session per connection.
type Server struct {
	opts      ServerOptions
	log       *slog.Logger
	resumeKey []byte // signs resume tokens; per process, as held calls are
	upgrader  websocket.Upgrader
	origins   map[string]bool

	mu     sync.Mutex
	closed bool
	conns  map[*Session]struct{}            // every connection, authenticated or not
	users  map[string]map[*Session]struct{} // authenticated sessions by user
	wg     sync.WaitGroup                   // one per connection being served
	// Connections not authenticated yet, by remote IP and in all (admission caps).
	unauthByIP map[string]int
	unauth     int
	// expiryLeeway is how long past its exp a session's token is honoured: the verifier's leeway (auth.Leeway), so
	// that a token accepted just after its exp is not closed at once. Tests shorten it.
	expiryLeeway time.Duration
}

// NewServer checks opts and returns a server ready to be mounted.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Verifier == nil {
		return nil, errors.New("signal server: Verifier is nil: pass the auth.Signer that mints browser tokens")
	}
	if opts.Handler == nil {
		return nil, errors.New("signal server: Handler is nil: pass the call coordinator")
	}
	if err := opts.TURN.check(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("signal server: resume key: %w", err)
	}
	s := &Server{
		resumeKey:  key,
		opts:       opts,
		log:        opts.Logger.With("component", "signal"),
		origins:    make(map[string]bool, len(opts.AllowedOrigins)),
		conns:      make(map[*Session]struct{}),
		users:      make(map[string]map[*Session]struct{}),
		unauthByIP: make(map[string]int),

		expiryLeeway: auth.Leeway,
	}
	for _, o := range opts.AllowedOrigins {
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("signal server: allowed origin %q is not scheme://host[:port]: fix AllowedOrigins", o)
		}
		s.origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// The origin was checked before Upgrade, with our own logging.
		CheckOrigin: func(*http.Request) bool { return true },
		// Idle connections hold no write buffer: most of the time a signalling socket has nothing to send.
		WriteBufferPool: &sync.Pool{},
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			http.Error(w, "websocket upgrade failed: "+reason.Error(), status)
		},
	}
	return s, nil
}

func (srv *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(srv.origins) > 0 {
		return srv.origins[strings.ToLower(origin)]
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// ServeHTTP upgrades the request and serves the connection until it ends. The
// calling goroutine is the connection's reader.
func (srv *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := srv.log.With("remote", r.RemoteAddr)
	if !srv.originAllowed(r) {
		log.Warn("websocket refused: origin not allowed", "origin", r.Header.Get("Origin"))
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	srv.wg.Add(1)
	ip := remoteIP(r.RemoteAddr)
	admitted := srv.unauthByIP[ip] < srv.opts.MaxUnauthenticatedPerIP && srv.unauth < srv.opts.MaxUnauthenticated
	if admitted {
		srv.unauthByIP[ip]++
		srv.unauth++
	}
	srv.mu.Unlock()
	defer srv.wg.Done()

	conn, err := srv.upgrader.Upgrade(w, r, nil)
	if err != nil {
		if admitted {
			srv.authDone(ip)
		}
		log.Info("websocket upgrade failed", "err", err)
		return
	}
	if !admitted {
		srv.refuseConn(conn, log)
		return
	}
	s := newSession(srv, conn, log)
	s.ip = ip
	srv.mu.Lock()
	closed := srv.closed
	srv.conns[s] = struct{}{}
	srv.mu.Unlock()
	if closed {
		s.closeWith(wire.CodeUnavailable, "server shutting down")
	}
	s.serve()
}

// refuseConn closes a connection past the unauthenticated caps at once: an error message and a close frame that
// both say too_many_connections, then the socket. No goroutine, no session.
func (srv *Server) refuseConn(conn *websocket.Conn, log *slog.Logger) {
	log.Warn("security: websocket refused: too many unauthenticated connections",
		"per_ip_cap", srv.opts.MaxUnauthenticatedPerIP, "total_cap", srv.opts.MaxUnauthenticated)
	deadline := time.Now().Add(time.Second)
	_ = conn.SetWriteDeadline(deadline)
	if b, err := Encode(ErrorMessage("", wire.CodeTooManyConnections, "too many connections without a token from your address; try again later")); err == nil {
		_ = conn.WriteMessage(websocket.TextMessage, b)
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(closeTryAgainLater, wire.CodeTooManyConnections), deadline)
	_ = conn.Close()
}

// closeTryAgainLater is WebSocket close status 1013 (RFC 6455 registry: Try Again Later).
const closeTryAgainLater = 1013

// authDone releases a connection's place among the unauthenticated: it authenticated, or ended. Once per session.
func (srv *Server) authDone(ip string) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if n := srv.unauthByIP[ip]; n > 1 {
		srv.unauthByIP[ip] = n - 1
	} else {
		delete(srv.unauthByIP, ip)
	}
	if srv.unauth > 0 {
		srv.unauth--
	}
}

func remoteIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// register publishes an authenticated session; false if the server is closing.
func (srv *Server) register(s *Session) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return false
	}
	set := srv.users[s.User()]
	if set == nil {
		set = make(map[*Session]struct{})
		srv.users[s.User()] = set
		srv.usersChanged()
	}
	set[s] = struct{}{}
	return true
}

// usersChanged tells OnUsersChanged; called with mu held, so the callback must not call back into the server.
func (srv *Server) usersChanged() {
	if srv.opts.OnUsersChanged != nil {
		srv.opts.OnUsersChanged()
	}
}

// Users lists the users with at least one live authenticated session.
func (srv *Server) Users() []string {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	out := make([]string, 0, len(srv.users))
	for u := range srv.users {
		out = append(out, u)
	}
	return out
}

// forgetConn drops a connection whose SessionClosed has run.
func (srv *Server) forgetConn(s *Session) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	delete(srv.conns, s)
}

// conn finds a connection by session ID, live or closing.
func (srv *Server) conn(id string) *Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for s := range srv.conns {
		if s.id == id {
			return s
		}
	}
	return nil
}

// forgetUser unpublishes a session whose connection is gone.
func (srv *Server) forgetUser(s *Session) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if set := srv.users[s.User()]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(srv.users, s.User())
			srv.usersChanged()
		}
	}
}

// SessionsOf returns the live authenticated sessions of user, e.g. every tab
// to ring for an incoming call. The slice is a snapshot the caller owns.
func (srv *Server) SessionsOf(user string) []*Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	set := srv.users[user]
	out := make([]*Session, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	return out
}

// Session returns the live authenticated session with this ID, or nil.
func (srv *Server) Session(id string) *Session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, set := range srv.users {
		for s := range set {
			if s.id == id {
				return s
			}
		}
	}
	return nil
}

// ResumeGrace is how long a Resumer should hold a dropped session's calls; 0 when resume is off.
func (srv *Server) ResumeGrace() time.Duration {
	if srv.opts.ResumeGrace < 0 {
		return 0
	}
	return srv.opts.ResumeGrace
}

// Len returns the number of open connections, authenticated or not.
func (srv *Server) Len() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.conns)
}

// Shutdown refuses new connections, closes every session with "unavailable"
// (WebSocket 1001, going away) and waits until each connection's goroutines
// have ended and SessionClosed has run, or ctx is done.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.mu.Lock()
	srv.closed = true
	all := make([]*Session, 0, len(srv.conns))
	for s := range srv.conns {
		all = append(all, s)
	}
	srv.mu.Unlock()
	for _, s := range all {
		s.closeWith(wire.CodeUnavailable, "server shutting down")
	}
	done := make(chan struct{})
	go func() { // ends with the last connection, bounded by CloseGrace and WriteTimeout
		srv.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("signal server shutdown: %d connections still closing: %w", srv.Len(), ctx.Err())
	}
}

// Close is Shutdown without a deadline of its own; it returns once every
// connection is gone (within about CloseGrace + WriteTimeout).
func (srv *Server) Close() error {
	return srv.Shutdown(context.Background())
}
