package web

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// networkCoordinator plays the call layer for network_e2e.mjs: it refuses "refuse-CODE" with that code (and the
// hangup that follows every final error), refuses every transfer without ending the call, holds calls of a dropped
// session for resume, and answers ICE-restart offers.
type networkCoordinator struct {
	t  *testing.T
	mu sync.Mutex
	// held: session ID → call IDs kept up after the socket dropped.
	calls   map[string][]string
	got     []signal.Message
	afterEr map[string]int // candidates received for a call after its final error went out
	refused map[string]bool
}

func (c *networkCoordinator) HandleMessage(ctx context.Context, s *signal.Session, m signal.Message) {
	c.mu.Lock()
	c.got = append(c.got, m)
	if m.Type == signal.TypeCandidate && c.refused[m.CallID] {
		c.afterEr[m.CallID]++
	}
	c.mu.Unlock()
	send := func(r signal.Message) { _ = s.Send(ctx, r) }
	switch m.Type {
	case signal.TypeCall:
		if code, ok := strings.CutPrefix(m.To, "refuse-"); ok {
			c.mu.Lock()
			c.refused[m.CallID] = true
			c.mu.Unlock()
			send(signal.ErrorMessage(m.CallID, code, "refused by the test"))
			send(signal.HangupMessage(m.CallID, wire.CauseForCode(code)))
			return
		}
		c.mu.Lock()
		c.calls[s.ID()] = append(c.calls[s.ID()], m.CallID)
		c.mu.Unlock()
		send(signal.Message{Type: signal.TypeAnswer, CallID: m.CallID, SDP: e2eOffer})
		send(signal.Message{Type: signal.TypeAnswered, CallID: m.CallID})
	case signal.TypeTransfer: // refused as call control refuses a contact-center request: about the call, not final
		r := signal.ErrorMessage("", wire.CodeForbiddenDestination, "your token may not transfer to "+m.To)
		r.CallID = m.CallID
		send(r)
	case signal.TypeOffer: // ICE restart
		send(signal.Message{Type: signal.TypeAnswer, CallID: m.CallID, SDP: e2eOffer + "a=ice-ufrag:restarted\r\n"})
	case signal.TypeHangup:
		c.mu.Lock()
		for sid, ids := range c.calls {
			c.calls[sid] = slices.DeleteFunc(ids, func(id string) bool { return id == m.CallID })
		}
		c.mu.Unlock()
	}
}

// SessionClosed ends the calls of a session that left (closed with 1000/1001), as the call layer does; a dropped
// session's calls are held for its resume.
func (c *networkCoordinator) SessionClosed(s *signal.Session) {
	if s.ResumeGrace() > 0 {
		return
	}
	c.mu.Lock()
	delete(c.calls, s.ID())
	c.mu.Unlock()
}

// SessionResumed gives back every call but those named "drop-*".
func (c *networkCoordinator) SessionResumed(_ context.Context, s *signal.Session, prev string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := c.calls[prev]
	delete(c.calls, prev)
	c.calls[s.ID()] = ids
	return ids
}

// TestPatchbayJSNetwork runs network_e2e.mjs: every refusal code ends the call with its real reason, resume after a
// dropped socket, ICE restart on failed media, and fresh TURN credentials in "refresh".
func TestPatchbayJSNetwork(t *testing.T) {
	node := needNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	flags := nodeWithWebSocket(ctx, t, node)
	signer, err := auth.NewSigner([]byte("e2e-secret-0123456789abcdef-0123456789abcdef"), "patchbay-test")
	if err != nil {
		t.Fatal(err)
	}
	coord := &networkCoordinator{t: t, calls: map[string][]string{}, afterEr: map[string]int{}, refused: map[string]bool{}}
	srv, err := signal.NewServer(signal.ServerOptions{
		Verifier:        signer,
		Handler:         coord,
		TURN:            &signal.TURN{URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Secret: []byte("turn-secret-for-the-e2e-test")},
		RefreshInterval: 300 * time.Millisecond,
		ResumeGrace:     3 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	ts := httptest.NewServer(mux)
	defer ts.Close()
	defer srv.Close()
	tok, err := signer.Mint(auth.Claims{Name: "Alice", RegisteredClaims: jwtSubject("alice")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lib, err := fs.ReadFile(FS(), "patchbay.js")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("testdata/network_e2e.mjs")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"patchbay.mjs": lib, "network_e2e.mjs": script} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	codes, _ := json.Marshal(wire.FinalCodes())
	args := append(flags, filepath.Join(dir, "network_e2e.mjs"), "ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", tok, string(codes))
	out, err := exec.CommandContext(ctx, node, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("node: %v\n%s", err, out)
	}
	t.Logf("node: %s", out)
	coord.mu.Lock()
	defer coord.mu.Unlock()
	var offers int
	for _, m := range coord.got {
		if m.Type == signal.TypeOffer {
			offers++
		}
	}
	if offers == 0 {
		t.Error("no ICE-restart offer reached the call layer")
	}
}

// TestFinalCodesMatchPatchbayJS keeps patchbay.js's FINAL_CODES table equal to wire's: a code that ends a call on
// the server must end it in the browser too, with the same cause.
func TestFinalCodesMatchPatchbayJS(t *testing.T) {
	b, err := fs.ReadFile(FS(), "patchbay.js")
	if err != nil {
		t.Fatal(err)
	}
	js := string(b)
	start := strings.Index(js, "export const FINAL_CODES = Object.freeze({")
	end := strings.Index(js[start:], "});")
	if start < 0 || end < 0 {
		t.Fatal("FINAL_CODES not found in patchbay.js")
	}
	got := map[string]string{}
	for _, m := range regexp.MustCompile(`(\w+): "(\w+)"`).FindAllStringSubmatch(js[start:start+end], -1) {
		got[m[1]] = m[2]
	}
	for _, code := range wire.FinalCodes() {
		if got[code] != wire.CauseForCode(code) {
			t.Errorf("patchbay.js FINAL_CODES[%s] = %q, want %q", code, got[code], wire.CauseForCode(code))
		}
		delete(got, code)
	}
	for code := range got {
		t.Errorf("patchbay.js treats %s as final; wire does not", code)
	}
}
