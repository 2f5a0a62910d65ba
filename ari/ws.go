package ari

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Backoff bounds for reconnecting the events socket.
const (
	minBackoff = 100 * time.Millisecond
	// stableAfter: a connection that lived this long resets the backoff, so a
	// server that accepts and at once drops us still backs off.
	stableAfter = 10 * time.Second
	// closeGrace is how long shutdown waits for Asterisk's close frame.
	closeGrace = time.Second
)

// eventsURL is the WebSocket URL that registers our application.
func (c *Client) eventsURL() string {
	u := c.baseURL
	switch {
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + strings.TrimPrefix(u, "https://")
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + strings.TrimPrefix(u, "http://")
	}
	q := url.Values{}
	q.Set("app", c.cfg.Application)
	q.Set("subscribeAll", "false")
	return u + "/ari/events?" + q.Encode()
}

// backoff returns the delay before reconnect attempt n (0-based):
// exponential from minBackoff, capped at max, with jitter in [d/2, d].
func backoff(n int, max time.Duration) time.Duration {
	d := minBackoff
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + rand.N(half+1)
}

// Connected reports whether the events socket is up right now.
func (c *Client) Connected() bool {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	return c.connected
}

// WaitConnected blocks until the events socket is up (so the Stasis app is
// registered), ctx ends, or Run stopped on a permanent error such as 401.
func (c *Client) WaitConnected(ctx context.Context) error {
	c.stateMu.Lock()
	ch, fatalCh := c.connCh, c.fatalCh
	c.stateMu.Unlock()
	select {
	case <-ch:
		return nil
	case <-fatalCh:
		c.stateMu.Lock()
		defer c.stateMu.Unlock()
		if c.connected {
			return nil
		}
		return c.fatal
	case <-ctx.Done():
		return fmt.Errorf("ari: wait for events socket of app %s: %w", c.cfg.Application, context.Cause(ctx))
	}
}

func (c *Client) setConnected(up bool) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if up == c.connected {
		return
	}
	c.connected = up
	if up {
		close(c.connCh)
	} else {
		c.connCh = make(chan struct{})
	}
}

func (c *Client) setFatal(err error) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.fatal == nil {
		c.fatal = err
		close(c.fatalCh)
	}
}

func (c *Client) synthetic(typ string) EventBase {
	return EventBase{Type: typ, Application: c.cfg.Application, Timestamp: Time{time.Now()}}
}

// dialer builds the WebSocket dialer, reusing the HTTP client's TLS settings.
func (c *Client) dialer() *websocket.Dialer {
	return &websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: c.wsTLS}
}

// dial opens the events socket. Permanent errors (401/403) are returned as
// *Error; the caller stops retrying on them.
func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(c.cfg.Username+":"+c.cfg.Password)))
	conn, resp, err := c.dialer().DialContext(ctx, c.eventsURL(), h)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err == nil {
		return conn, nil
	}
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, &Error{Status: resp.StatusCode, Method: "GET", Path: "/events?app=" + c.cfg.Application, User: c.cfg.Username,
			Message: "events WebSocket refused"}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("ari: open events socket: %w", context.Cause(ctx))
	}
	if isDialError(err) {
		return nil, &UnreachableError{URL: c.baseURL, Err: err}
	}
	return nil, fmt.Errorf("ari: open events socket at %s: %w", c.baseURL, err)
}

func isPermanent(err error) bool {
	return errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden)
}

// Run opens the events WebSocket (registering the Stasis application), reads
// and dispatches events, keeps the socket alive with pings and reconnects with
// capped exponential backoff and jitter. After each reconnect it reconciles
// tracked resources and publishes Reconciled. It blocks until ctx ends and
// then returns nil after a clean close, or returns early with a permanent
// error (wrong credentials). Only one Run may be active per Client.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer c.running.Store(false)
	c.stateMu.Lock()
	if c.fatal != nil { // a previous Run gave up; this one starts afresh
		c.fatal = nil
		c.fatalCh = make(chan struct{})
	}
	c.stateMu.Unlock()

	var wg sync.WaitGroup // reconcile and sweep goroutines
	defer wg.Wait()
	defer c.undos.Wait() // abandoned creates finish (or time out) and remove what they made

	attempt := 0
	everConnected := false
	for {
		conn, err := c.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isPermanent(err) {
				c.log.Error("ari events socket refused; not retrying", "err", err)
				c.setFatal(err)
				return err
			}
			d := backoff(attempt, c.cfg.MaxBackoff)
			attempt++
			c.log.Warn("ari events socket: connect failed; retrying", "err", err, "attempt", attempt, "retry_in", d)
			if !sleepCtx(ctx, d) {
				return nil
			}
			continue
		}

		reconnect := everConnected
		everConnected = true
		started := time.Now()
		c.setConnected(true)
		c.log.Info("ari events socket connected", "reconnect", reconnect)
		c.bus.publish(&Connected{EventBase: c.synthetic(TypeConnected), Reconnect: reconnect})

		connCtx, cancelConn := context.WithCancel(ctx)
		var deafErr atomic.Pointer[error]
		wg.Add(2)
		go func() {
			defer wg.Done()
			c.sweepLoop(connCtx)
		}()
		go func() {
			defer wg.Done()
			c.appCheckLoop(connCtx, func(err error) {
				deafErr.Store(&err)
				_ = conn.Close() // ends readLoop, which owns conn otherwise
			})
		}()
		if reconnect {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ev := c.reconcile(connCtx)
				if connCtx.Err() != nil && ev.Err != nil {
					return // socket already gone again; the next reconnect reconciles
				}
				c.log.Info("ari reconciled after reconnect",
					"gone_channels", len(ev.GoneChannels), "gone_bridges", len(ev.GoneBridges),
					"unknown_channels", len(ev.UnknownChannels), "unknown_bridges", len(ev.UnknownBridges), "err", ev.Err)
				c.bus.publish(ev)
			}()
		}

		readErr := c.readLoop(ctx, conn)
		cancelConn()
		if e := deafErr.Load(); e != nil {
			readErr = *e
		}
		c.setConnected(false)
		if ctx.Err() != nil {
			c.bus.publish(&Disconnected{EventBase: c.synthetic(TypeDisconnected)})
			c.log.Info("ari events socket closed")
			return nil
		}
		c.bus.publish(&Disconnected{EventBase: c.synthetic(TypeDisconnected), Err: readErr})
		if time.Since(started) >= stableAfter {
			attempt = 0
		}
		d := backoff(attempt, c.cfg.MaxBackoff)
		attempt++
		c.log.Warn("ari events socket lost; reconnecting", "err", readErr, "retry_in", d)
		if !sleepCtx(ctx, d) {
			return nil
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// readLoop reads events from conn until it fails or ctx ends. It owns conn and
// closes it; its keepalive goroutine ends before it returns.
func (c *Client) readLoop(ctx context.Context, conn *websocket.Conn) error {
	defer conn.Close()
	ping := c.cfg.PingInterval
	deadline := c.cfg.DeadAfter
	var closing atomic.Bool
	_ = conn.SetReadDeadline(time.Now().Add(deadline))
	conn.SetPongHandler(func(string) error {
		if !closing.Load() {
			return conn.SetReadDeadline(time.Now().Add(deadline))
		}
		return nil
	})

	done := make(chan struct{})
	var kg sync.WaitGroup
	kg.Add(1)
	go func() { // keepalive and shutdown: the only writer on conn
		defer kg.Done()
		t := time.NewTicker(ping)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(ping)); err != nil {
					c.log.Debug("ari ping failed", "err", err)
				}
			case <-ctx.Done():
				closing.Store(true)
				msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "patchbay shutting down")
				_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace))
				// Wait for Asterisk's close reply, but not forever.
				_ = conn.SetReadDeadline(time.Now().Add(closeGrace))
				return
			}
		}
	}()
	defer func() {
		close(done)
		kg.Wait()
	}()

	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure) && ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ari: read events socket: %w", err)
		}
		if !closing.Load() {
			_ = conn.SetReadDeadline(time.Now().Add(deadline))
		}
		c.dispatch(data)
	}
}

// dispatch decodes one message and publishes it. Nothing is dropped: an
// undecodable event is published as *UnknownEvent and logged.
func (c *Client) dispatch(data []byte) {
	ev, err := DecodeEvent(data)
	if err != nil {
		c.log.Warn("ari event did not decode; publishing raw", "err", err, "bytes", len(data))
		if ev == nil {
			ev = &UnknownEvent{EventBase: EventBase{Type: "Invalid"}, Raw: append([]byte(nil), data...), DecodeErr: err}
		}
	}
	if ue, ok := ev.(*ChannelUserevent); ok && ue.Channel == nil && ue.Bridge == nil && c.canary.arrived(ue.EventName) {
		return // the app check's own canary
	}
	if app := ev.Common().Application; app != "" && app != c.cfg.Application {
		// Another app's event on a shared socket: still publish, but do not
		// let it change what we track.
		c.bus.publish(ev)
		return
	}
	c.track.observe(ev)
	c.bus.publish(ev)
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
