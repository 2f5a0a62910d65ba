// Package aritest is a stateful, in-process fake of Asterisk 22's ARI for
// fast unit tests of call control. The real *ari.Client, events socket
// included, works against it unchanged: it keeps channels and bridges, puts
// channels in and out of Stasis, sends the events Asterisk sends in the order
// Asterisk sends them, and answers with Asterisk's statuses and messages
// (taken from res/ari/resource_channels.c and resource_bridges.c).
//
// Tests script the world around Asterisk: what a dialled endpoint does
// (Endpoint), what a dialplan extension does after continue (Dialplan), calls
// that arrive from phones (Incoming), far-end hangups and DTMF, and faults in
// Asterisk itself (FailNext, Delay, Freeze, DropEvents, Restart). With
// WithEchoMedia, RTP externalMedia channels echo real packets on loopback.
//
//	s := aritest.New(t)
//	s.Endpoint("PJSIP/", aritest.Ring(0).Answer(50*time.Millisecond))
//	client, _ := ari.New(s.Config())
//	go client.Run(ctx)          // registers the Stasis app, as with Asterisk
//	... run the code under test against client ...
//	s.HangupFromFar(farID, aritest.CauseUserBusy)
//	s.AssertClean(t)            // every channel and bridge was cleaned up
//
// Not modelled, because call control cannot see it through ARI or does not
// use it: the second half of Local channels, real media mixing, playback and
// recording content, endpoints and device states (subscriptions to them are
// accepted and do nothing), event filters, the websocket externalMedia
// transport (501), and the dialplan beyond what Dialplan scripts.
package aritest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ari"
)

// Defaults used by New.
const (
	DefaultUsername    = "patchbay"
	DefaultPassword    = "aritest-secret"
	DefaultApplication = "patchbay-test"
	// DefaultAsteriskID is the asterisk_id every event and ping carries.
	DefaultAsteriskID = "02:42:ac:11:00:02"
)

// Option configures a Server.
type Option func(*Server)

// WithCredentials sets the ARI user and password the fake accepts.
func WithCredentials(user, pass string) Option {
	return func(s *Server) { s.user, s.pass = user, pass }
}

// WithApplication sets the Stasis application name Config returns and
// Incoming uses by default. Any application name may still connect.
func WithApplication(app string) Option { return func(s *Server) { s.app = app } }

// WithEchoMedia binds a real UDP socket on 127.0.0.1 for each RTP
// externalMedia channel (UNICASTRTP_LOCAL_ADDRESS/PORT point at it) and
// echoes every packet that arrives from external_host back to it while the
// channel is connected: bridged with an answered channel, or running Echo in
// the dialplan. Packets from any other source are dropped, as strictrtp does.
func WithEchoMedia() Option { return func(s *Server) { s.echo = true } }

// WithPlaybackDuration sets how long each playback plays before
// PlaybackFinished (default: it finishes at once after PlaybackStarted).
func WithPlaybackDuration(d time.Duration) Option { return func(s *Server) { s.playDur = d } }

// Request is one HTTP request the fake received.
type Request struct {
	Method string
	Path   string // below /ari, unescaped, e.g. "/channels/pb-1/answer"
	Query  url.Values
	Body   string
	Status int // reply status; 0 while the request is still being handled
}

// Server is the fake Asterisk. All its methods are safe for concurrent use.
type Server struct {
	t       testing.TB
	srv     *httptest.Server
	tr      *http.Transport // for Config's HTTP client, so Close can drop its idle connections
	user    string
	pass    string
	app     string
	echo    bool
	playDur time.Duration
	astID   string
	started time.Time

	mu         sync.Mutex
	closed     bool
	done       chan struct{} // closed by Close: releases frozen and delayed handlers
	gen        int           // bumped by Restart: callbacks of an older generation do nothing
	frozen     bool
	starved    bool          // frozen, but media still flows (Starve)
	thaw       chan struct{} // closed by Thaw
	pending    []func()      // scheduled work that came due while frozen
	timers     map[int]*time.Timer
	nextTimer  int
	wg         sync.WaitGroup // timer callbacks, socket writers, echo readers
	conns      map[*wsConn]bool
	apps       map[string]*wsConn // registered Stasis applications
	faults     []*fault
	reqs       []Request
	endpoints  map[string]Behavior
	dialplan   map[string][]DialplanApp // "context,exten"
	seq        int                      // channel name and ID counter
	channels   map[string]*channel
	bridges    map[string]*bridge
	playbacks  map[string]*playback
	recordings map[string]*recording // live
	stored     map[string]ari.StoredRecording
	globals    map[string]string
}

// New starts a fake Asterisk. It is closed by t.Cleanup (Close may also be
// called earlier).
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{
		t: t, user: DefaultUsername, pass: DefaultPassword, app: DefaultApplication,
		astID: DefaultAsteriskID, started: time.Now(),
		done: make(chan struct{}), thaw: make(chan struct{}),
		timers: map[int]*time.Timer{}, conns: map[*wsConn]bool{}, endpoints: map[string]Behavior{},
		dialplan: map[string][]DialplanApp{}, tr: &http.Transport{},
	}
	for _, o := range opts {
		o(s)
	}
	s.reset()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(s.Close)
	return s
}

// reset empties Asterisk's state (not the test's script: endpoints, dialplan, faults).
func (s *Server) reset() {
	s.apps = map[string]*wsConn{}
	s.channels = map[string]*channel{}
	s.bridges = map[string]*bridge{}
	s.playbacks = map[string]*playback{}
	s.recordings = map[string]*recording{}
	s.stored = map[string]ari.StoredRecording{}
	s.globals = map[string]string{}
}

// URL is the fake's base URL, for ari.Config.URL.
func (s *Server) URL() string { return s.srv.URL }

// Config returns an ari.Config for the fake: its URL, credentials and
// application, a 200 ms ping interval and 100 ms maximum backoff (so lost
// sockets are noticed and regained quickly), and an HTTP client whose idle
// connections Close drops.
func (s *Server) Config() ari.Config {
	return ari.Config{
		URL: s.srv.URL, Username: s.user, Password: s.pass, Application: s.app,
		HTTPClient: &http.Client{Transport: roundTripper{s.tr}}, PingInterval: 200 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		// No app check: with a 400 ms DeadAfter, a canary late under -race on a busy host would reconnect the
		// socket mid-test and lose its events. Tests of the check set their own interval.
		AppCheckInterval: -1,
	}
}

// roundTripper hides the *http.Transport from ari.Client, which reads a
// Transport's TLSClientConfig for each events-socket dial while a REST
// request may be initialising the same Transport: a data race. The fake
// speaks plain HTTP, so the client needs nothing from it.
type roundTripper struct{ tr *http.Transport }

func (r roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	return r.tr.RoundTrip(req)
}

// Close stops the fake: sockets, timers, echo sockets and handlers. It is
// safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.stopTimers()
	for c := range s.conns {
		c.kill()
	}
	for _, ch := range s.channels {
		ch.stopMedia()
	}
	s.mu.Unlock()
	s.srv.Close()
	s.wg.Wait()
	s.tr.CloseIdleConnections()
}

// stopTimers cancels every scheduled callback. Called with s.mu held.
func (s *Server) stopTimers() {
	for id, t := range s.timers {
		if t.Stop() {
			s.wg.Done()
		}
		delete(s.timers, id)
	}
	s.pending = nil
}

// after runs fn with s.mu held once d has passed, unless Close or Restart
// come first; while frozen it runs at Thaw. Called with s.mu held.
func (s *Server) after(d time.Duration, fn func()) {
	if s.closed {
		return
	}
	id := s.nextTimer
	s.nextTimer++
	gen := s.gen
	s.wg.Add(1)
	s.timers[id] = time.AfterFunc(d, func() {
		defer s.wg.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.timers[id]; !ok || s.gen != gen {
			return
		}
		delete(s.timers, id)
		if s.frozen {
			s.pending = append(s.pending, fn)
			return
		}
		fn()
	})
}

// Freeze makes Asterisk stop as if by SIGSTOP: REST requests and events-socket
// upgrades hang, events are held back, pings go unanswered, scripted
// behaviour and echo stop. Thaw resumes all of it.
func (s *Server) Freeze() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.frozen {
		s.frozen = true
		s.thaw = make(chan struct{})
	}
}

// Starve is Asterisk starved of CPU so long that its HTTP server and events
// socket answer nothing, while its RTP threads still echo: Freeze with media
// still flowing. Thaw resumes all of it.
func (s *Server) Starve() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.frozen {
		s.frozen, s.starved = true, true
		s.thaw = make(chan struct{})
	}
}

// Thaw undoes Freeze and Starve: held requests proceed, held events and due
// scripted steps go out in order.
func (s *Server) Thaw() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.frozen {
		return
	}
	s.frozen, s.starved = false, false
	close(s.thaw)
	for len(s.pending) > 0 {
		fn := s.pending[0]
		s.pending = s.pending[1:]
		fn()
	}
	for c := range s.conns {
		c.wake()
	}
}

// DropEvents closes every events socket abruptly, as a crash of the HTTP
// server would; Asterisk's state is kept. Clients reconnect on their own.
func (s *Server) DropEvents() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.kill()
	}
}

// Restart is an Asterisk restart: every channel, bridge, recording and
// registration is lost at once (no events), and the events sockets drop.
// The test's script (endpoints, dialplan, faults) is kept.
func (s *Server) Restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	s.stopTimers()
	for c := range s.conns {
		c.kill()
	}
	for _, ch := range s.channels {
		ch.stopMedia()
	}
	s.reset()
	s.started = time.Now()
}

// fault is an injected failure or delay.
type fault struct {
	method, pattern string
	status          int           // 0: a delay only
	delay           time.Duration // for Delay
	once            bool
	skip            int // matching requests to let pass before this fault applies (FailNth, DelayNth)
}

func (f *fault) match(method, p string) bool {
	if f.method != "" && f.method != "*" && !strings.EqualFold(f.method, method) {
		return false
	}
	return matchPath(f.pattern, p)
}

// matchPath matches a path below /ari against a path.Match pattern ("*"
// stands for one segment, e.g. "/channels/*/answer"); a leading "/ari" in the
// pattern is ignored. A malformed pattern matches nothing.
func matchPath(pattern, p string) bool {
	pattern = strings.TrimPrefix(pattern, "/ari")
	if pattern == p {
		return true
	}
	ok, err := path.Match(pattern, p)
	return err == nil && ok
}

// FailNext makes the next request matching method ("" or "*" for any) and
// pathPattern (below /ari, path.Match syntax: "/channels/*/answer") fail with
// status and a JSON message, before it has any effect.
func (s *Server) FailNext(method, pathPattern string, status int) {
	s.addFault(&fault{method: method, pattern: pathPattern, status: status, once: true})
}

// FailAlways makes every matching request fail with status until ClearFaults.
func (s *Server) FailAlways(method, pathPattern string, status int) {
	s.addFault(&fault{method: method, pattern: pathPattern, status: status})
}

// Delay holds every matching request for d before handling it, until ClearFaults.
func (s *Server) Delay(method, pathPattern string, d time.Duration) {
	s.addFault(&fault{method: method, pattern: pathPattern, delay: d})
}

// FailNth makes only the nth next request (1 is the next one) matching method
// and pathPattern fail with status; the matching requests before it pass. It
// singles out one of several alike requests, e.g. the second addChannel of a
// call. FailNth(1, ...) is FailNext.
func (s *Server) FailNth(n int, method, pathPattern string, status int) {
	s.addFault(&fault{method: method, pattern: pathPattern, status: status, once: true, skip: max(n-1, 0)})
}

// DelayNth holds only the nth next request (1 is the next one) matching method
// and pathPattern for d; the others are not delayed.
func (s *Server) DelayNth(n int, method, pathPattern string, d time.Duration) {
	s.addFault(&fault{method: method, pattern: pathPattern, delay: d, once: true, skip: max(n-1, 0)})
}

// ClearFaults removes every FailNext, FailNth, FailAlways, Delay and DelayNth.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

func (s *Server) addFault(f *fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// takeFaults returns the delay and failure status for a request. Called with s.mu held.
func (s *Server) takeFaults(method, p string) (delay time.Duration, status int) {
	for i := 0; i < len(s.faults); i++ {
		f := s.faults[i]
		if !f.match(method, p) {
			continue
		}
		if f.skip > 0 {
			f.skip--
			continue
		}
		if f.status == 0 {
			delay += f.delay
			if f.once {
				s.faults = slices.Delete(s.faults, i, i+1)
				i--
			}
			continue
		}
		if status == 0 {
			status = f.status
			if f.once {
				s.faults = slices.Delete(s.faults, i, i+1)
				i--
			}
		}
	}
	return delay, status
}

// Requests returns every authenticated request received so far, in arrival
// order (failed ones included, with their status).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.reqs))
	for i, r := range s.reqs {
		r.Query = cloneValues(r.Query)
		out[i] = r
	}
	return out
}

// Count returns how many requests matched method ("" or "*" for any) and
// pathPattern (as for FailNext).
func (s *Server) Count(method, pathPattern string) int {
	f := fault{method: method, pattern: pathPattern}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.reqs {
		if f.match(r.Method, r.Path) {
			n++
		}
	}
	return n
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// Channels returns snapshots of every channel, sorted by ID.
func (s *Server) Channels() []ari.Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ari.Channel, 0, len(s.channels))
	for _, id := range sortedKeys(s.channels) {
		out = append(out, s.channels[id].snapshot())
	}
	return out
}

// Channel returns one channel's snapshot.
func (s *Server) Channel(id string) (ari.Channel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[id]
	if ch == nil {
		return ari.Channel{}, false
	}
	return ch.snapshot(), true
}

// Bridges returns snapshots of every bridge, sorted by ID.
func (s *Server) Bridges() []ari.Bridge {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ari.Bridge, 0, len(s.bridges))
	for _, id := range sortedKeys(s.bridges) {
		out = append(out, s.bridges[id].snapshot())
	}
	return out
}

// Deafen makes app's current events socket stop carrying events while it stays open and answers pings, as
// Asterisk does when it deactivates an application whose stale socket closed after a newer one took over.
// A new socket for app (a reconnect) hears again.
func (s *Server) Deafen(app string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.apps[app]; c != nil {
		c.deaf = true
	}
}

// Registered reports whether a Stasis application has an events socket now.
func (s *Server) Registered(app string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apps[app] != nil
}

// AssertClean fails t, listing them, if channels or bridges are left. It
// waits up to two seconds first, so teardown still in flight can finish.
func (s *Server) AssertClean(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		chans, bridges := s.Channels(), s.Bridges()
		if len(chans) == 0 && len(bridges) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, c := range chans {
				fmt.Fprintf(&b, "\n  channel %s %s state=%s dialplan=%s,%s,%d %s(%s)", c.ID, c.Name, c.State,
					c.Dialplan.Context, c.Dialplan.Exten, c.Dialplan.Priority, c.Dialplan.AppName, c.Dialplan.AppData)
			}
			for _, br := range bridges {
				fmt.Fprintf(&b, "\n  bridge %s %q type=%s channels=%v", br.ID, br.Name, br.BridgeType, br.Channels)
			}
			t.Errorf("aritest: %d channel(s) and %d bridge(s) left behind:%s", len(chans), len(bridges), b.String())
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// timestamp formats t as Asterisk does in events.
func timestamp(t time.Time) string { return t.Format("2006-01-02T15:04:05.000-0700") }

// errBody is Asterisk's JSON error body.
type errBody struct {
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Server", "Asterisk/22.0.0 (aritest)")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// hostPort splits "host:port" and requires both parts.
func hostPort(s string) (host, port string, ok bool) {
	h, p, err := net.SplitHostPort(s)
	if err != nil || h == "" || p == "" {
		return "", "", false
	}
	return h, p, true
}
