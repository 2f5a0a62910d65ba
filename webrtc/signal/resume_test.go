package signal

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/wire"
)

func TestMintTURNMatchesRESTAPI(t *testing.T) {
	// The TURN REST API's credential, as coturn computes it for use-auth-secret.
	got := MintTURN([]byte("north"), "alice", time.Unix(1732190400, 0), []string{"turn:127.0.0.1:3478"})
	if got.Username != "1732190400:alice" || got.Credential != "7eVuaPkPEORzpyHHAeHkNNNZ2A4=" {
		t.Fatalf("got %q / %q", got.Username, got.Credential)
	}
	tu := &TURN{URLs: []string{"turn:x"}, Secret: []byte("s"), TTL: time.Minute}
	now := time.Unix(1000, 0)
	if m := tu.Mint("bob", now); m.Username != "1060:bob" {
		t.Fatalf("expiry not now+TTL: %q", m.Username)
	}
	if _, err := NewServer(ServerOptions{Verifier: fakeVerifier{}, Handler: newFakeHandler(),
		TURN: &TURN{URLs: []string{"turn:x"}}}); err == nil {
		t.Fatal("TURN URLs without a secret accepted")
	}
}

// rawAuthed authenticates a raw socket and returns the authed frame as raw JSON and decoded.
func TestAuthedAlwaysCarriesICEServers(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*ServerOptions)
		want int
	}{
		{"none configured", func(o *ServerOptions) { o.ICEServers = nil }, 0},
		{"static only", nil, 1},
		{"static and TURN", func(o *ServerOptions) {
			o.TURN = &TURN{URLs: []string{"turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"}, Secret: []byte("s3cret")}
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.mod)
			ws := e.rawDial(nil)
			writeJSON(t, ws, Message{Type: TypeAuth, Token: e.token("alice", time.Hour)})
			_ = ws.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, data, err := ws.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(data, &raw); err != nil {
				t.Fatal(err)
			}
			var ice []ICEServer
			if err := json.Unmarshal(raw["ice_servers"], &ice); err != nil || ice == nil {
				t.Fatalf("authed %s: ice_servers missing or not an array (%v)", data, err)
			}
			if len(ice) != tc.want {
				t.Fatalf("authed %s: %d ice servers, want %d", data, len(ice), tc.want)
			}
			if tc.want == 2 {
				turn := ice[1]
				exp, user, _ := strings.Cut(turn.Username, ":")
				if user != "alice" || exp == "" || turn.Credential == "" || len(turn.URLs) != 2 {
					t.Fatalf("TURN entry %+v", turn)
				}
				if strings.Contains(string(data), "s3cret") {
					t.Fatal("TURN secret sent to the browser")
				}
			}
			if _, ok := raw["resume_token"]; !ok {
				t.Fatalf("authed %s: no resume_token", data)
			}
		})
	}
}

func TestRefreshBeforeExpiry(t *testing.T) {
	e := newEnv(t, func(o *ServerOptions) {
		o.TURN = &TURN{URLs: []string{"turn:127.0.0.1:3478"}, Secret: []byte("s"), TTL: 2 * time.Second}
		o.ResumeTTL = 2 * time.Second
	})
	ws := e.rawDial(nil)
	writeJSON(t, ws, Message{Type: TypeAuth, Token: e.token("alice", time.Hour)})
	first := readMsg(t, ws)
	m := readMsg(t, ws) // RefreshInterval defaults to half the shorter TTL: 1 s
	if m.Type != TypeRefresh || len(m.ICEServers) != 2 || m.ResumeToken == "" {
		t.Fatalf("want refresh with TURN credentials and a resume token, got %+v", m)
	}
	if m.ICEServers[1].Username == first.ICEServers[1].Username && m.ResumeToken == first.ResumeToken {
		// Same second is possible for the username; the token's expiry moves too.
		t.Logf("refresh in the same second as authed")
	}
}

// resumeHandler is a fakeHandler that holds calls of closed sessions, like the call layer does.
type resumeHandler struct {
	*fakeHandler
	mu      sync.Mutex
	held    map[string][]string // session ID → call_ids
	resumed chan [2]string      // previous, new session ID
}

func (h *resumeHandler) SessionResumed(_ context.Context, s *Session, prev string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	calls := h.held[prev]
	delete(h.held, prev)
	h.held[s.ID()] = calls
	h.resumed <- [2]string{prev, s.ID()}
	return calls
}

func TestResume(t *testing.T) {
	h := &resumeHandler{fakeHandler: newFakeHandler(), held: map[string][]string{}, resumed: make(chan [2]string, 4)}
	e := newEnv(t, func(o *ServerOptions) { o.Handler = h })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if g := e.srv.ResumeGrace(); g != DefaultResumeGrace {
		t.Fatalf("grace %s", g)
	}
	c1, err := Dial(ctx, e.wsURL, e.token("alice", time.Hour), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a1 := c1.Authed()
	if a1.ResumeToken == "" || a1.ResumeGrace != 20 {
		t.Fatalf("authed %+v", a1)
	}
	h.mu.Lock()
	h.held[a1.Session] = []string{"c1", "c2"}
	h.mu.Unlock()

	// The old socket is still open (the server has not seen it die): resuming takes it over.
	c2, err := Dial(ctx, e.wsURL, e.token("alice", time.Hour), DialOptions{Resume: a1.ResumeToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := c2.Authed().Resumed; strings.Join(got, ",") != "c1,c2" {
		t.Fatalf("resumed %v", got)
	}
	if r := <-h.resumed; r[0] != a1.Session || r[1] != c2.Authed().Session {
		t.Fatalf("SessionResumed(%v)", r)
	}
	select {
	case s := <-h.closed: // the old session's SessionClosed ran before SessionResumed
		if s.ID() != a1.Session {
			t.Fatalf("closed %s", s.ID())
		}
	default:
		t.Fatal("old session not closed before resume")
	}
	if _, err := c1.Recv(ctx); err == nil {
		t.Fatal("old connection still open")
	}
	c1.Close()

	// A dropped socket, then a resume.
	a2 := c2.Authed()
	c2.Abort()
	<-h.closed
	c3, err := Dial(ctx, e.wsURL, e.token("alice", time.Hour), DialOptions{Resume: a2.ResumeToken})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got := c3.Authed().Resumed; len(got) != 2 {
		t.Fatalf("resumed after drop %v", got)
	}
	<-h.resumed

	// Another user's token, a forged token and an expired one give nothing back; auth still succeeds.
	for name, tok := range map[string]string{
		"other user": c3.Authed().ResumeToken,
		"forged":     c3.Authed().Session + ".9999999999.AAAA",
		"garbage":    "x",
	} {
		user := "alice"
		if name == "other user" {
			user = "mallory"
		}
		c, err := Dial(ctx, e.wsURL, e.token(user, time.Hour), DialOptions{Resume: tok})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := c.Authed().Resumed; len(got) != 0 {
			t.Fatalf("%s: resumed %v", name, got)
		}
		c.Close()
	}
	if tok, ok := e.srv.checkResume(e.srv.resumeToken("s-x", "alice", time.Now().Add(-time.Second)), "alice", time.Now()); ok {
		t.Fatalf("expired token accepted: %s", tok)
	}
}

func TestResumeDisabled(t *testing.T) {
	e := newEnv(t, func(o *ServerOptions) { o.ResumeGrace = -1 })
	ws := e.rawDial(nil)
	writeJSON(t, ws, Message{Type: TypeAuth, Token: e.token("alice", time.Hour)})
	if m := readMsg(t, ws); m.ResumeToken != "" || m.ResumeGrace != 0 {
		t.Fatalf("resume disabled but authed has %+v", m)
	}
	if e.srv.ResumeGrace() != 0 {
		t.Fatal("grace not 0")
	}
}

func TestRestartOfferValidated(t *testing.T) {
	e := newEnv(t, nil)
	ws := e.authedRaw("alice")
	writeJSON(t, ws, Message{Type: TypeOffer, CallID: "c1", SDP: testOffer})
	select {
	case m := <-e.h.msgs:
		if m.Type != TypeOffer || m.CallID != "c1" || m.SDP != testOffer {
			t.Fatalf("handler got %+v", m)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("offer not handed to the call layer")
	}
	// An offer without audio about a live call is refused but does not end it: no final, no hangup.
	writeJSON(t, ws, Message{Type: TypeOffer, CallID: "c1", SDP: "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"})
	m := readMsg(t, ws)
	if m.Error != wire.CodeUnsupportedMedia || m.Final {
		t.Fatalf("got %+v", m)
	}
	writeJSON(t, ws, Message{Type: TypePing})
	if m := readMsg(t, ws); m.Type != TypePong {
		t.Fatalf("got %+v, want pong (no hangup)", m)
	}
}

func TestFinalErrorGetsExactlyOneHangup(t *testing.T) {
	e := newEnv(t, nil)
	e.h.onMessage = func(ctx context.Context, s *Session, m Message) {
		if m.Type != TypeCall {
			return
		}
		_ = s.Send(ctx, ErrorMessage(m.CallID, wire.CodeTooManyCalls, "4 calls already"))
		_ = s.Send(ctx, HangupMessage(m.CallID, wire.CauseNormalClearing)) // the call layer's own: dropped
		_ = s.Send(ctx, ErrorMessage(m.CallID, wire.CodeUnknownCall, "not final"))
	}
	ws := e.authedRaw("alice")
	writeJSON(t, ws, Message{Type: TypeCall, CallID: "c1", To: "600", SDP: testOffer})
	if m := readMsg(t, ws); m.Type != TypeError || m.Error != wire.CodeTooManyCalls || !m.Final {
		t.Fatalf("got %+v", m)
	}
	if m := readMsg(t, ws); m.Type != TypeHangup || m.Cause != wire.CauseCallRejected || m.Code != 21 {
		t.Fatalf("got %+v, want hangup call_rejected/21", m)
	}
	if m := readMsg(t, ws); m.Type != TypeError || m.Error != wire.CodeUnknownCall || m.Final {
		t.Fatalf("got %+v (a second hangup?)", m)
	}
}

func TestCleanCloseHasNoGrace(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, e.wsURL, e.token("alice", time.Hour), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // 1000: the browser left
	if s := <-e.h.closed; s.ResumeGrace() != 0 {
		t.Fatalf("grace %v after a clean close", s.ResumeGrace())
	}
	c2, err := Dial(ctx, e.wsURL, e.token("alice", time.Hour), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c2.Abort() // a network failure
	if s := <-e.h.closed; s.ResumeGrace() != DefaultResumeGrace {
		t.Fatalf("grace %v after a drop", s.ResumeGrace())
	}
}
