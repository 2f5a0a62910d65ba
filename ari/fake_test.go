package ari

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const (
	testUser = "patchbay"
	testPass = "s3cret-Pa55word"
	testApp  = "patchbay-test"
)

// recorded is one REST request the fake saw.
type recorded struct {
	Method, Path, RawPath, Query, Body, User, Pass string
}

// fakeARI is an httptest server that speaks enough ARI for unit tests: REST
// routes answered by per-test handlers and an events WebSocket whose server
// side is handed to the test.
type fakeARI struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	routes map[string]http.HandlerFunc // "METHOD /ari/path"
	reqs   []recorded
	wsAuth int // status to refuse the WS with (0: accept)

	conns chan *websocket.Conn // accepted event sockets
}

func newFakeARI(t *testing.T) *fakeARI {
	t.Helper()
	f := &fakeARI{t: t, routes: map[string]http.HandlerFunc{}, conns: make(chan *websocket.Conn, 16)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeARI) handle(route string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[route] = h
}

// json answers with status and v encoded.
func replyJSON(status int, v any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
}

func (f *fakeARI) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func (f *fakeARI) serve(w http.ResponseWriter, r *http.Request) {
	user, pass, _ := r.BasicAuth()
	if r.URL.Path == "/ari/events" {
		f.mu.Lock()
		refuse := f.wsAuth
		f.mu.Unlock()
		if refuse != 0 {
			http.Error(w, `{"message":"Authentication required"}`, refuse)
			return
		}
		if user != testUser || pass != testPass || r.URL.Query().Get("app") != testApp {
			http.Error(w, "bad auth or app", http.StatusUnauthorized)
			return
		}
		up := websocket.Upgrader{}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		f.conns <- conn
		return
	}
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(),
		Query: r.URL.RawQuery, Body: string(body), User: user, Pass: pass})
	h := f.routes[r.Method+" "+r.URL.Path]
	f.mu.Unlock()
	if h == nil {
		replyJSON(http.StatusNotFound, map[string]string{"message": "Resource not found"})(w, r)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	h(w, r)
}

// nextConn waits for the client to open an events socket.
func (f *fakeARI) nextConn(timeout time.Duration) *websocket.Conn {
	f.t.Helper()
	select {
	case c := <-f.conns:
		f.t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(timeout):
		f.t.Fatalf("client did not open the events socket within %v", timeout)
		return nil
	}
}

// logBuf is a concurrency-safe log sink for asserting on warnings.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestClient(t *testing.T, f *fakeARI, mod func(*Config)) (*Client, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	cfg := Config{
		URL: f.srv.URL, Username: testUser, Password: testPass, Application: testApp,
		Logger:       slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})),
		PingInterval: time.Second, MaxBackoff: 200 * time.Millisecond,
		AppCheckInterval: -1, // this fake has no user events; appcheck_test.go uses aritest
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if strings.Contains(lb.String(), testPass) {
			t.Errorf("password appeared in logs")
		}
	})
	return c, lb
}
