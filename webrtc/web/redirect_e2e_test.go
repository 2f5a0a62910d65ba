package web

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// redirectCoordinator plays one cluster node for redirect_e2e.mjs: node a sends every join to node b (with a
// fresh ticket), node b admits the join that carries that ticket.
type redirectCoordinator struct {
	t      *testing.T
	other  string // node b's URL; "" on node b
	mu     sync.Mutex
	joins  []signal.Message
	ticket string
}

func (c *redirectCoordinator) HandleMessage(ctx context.Context, s *signal.Session, m signal.Message) {
	if m.Type != signal.TypeJoin {
		return
	}
	c.mu.Lock()
	c.joins = append(c.joins, m)
	c.mu.Unlock()
	send := func(r signal.Message) {
		if err := s.Send(ctx, r); err != nil {
			c.t.Errorf("send %s: %v", r.Type, err)
		}
	}
	if c.other != "" {
		send(signal.Message{Type: signal.TypeRedirect, CallID: m.CallID, URL: c.other, Room: m.Room, Ticket: c.ticket})
		send(signal.HangupMessage(m.CallID, wire.CauseNormalClearing))
		return
	}
	if m.Ticket != "pbt_fresh" {
		send(signal.ErrorMessage(m.CallID, wire.CodeInvalidTicket, "not the redirect's ticket"))
		return
	}
	me := signal.Participant{ID: "p-me", Kind: "browser", You: true}
	send(signal.Message{Type: signal.TypeAnswer, CallID: m.CallID, SDP: e2eOffer})
	send(signal.Message{Type: signal.TypeJoined, CallID: m.CallID, Room: "standup", Participant: &me, Participants: []signal.Participant{me}})
}

func (c *redirectCoordinator) SessionClosed(*signal.Session) {}

// TestPatchbayJSFollowsRedirect: a room held by another node of a cluster; patchbay.js follows "redirect" there
// with the fresh ticket and hands the new room to the app.
func TestPatchbayJSFollowsRedirect(t *testing.T) {
	node := needNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	flags := nodeWithWebSocket(ctx, t, node)
	signer, err := auth.NewSigner([]byte("e2e-secret-0123456789abcdef-0123456789abcdef"), "patchbay-test")
	if err != nil {
		t.Fatal(err)
	}
	start := func(c *redirectCoordinator) string {
		srv, err := signal.NewServer(signal.ServerOptions{Verifier: signer, Handler: c, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("/ws", srv)
		ts := httptest.NewServer(mux)
		t.Cleanup(func() { ts.Close(); srv.Close() })
		return "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
	}
	b := &redirectCoordinator{t: t}
	a := &redirectCoordinator{t: t, other: start(b), ticket: "pbt_fresh"}
	urlA := start(a)
	tok, err := signer.Mint(auth.Claims{Name: "Alice", Room: "standup", RegisteredClaims: jwtSubject("alice")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lib, err := fs.ReadFile(FS(), "patchbay.js")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("testdata/redirect_e2e.mjs")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"patchbay.mjs": lib, "redirect_e2e.mjs": script} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := append(flags, filepath.Join(dir, "redirect_e2e.mjs"), urlA, tok)
	out, err := exec.CommandContext(ctx, node, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("node: %v\n%s", err, out)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(a.joins) != 1 || a.joins[0].Room != "standup" || len(b.joins) != 1 || b.joins[0].Ticket != "pbt_fresh" || b.joins[0].Room != "" {
		t.Fatalf("joins: node a %+v, node b %+v", a.joins, b.joins)
	}
}
