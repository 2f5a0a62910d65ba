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
)

const roomOffer = "v=0\r\no=- 7 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:p-bob video-p-bob\r\n"

// roomCoordinator plays a room's call layer with video for room_e2e.mjs.
type roomCoordinator struct {
	t       *testing.T
	mu      sync.Mutex
	got     []signal.Message
	answers []string
}

func (c *roomCoordinator) HandleMessage(ctx context.Context, s *signal.Session, m signal.Message) {
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
	case signal.TypeJoin:
		me := signal.Participant{ID: "p-me", Kind: "browser", Name: "Alice", You: true}
		phone := signal.Participant{ID: "p-phone", Kind: "phone", Name: "Carol", CallerID: "+441234"}
		send(signal.Message{Type: signal.TypeAnswer, CallID: id, SDP: e2eOffer})
		send(signal.Message{Type: signal.TypeJoined, CallID: id, Room: m.Room, Participant: &me,
			Participants: []signal.Participant{phone, me}})
		send(signal.OfferMessage(id, roomOffer))
	case signal.TypeAnswer:
		c.mu.Lock()
		c.answers = append(c.answers, m.SDP)
		n := len(c.answers)
		c.mu.Unlock()
		if n == 1 { // the answer was "slow": the same offer again
			send(signal.OfferMessage(id, roomOffer))
			return
		}
		phone := signal.Participant{ID: "p-phone", Kind: "phone", Name: "Carol", CallerID: "+441234", Talking: true}
		send(signal.Message{Type: signal.TypeRoom, CallID: id, Room: "r1", Event: signal.RoomEventUpdated, Participant: &phone})
		send(signal.Message{Type: signal.TypeRoom, CallID: id, Room: "r1", Event: signal.RoomEventLeft, Participant: &phone})
	}
}

func (c *roomCoordinator) SessionClosed(*signal.Session) {}

// TestPatchbayJSRoom runs the room API of patchbay.js in node against the real
// signalling server with fake WebRTC objects.
func TestPatchbayJSRoom(t *testing.T) {
	node := needNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	flags := nodeWithWebSocket(ctx, t, node)
	signer, err := auth.NewSigner([]byte("e2e-secret-0123456789abcdef-0123456789abcdef"), "patchbay-test")
	if err != nil {
		t.Fatal(err)
	}
	coord := &roomCoordinator{t: t}
	srv, err := signal.NewServer(signal.ServerOptions{Verifier: signer, Handler: coord,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	ts := httptest.NewServer(mux)
	defer ts.Close()
	defer srv.Close()
	tok, err := signer.Mint(auth.Claims{Name: "Alice", Room: "r1", RegisteredClaims: jwtSubject("alice")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lib, err := fs.ReadFile(FS(), "patchbay.js")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("testdata/room_e2e.mjs")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"patchbay.mjs": lib, "room_e2e.mjs": script} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := append(flags, filepath.Join(dir, "room_e2e.mjs"), "ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", tok)
	out, err := exec.CommandContext(ctx, node, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("node: %v\n%s", err, out)
	}
	coord.mu.Lock()
	defer coord.mu.Unlock()
	var join *signal.Message
	for i, m := range coord.got {
		if m.Type == signal.TypeJoin {
			join = &coord.got[i]
		}
	}
	if join == nil || join.Room != "r1" || join.Ticket != "" || join.Number != "" {
		t.Fatalf("join message %+v", join)
	}
	// The repeated offer got the same answer, not a second negotiation.
	if len(coord.answers) != 2 || coord.answers[0] != coord.answers[1] {
		t.Fatalf("answers to the offer and its repeat differ or are missing: %q", coord.answers)
	}
}
