package signal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/patchbay/patchbay/auth"
)

const testSecret = "0123456789abcdef0123456789abcdef-test-secret-not-for-production"

// fakeVerifier is the real signer plus a few magic tokens for cases the signer
// cannot produce on demand (an already expired token).
type fakeVerifier struct{ signer *auth.Signer }

func (f fakeVerifier) Verify(tok string) (*auth.Claims, error) {
	switch tok {
	case "expired-token":
		return nil, fmt.Errorf("verify: %w", errors.Join(auth.ErrInvalidToken, auth.ErrExpired))
	case "no-exp-token":
		c := &auth.Claims{Name: "No Exp"}
		c.Subject = "noexp"
		return c, nil
	}
	return f.signer.Verify(tok)
}

// fakeHandler records what the server hands it and can answer.
type fakeHandler struct {
	msgs   chan Message
	closed chan *Session
	// onMessage, if set, runs for every message (e.g. to reply).
	onMessage func(ctx context.Context, s *Session, m Message)
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{msgs: make(chan Message, 1024), closed: make(chan *Session, 64)}
}

func (h *fakeHandler) HandleMessage(ctx context.Context, s *Session, m Message) {
	if h.onMessage != nil {
		h.onMessage(ctx, s, m)
	}
	select {
	case h.msgs <- m:
	default:
	}
}

func (h *fakeHandler) SessionClosed(s *Session) { h.closed <- s }

type testEnv struct {
	t       *testing.T
	srv     *Server
	ts      *httptest.Server
	h       *fakeHandler
	signer  *auth.Signer
	wsURL   string
	origin  string
	cleanup sync.Once
}

func newEnv(t *testing.T, mod func(*ServerOptions)) *testEnv {
	t.Helper()
	signer, err := auth.NewSigner([]byte(testSecret), "patchbay-test")
	if err != nil {
		t.Fatal(err)
	}
	h := newFakeHandler()
	opts := ServerOptions{
		Verifier:    fakeVerifier{signer},
		Handler:     h,
		AuthTimeout: 2 * time.Second,
		CloseGrace:  500 * time.Millisecond,
		ICEServers: func() []ICEServer {
			return []ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}}
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&opts)
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	ts := httptest.NewServer(mux)
	e := &testEnv{t: t, srv: srv, ts: ts, h: h, signer: signer,
		wsURL: "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws", origin: ts.URL}
	t.Cleanup(e.close)
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// close shuts everything down and fails the test if a goroutine of this
// package outlives it.
func (e *testEnv) close() {
	e.cleanup.Do(func() {
		if err := e.srv.Close(); err != nil {
			e.t.Errorf("server close: %v", err)
		}
		e.ts.Close()
		checkNoLeaks(e.t)
	})
}

func (e *testEnv) token(user string, ttl time.Duration) string {
	e.t.Helper()
	tok, err := e.signer.Mint(auth.Claims{Name: strings.ToUpper(user), Dial: []string{"6XX"},
		RegisteredClaims: jwtSubject(user)}, ttl)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// rawDial opens a WebSocket without authenticating.
func (e *testEnv) rawDial(hdr http.Header) *websocket.Conn {
	e.t.Helper()
	if hdr == nil {
		hdr = http.Header{"Origin": []string{e.origin}}
	}
	ws, _, err := websocket.DefaultDialer.Dial(e.wsURL, hdr)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { _ = ws.Close() })
	return ws
}

func (e *testEnv) authedRaw(user string) *websocket.Conn {
	e.t.Helper()
	ws := e.rawDial(nil)
	writeJSON(e.t, ws, Message{Type: TypeAuth, Token: e.token(user, time.Hour)})
	if m := readMsg(e.t, ws); m.Type != TypeAuthed {
		e.t.Fatalf("want authed, got %+v", m)
	}
	return ws
}

func writeJSON(t *testing.T, ws *websocket.Conn, m Message) {
	t.Helper()
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readMsg reads one message; a close frame or timeout fails the test.
func readMsg(t *testing.T, ws *websocket.Conn) Message {
	t.Helper()
	m, err := tryRead(ws, 3*time.Second)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

func tryRead(ws *websocket.Conn, d time.Duration) (Message, error) {
	_ = ws.SetReadDeadline(time.Now().Add(d))
	var m Message
	err := ws.ReadJSON(&m)
	return m, err
}

// expectClosed reads until the server closes and returns the close frame.
func expectClosed(t *testing.T, ws *websocket.Conn) *websocket.CloseError {
	t.Helper()
	for {
		_, _, err := func() (int, []byte, error) {
			_ = ws.SetReadDeadline(time.Now().Add(3 * time.Second))
			return ws.ReadMessage()
		}()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce
		}
		t.Fatalf("want a close frame, got %v", err)
		return nil
	}
}

// checkNoLeaks waits until no goroutine runs code of this package.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		var leaked []string
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "webrtc/signal.(*Session)") || strings.Contains(g, "webrtc/signal.(*Conn)") ||
				strings.Contains(g, "webrtc/signal.(*Server)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines left behind:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func jwtSubject(user string) jwt.RegisteredClaims { return jwt.RegisteredClaims{Subject: user} }

// testOffer is a minimal audio offer that passes validation.
const testOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n"
