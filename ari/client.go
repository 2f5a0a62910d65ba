// Package ari is Patchbay's typed client for the Asterisk REST Interface
// (Asterisk 22): REST calls that all take a context, typed errors, the events
// WebSocket with reconnect and keepalive, filtered subscriptions that never
// drop in silence, client-side IDs and reconciliation after a reconnect.
package ari

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults applied by New for zero Config fields.
const (
	DefaultPingInterval = 20 * time.Second
	DefaultMaxBackoff   = 8 * time.Second
	// DefaultQueueSize is each subscription's buffer. Large, so only a stuck
	// subscriber ever fills it.
	DefaultQueueSize = 4096
)

// Config configures a Client.
type Config struct {
	// URL of Asterisk's HTTP server, e.g. "http://127.0.0.1:8088" (no /ari, no credentials).
	URL string
	// Username and Password of an ari.conf user. The password is never logged.
	Username, Password string
	// Application is the Stasis application name registered by Run.
	Application string
	// HTTPClient for REST calls; nil uses a client with no global timeout
	// (each call's ctx bounds it). Its *http.Transport TLS config is reused for the WebSocket.
	HTTPClient *http.Client
	// Logger; nil uses slog.Default().
	Logger *slog.Logger
	// PingInterval between WebSocket pings; the socket is declared dead after
	// two intervals without any frame. Zero means DefaultPingInterval.
	PingInterval time.Duration
	// MaxBackoff caps the delay between reconnect attempts. Zero means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// DeadAfter is how long the socket may stay silent (no event, no pong) before it is declared dead and
	// Disconnected is published: a frozen Asterisk (SIGSTOP, a stuck thread) keeps the TCP connection open and
	// only this notices it. Zero means two PingIntervals.
	DeadAfter time.Duration
	// Instance names this Patchbay among others sharing the Asterisk: every resource ID it makes starts with
	// "pb.<Instance>." (see ResourceID). 1-24 of a-z 0-9 '-'. Empty: derived from Application.
	Instance string
	// SweepInterval is how often resources of this instance that no live call claims are removed (also at every
	// connect and on SweepSoon). Zero means DefaultSweepInterval; negative disables sweeping.
	SweepInterval time.Duration
	// AppCheckInterval is how often the client proves that Asterisk still delivers the application's events on
	// the socket, by sending itself a user event (also one second after every connect). A socket that misses one
	// for DeadAfter is dropped and reconnected. Zero means DefaultAppCheckInterval; negative disables it.
	AppCheckInterval time.Duration
	// SweepMinAge spares resources younger than this that appeared after the client started (their owner may
	// not have claimed them yet). Zero means DefaultSweepMinAge.
	SweepMinAge time.Duration
	// Observe, if set, is told about every REST request once it is answered or failed: route is a bounded
	// template such as "/channels/{id}/dial" (see Route), status the HTTP status or 0 for a transport error.
	// It runs on the caller's goroutine: keep it quick (a metrics update).
	Observe func(method, route string, status int, d time.Duration)
}

// LogValue lets a Config be logged with slog without its password.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", c.URL), slog.String("username", c.Username), slog.String("password", redact(c.Password)),
		slog.String("application", c.Application), slog.Duration("ping_interval", c.PingInterval),
		slog.Duration("max_backoff", c.MaxBackoff))
}

// String formats a Config without its password.
func (c Config) String() string {
	return fmt.Sprintf("ari.Config{URL:%s Username:%s Password:%s Application:%s PingInterval:%v MaxBackoff:%v}",
		c.URL, c.Username, redact(c.Password), c.Application, c.PingInterval, c.MaxBackoff)
}

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// Client talks to one Asterisk for one Stasis application. It is safe for
// concurrent use. REST calls work without Run; events need Run.
type Client struct {
	cfg     Config
	baseURL string // scheme://host[:port][/prefix] without trailing slash
	http    *http.Client
	log     *slog.Logger

	bus   *bus
	track *tracker
	own   *owner
	// canary matches the user events the app check sends itself (appcheck.go).
	canary canaries
	// wsTLS is the events socket's TLS config, copied once from the HTTP transport: reading the transport's
	// config later would race with REST calls setting it up.
	wsTLS *tls.Config

	running atomic.Bool
	// undos are requests that make resources, still running after their callers gave up (doCreate).
	undos sync.WaitGroup

	stateMu   sync.Mutex
	connected bool
	connCh    chan struct{} // closed while connected; replaced on disconnect
	fatal     error         // set when Run stopped for good on a permanent error
	fatalCh   chan struct{} // closed when fatal is set
}

// New validates cfg, fills defaults and returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("ari: Config.URL is empty: set it to Asterisk's HTTP address, e.g. http://127.0.0.1:8088")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("ari: Config.URL %q does not parse: %w", cfg.URL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("ari: Config.URL scheme %q: use http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("ari: Config.URL %q has no host", cfg.URL)
	}
	if u.User != nil {
		// Refuse rather than risk credentials ending up in logged URLs.
		return nil, errors.New("ari: Config.URL contains credentials: put them in Username and Password instead")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("ari: Config.URL must not have a query or fragment")
	}
	if cfg.Username == "" || cfg.Password == "" {
		return nil, errors.New("ari: Config.Username and Config.Password are required (an ari.conf user)")
	}
	if cfg.Application == "" {
		return nil, errors.New("ari: Config.Application is required (the Stasis app name)")
	}
	if strings.ContainsAny(cfg.Application, ",/?&# ") {
		return nil, fmt.Errorf("ari: Config.Application %q must not contain , / ? & # or spaces", cfg.Application)
	}
	if cfg.PingInterval < 0 || cfg.MaxBackoff < 0 {
		return nil, errors.New("ari: Config.PingInterval and MaxBackoff must not be negative")
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.DeadAfter < 0 || cfg.SweepMinAge < 0 {
		return nil, errors.New("ari: Config.DeadAfter and SweepMinAge must not be negative")
	}
	if cfg.DeadAfter == 0 {
		cfg.DeadAfter = 2 * cfg.PingInterval
	}
	if cfg.DeadAfter < cfg.PingInterval {
		return nil, fmt.Errorf("ari: Config.DeadAfter %v is shorter than PingInterval %v: no pong could ever arrive in time", cfg.DeadAfter, cfg.PingInterval)
	}
	if cfg.Instance == "" {
		cfg.Instance = instanceFromApp(cfg.Application)
	}
	if !ValidInstance(cfg.Instance) {
		return nil, fmt.Errorf("ari: Config.Instance %q: use 1-24 of a-z 0-9 and '-', starting with a letter or digit", cfg.Instance)
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.AppCheckInterval == 0 {
		cfg.AppCheckInterval = DefaultAppCheckInterval
	}
	if cfg.SweepMinAge == 0 {
		cfg.SweepMinAge = DefaultSweepMinAge
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/ari")
	log := cfg.Logger.With("component", "ari", "app", cfg.Application)
	c := &Client{
		cfg:     cfg,
		baseURL: u.String(),
		http:    cfg.HTTPClient,
		log:     log,
		connCh:  make(chan struct{}),
		fatalCh: make(chan struct{}),
	}
	if tr, ok := cfg.HTTPClient.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil {
		c.wsTLS = tr.TLSClientConfig.Clone()
	}
	c.bus = newBus(log)
	c.track = newTracker()
	c.own = newOwner(cfg.Instance)
	return c, nil
}

// Application returns the Stasis application name.
func (c *Client) Application() string { return c.cfg.Application }

// URL returns the configured base URL (it never holds credentials).
func (c *Client) URL() string { return c.baseURL }

// restURL builds the full URL of an ARI REST path ("/channels/x") with query q.
func (c *Client) restURL(path string, q url.Values) string {
	s := c.baseURL + "/ari" + path
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// maxErrorBody bounds how much of an error body is read.
const maxErrorBody = 64 << 10

// do performs one REST call. body, if not nil, is sent as JSON; out, if not
// nil, receives the decoded JSON reply.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("ari: encode body of %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.restURL(path, q), rd)
	if err != nil {
		return fmt.Errorf("ari: build request %s %s: %w", method, path, err)
	}
	req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		if c.cfg.Observe != nil {
			c.cfg.Observe(method, Route(path), 0, time.Since(start))
		}
		return c.transportError(ctx, method, path, err)
	}
	defer resp.Body.Close()
	if c.cfg.Observe != nil {
		c.cfg.Observe(method, Route(path), resp.StatusCode, time.Since(start))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		var m struct {
			Message string `json:"message"`
			Error   string `json:"error"`
		}
		_ = json.Unmarshal(raw, &m)
		if m.Message == "" {
			m.Message = m.Error
		}
		return &Error{Status: resp.StatusCode, Method: method, Path: path, Message: m.Message, User: c.cfg.Username}
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("ari: decode reply of %s %s: %w", method, path, err)
	}
	return nil
}

// routeWords are the literal segments of ARI's REST paths; any other segment is an ID or name.
var routeWords = map[string]bool{
	"channels": true, "bridges": true, "playbacks": true, "recordings": true, "live": true, "stored": true,
	"applications": true, "asterisk": true, "endpoints": true, "sounds": true, "deviceStates": true, "events": true,
	"mailboxes": true, "externalMedia": true, "create": true, "dial": true, "answer": true, "ring": true,
	"hold": true, "moh": true, "mute": true, "dtmf": true, "continue": true, "variable": true, "play": true,
	"record": true, "snoop": true, "redirect": true, "move": true, "silence": true, "addChannel": true,
	"removeChannel": true, "videoSource": true, "subscription": true, "control": true, "info": true, "ping": true,
	"modules": true, "config": true, "dynamic": true, "logging": true, "rotate": true, "copy": true, "stop": true,
	"pause": true, "unpause": true, "unmute": true, "file": true, "sendMessage": true, "rtp_statistics": true,
	"transfer_progress": true, "eventFilter": true, "user": true,
}

// Route turns a REST path into a bounded template for metrics: "/channels/pb-far-1/dial" becomes
// "/channels/{id}/dial". Every segment that is not one of ARI's literal words becomes {id}.
func Route(path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, s := range segs {
		if !routeWords[s] {
			segs[i] = "{id}"
		}
	}
	return "/" + strings.Join(segs, "/")
}

// createGrace bounds how long a request that makes a resource may run on after its caller gave up.
const createGrace = 10 * time.Second

// doCreate is do for a request that makes a resource (a channel, a bridge, a snoop). A caller that gives up mid-
// request (its call ended, its setup timed out) gets its error at once, as with do, but the request is not cut
// off: Asterisk may carry out a request whose connection was closed, and the resource would then exist with no
// call left to remove it until the sweep. The request runs on in the background, and if it succeeds, undo
// removes what it made. Run waits for these before it returns. A ctx already ended sends nothing.
func (c *Client) doCreate(ctx context.Context, method, path string, q url.Values, body, out any, undo func(context.Context) error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("ari: %s %s: %w", method, path, context.Cause(ctx))
	}
	// Unbuffered: the result is handed over only if the caller is still there to take it. Whether it was is the
	// one thing that decides the undo (the caller's ctx may well end right after it took a good result).
	done := make(chan error)
	c.undos.Add(1)
	go func() {
		defer c.undos.Done()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createGrace)
		defer cancel()
		err := c.do(rctx, method, path, q, body, out)
		select {
		case done <- err:
			return
		case <-ctx.Done():
		}
		if err == nil && undo != nil {
			if uerr := undo(rctx); uerr != nil && !IsNotFound(uerr) {
				c.log.Warn("ari: could not remove what a request made after its caller gave up; the sweep will",
					"method", method, "route", Route(path), "err", uerr)
			}
		}
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("ari: %s %s: %w", method, path, context.Cause(ctx))
	}
}

// undoChannel hangs up the channel a create left in *ch; undoBridge destroys the bridge in *b (doCreate).
func (c *Client) undoChannel(ch *Channel) func(context.Context) error {
	return func(ctx context.Context) error {
		return c.do(ctx, "DELETE", "/channels/"+pathEscape(ch.ID), nil, nil, nil)
	}
}

func (c *Client) undoBridge(b *Bridge) func(context.Context) error {
	return func(ctx context.Context) error {
		return c.do(ctx, "DELETE", "/bridges/"+pathEscape(b.ID), nil, nil, nil)
	}
}

// transportError turns a failed HTTP round trip into an error that says what to do.
func (c *Client) transportError(ctx context.Context, method, path string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("ari: %s %s: %w", method, path, context.Cause(ctx))
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return &UnreachableError{URL: c.baseURL, Err: op}
	}
	return fmt.Errorf("ari: %s %s: %w", method, path, err)
}

// pathEscape escapes one path segment (IDs may contain ';' or '/', e.g. Local channels).
func pathEscape(s string) string { return url.PathEscape(s) }

// setIf adds key=val to q only when val is set, so Asterisk's defaults apply otherwise.
func setIf(q url.Values, key, val string) {
	if val != "" {
		q.Set(key, val)
	}
}
