package signal

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// DialOptions configures the Go client.
type DialOptions struct {
	TLSConfig       *tls.Config // for wss:// with a private CA; nil uses the system roots
	Origin          string      // sent as the Origin header when set (as a browser would)
	MaxMessageBytes int         // largest frame accepted from the server; default 1 MiB
	RecvQueue       int         // messages buffered before the reader stops reading; default 64
	// Resume is the resume_token of a dropped session: the server gives its held calls back (Authed().Resumed).
	Resume string
}

// Conn is an authenticated client connection, used by tests and the synthetic
// caller. Send and Recv are each safe for concurrent use. One reader goroutine,
// started by Dial and stopped by Close, feeds Recv.
type Conn struct {
	ws     *websocket.Conn
	authed Message

	wmu sync.Mutex // one writer at a time

	in      chan Message
	readErr error         // set before in is closed
	done    chan struct{} // reader goroutine ended
	quit    chan struct{} // Close asks the reader to stop
	once    sync.Once
}

// Dial connects to url (ws:// or wss://.../ws), authenticates with token and
// returns once the server answered "authed". If the server refuses, the error
// wraps an *Error carrying its stable code (see ErrorCode).
func Dial(ctx context.Context, url, token string, opts DialOptions) (*Conn, error) {
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 1 << 20
	}
	if opts.RecvQueue <= 0 {
		opts.RecvQueue = 64
	}
	d := websocket.Dialer{TLSClientConfig: opts.TLSConfig, HandshakeTimeout: 10 * time.Second}
	var hdr http.Header
	if opts.Origin != "" {
		hdr = http.Header{"Origin": []string{opts.Origin}}
	}
	ws, resp, err := d.DialContext(ctx, url, hdr)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial signalling %s: HTTP %s: %w", url, resp.Status, err)
		}
		return nil, fmt.Errorf("dial signalling %s: %w", url, err)
	}
	ws.SetReadLimit(int64(opts.MaxMessageBytes))
	c := &Conn{
		ws:   ws,
		in:   make(chan Message, opts.RecvQueue),
		done: make(chan struct{}),
		quit: make(chan struct{}),
	}
	if err := c.Send(ctx, Message{Type: TypeAuth, Token: token, Resume: opts.Resume}); err != nil {
		_ = ws.Close()
		return nil, err
	}
	// The first reply is read here, before the reader goroutine exists.
	stop := context.AfterFunc(ctx, func() { _ = ws.SetReadDeadline(time.Now()) })
	first, err := c.readOne()
	stop()
	if err != nil {
		_ = ws.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("signalling auth: no reply before %w", ctx.Err())
		}
		return nil, fmt.Errorf("signalling auth: %w", err)
	}
	if first.Type != TypeAuthed {
		_ = ws.Close()
		if e := first.Err(); e != nil {
			return nil, fmt.Errorf("signalling auth refused: %w", e)
		}
		return nil, fmt.Errorf("signalling auth: server sent %q instead of authed", first.Type)
	}
	_ = ws.SetReadDeadline(time.Time{})
	c.authed = first
	go c.readLoop()
	return c, nil
}

// Authed is the server's "authed" reply: user, display, session, ice_servers.
func (c *Conn) Authed() Message { return c.authed }

// readOne reads one JSON message. A close frame whose reason is a stable code
// becomes an *Error with that code.
func (c *Conn) readOne() (Message, error) {
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Text != "" {
			return Message{}, fmt.Errorf("server closed the connection (%d): %w", ce.Code, &Error{Code: ce.Text})
		}
		return Message{}, err
	}
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("server sent a frame that is not a message: %w", err)
	}
	return m, nil
}

func (c *Conn) readLoop() {
	defer close(c.done)
	defer close(c.in)
	for {
		m, err := c.readOne()
		if err != nil {
			select {
			case <-c.quit:
				c.readErr = ErrConnClosed
			default:
				c.readErr = err
			}
			return
		}
		select {
		case c.in <- m:
		case <-c.quit:
			c.readErr = ErrConnClosed
			return
		}
	}
}

// Recv returns the next message from the server. After the connection ends it
// returns the reason: an error wrapping *Error when the server closed with a
// stable code, or ErrConnClosed after Close.
func (c *Conn) Recv(ctx context.Context) (Message, error) {
	select {
	case m, ok := <-c.in:
		if !ok {
			return Message{}, fmt.Errorf("signalling receive: %w", c.readErr)
		}
		return m, nil
	case <-ctx.Done():
		return Message{}, fmt.Errorf("signalling receive: %w", ctx.Err())
	}
}

// Send writes m; it blocks until written, ctx is done or a 10 s write timeout.
func (c *Conn) Send(ctx context.Context, m Message) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.ws.SetWriteDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.ws.SetWriteDeadline(time.Now()) })
	defer stop()
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("signalling send %s: %w", m.Type, err)
	}
	return nil
}

// SendRaw writes one frame as given (messageType is websocket.TextMessage or
// BinaryMessage). For tests that need hostile input.
func (c *Conn) SendRaw(ctx context.Context, messageType int, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	stop := context.AfterFunc(ctx, func() { _ = c.ws.SetWriteDeadline(time.Now()) })
	defer stop()
	if err := c.ws.WriteMessage(messageType, data); err != nil {
		return fmt.Errorf("signalling send raw frame: %w", err)
	}
	return nil
}

// Abort drops the TCP connection without a close frame, as a network failure would, and ends the reader.
func (c *Conn) Abort() {
	c.once.Do(func() {
		close(c.quit)
		_ = c.ws.NetConn().Close()
		<-c.done
	})
}

// Close says goodbye with a normal close frame, waits up to a second for the
// server's reply and ends the reader goroutine. Safe to call more than once;
// closing a connection the server already ended is not an error.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		close(c.quit)
		// Best effort: the server may already be gone.
		_ = c.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		select {
		case <-c.done:
		case <-time.After(time.Second):
		}
		if cerr := c.ws.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("close signalling connection: %w", cerr)
		}
		<-c.done
	})
	return err
}
