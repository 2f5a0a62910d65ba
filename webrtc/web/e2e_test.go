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

const e2eOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n"

// scriptedCoordinator plays the call layer's part for client_e2e.mjs: what it
// answers depends on the number dialled.
type scriptedCoordinator struct {
	t      *testing.T
	mu     sync.Mutex
	got    []signal.Message
	closed int
}

func (c *scriptedCoordinator) HandleMessage(ctx context.Context, s *signal.Session, m signal.Message) {
	c.mu.Lock()
	c.got = append(c.got, m)
	c.mu.Unlock()
	send := func(r signal.Message) {
		if err := s.Send(ctx, r); err != nil {
			c.t.Errorf("send %s: %v", r.Type, err)
		}
	}
	id := m.CallID
	switch m.Type {
	case signal.TypeCall:
		switch m.To {
		case "600": // the candidate comes first: the client must hold it until the answer
			send(signal.Message{Type: signal.TypeCandidate, CallID: id,
				Candidate: &signal.ICECandidate{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"}})
			send(signal.Message{Type: signal.TypeAnswer, CallID: id, SDP: e2eOffer})
			send(signal.Message{Type: signal.TypeRinging, CallID: id})
			send(signal.Message{Type: signal.TypeAnswered, CallID: id})
		case "999":
			send(signal.ErrorMessage(id, wire.CodeForbiddenDestination, "not in your dial list"))
		case "700":
			send(signal.Message{Type: signal.TypeAnswer, CallID: id, SDP: e2eOffer})
			send(signal.HangupMessage(id, wire.CauseUserBusy))
		case "800", "801": // ring the caller back
			send(signal.Message{Type: signal.TypeAnswer, CallID: id, SDP: e2eOffer})
			send(signal.Message{Type: signal.TypeIncoming, CallID: "in" + m.To + "-" + id, From: "100", FromName: "Bob", SDP: e2eOffer})
		}
	case signal.TypeDTMF:
		send(signal.Message{Type: signal.TypeDTMF, CallID: id, Digits: "5"})
	case signal.TypeAnswer: // the browser took our incoming call; the far end hangs up
		send(signal.HangupMessage(id, wire.CauseNormalClearing))
	}
}

func (c *scriptedCoordinator) SessionClosed(*signal.Session) {
	c.mu.Lock()
	c.closed++
	c.mu.Unlock()
}

// TestPatchbayJSAgainstServer runs patchbay.js in node against the real
// signalling server, with fake RTCPeerConnection and getUserMedia.
func TestPatchbayJSAgainstServer(t *testing.T) {
	node := needNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	flags := nodeWithWebSocket(ctx, t, node)

	signer, err := auth.NewSigner([]byte("e2e-secret-0123456789abcdef-0123456789abcdef"), "patchbay-test")
	if err != nil {
		t.Fatal(err)
	}
	coord := &scriptedCoordinator{t: t}
	srv, err := signal.NewServer(signal.ServerOptions{
		Verifier: signer,
		Handler:  coord,
		ICEServers: func() []signal.ICEServer {
			return []signal.ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}}
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	mux.Handle("/", Handler())
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
	script, err := os.ReadFile("testdata/client_e2e.mjs")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"patchbay.mjs": lib, "client_e2e.mjs": script} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	wsURL := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
	args := append(flags, filepath.Join(dir, "client_e2e.mjs"), wsURL, tok)
	out, err := exec.CommandContext(ctx, node, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("node: %v\n%s", err, out)
	}

	// What reached the call layer.
	coord.mu.Lock()
	defer coord.mu.Unlock()
	count := map[string]int{}
	var endOfCandidates, dtmf bool
	for _, m := range coord.got {
		count[m.Type]++
		if m.Type == signal.TypeCandidate && m.Candidate == nil {
			endOfCandidates = true
		}
		if m.Type == signal.TypeDTMF && m.Digits == "12#" {
			dtmf = true
		}
	}
	if count[signal.TypeCall] != 5 || count[signal.TypeAnswer] != 1 || count[signal.TypeReject] != 1 ||
		count[signal.TypeHangup] < 3 || count[signal.TypeCandidate] < 2 || !endOfCandidates || !dtmf {
		t.Errorf("call layer saw %v (end of candidates %v, dtmf %v)", count, endOfCandidates, dtmf)
	}
}
