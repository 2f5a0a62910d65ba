package signal

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/patchbay/patchbay/wire"
)

func TestNewServerNeedsVerifierAndHandler(t *testing.T) {
	if _, err := NewServer(ServerOptions{Handler: newFakeHandler()}); err == nil {
		t.Error("NewServer without Verifier succeeded")
	}
	if _, err := NewServer(ServerOptions{Verifier: fakeVerifier{}}); err == nil {
		t.Error("NewServer without Handler succeeded")
	}
	if _, err := NewServer(ServerOptions{Verifier: fakeVerifier{}, Handler: newFakeHandler(),
		AllowedOrigins: []string{"pbx.example.com"}}); err == nil {
		t.Error("NewServer accepted an origin without a scheme")
	}
}

// TestHostileInput sends each bad input over a real connection and checks the
// error code, and either that the connection still serves (a ping gets a
// pong) or that it was closed with that code.
func TestHostileInput(t *testing.T) {
	type frame struct {
		kind int
		data string
	}
	text := func(s string) frame { return frame{websocket.TextMessage, s} }
	big := `{"type":"ping","message":"` + strings.Repeat("x", 70<<10) + `"}`
	tests := []struct {
		name      string
		preAuth   bool // send before authenticating (the token is not sent)
		frames    []frame
		code      string
		callID    string
		wantClose int // 0: the connection must stay usable
	}{
		{name: "malformed JSON", frames: []frame{text(`{"type":"call",`)}, code: wire.CodeBadMessage},
		{name: "not an object", frames: []frame{text(`["call"]`)}, code: wire.CodeBadMessage},
		{name: "null", frames: []frame{text(`null`)}, code: wire.CodeBadMessage},
		{name: "wrong field type", frames: []frame{text(`{"type":"dtmf","call_id":"c1","digits":5}`)}, code: wire.CodeBadMessage},
		{name: "binary frame", frames: []frame{{websocket.BinaryMessage, `{"type":"ping"}`}}, code: wire.CodeBadMessage},
		{name: "unknown type", frames: []frame{text(`{"type":"teleport","call_id":"c1"}`)}, code: wire.CodeBadMessage, callID: "c1"},
		{name: "bad call_id", frames: []frame{text(`{"type":"hangup","call_id":"c 1;DROP"}`)}, code: wire.CodeBadMessage},
		{name: "call_id too long", frames: []frame{text(`{"type":"hangup","call_id":"` + strings.Repeat("a", 65) + `"}`)}, code: wire.CodeBadMessage},
		{name: "digits with junk", frames: []frame{text(`{"type":"dtmf","call_id":"c1","digits":"12&Dial(SIP/x)"}`)}, code: wire.CodeBadMessage, callID: "c1"},
		{name: "too many digits", frames: []frame{text(`{"type":"dtmf","call_id":"c1","digits":"` + strings.Repeat("1", 33) + `"}`)}, code: wire.CodeBadMessage, callID: "c1"},
		{name: "injection in to", frames: []frame{text(`{"type":"call","call_id":"c1","to":"500&SIP/itsp/1416","sdp":"v=0\nm=audio 9"}`)}, code: wire.CodeInvalidNumber, callID: "c1"},
		{name: "to with space", frames: []frame{text(`{"type":"call","call_id":"c1","to":"500 &x","sdp":"v=0\nm=audio 9"}`)}, code: wire.CodeInvalidNumber, callID: "c1"},
		{name: "offer without audio", frames: []frame{text(`{"type":"call","call_id":"c1","to":"600","sdp":"v=0\r\nm=video 9 X 96\r\n"}`)}, code: wire.CodeUnsupportedMedia, callID: "c1"},
		{name: "second auth", frames: []frame{text(`{"type":"auth","token":"x"}`)}, code: wire.CodeBadMessage},
		{name: "oversized frame", frames: []frame{text(big)}, code: wire.CodeTooLarge, wantClose: websocket.CloseMessageTooBig},
		{name: "no auth first", preAuth: true, frames: []frame{text(`{"type":"ping"}`)}, code: wire.CodeUnauthorized, wantClose: websocket.ClosePolicyViolation},
		{name: "garbage first", preAuth: true, frames: []frame{text(`{{{`)}, code: wire.CodeUnauthorized, wantClose: websocket.ClosePolicyViolation},
		{name: "binary first", preAuth: true, frames: []frame{{websocket.BinaryMessage, "\x00\x01"}}, code: wire.CodeUnauthorized, wantClose: websocket.ClosePolicyViolation},
		{name: "oversized first", preAuth: true, frames: []frame{text(big)}, code: wire.CodeTooLarge, wantClose: websocket.CloseMessageTooBig},
		{name: "expired token", preAuth: true, frames: []frame{text(`{"type":"auth","token":"expired-token"}`)}, code: wire.CodeTokenExpired, wantClose: websocket.ClosePolicyViolation},
		{name: "forged token", preAuth: true, frames: []frame{text(`{"type":"auth","token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl"}`)}, code: wire.CodeUnauthorized, wantClose: websocket.ClosePolicyViolation},
		{name: "alg none token", preAuth: true, frames: []frame{text(`{"type":"auth","token":"eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0."}`)}, code: wire.CodeUnauthorized, wantClose: websocket.ClosePolicyViolation},
		{name: "token without exp", preAuth: true, frames: []frame{text(`{"type":"auth","token":"no-exp-token"}`)}, code: wire.CodeUnauthorized, wantClose: websocket.ClosePolicyViolation},
		{name: "empty token", preAuth: true, frames: []frame{text(`{"type":"auth"}`)}, code: wire.CodeUnauthorized, wantClose: websocket.ClosePolicyViolation},
	}
	e := newEnv(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ws *websocket.Conn
			if tc.preAuth {
				ws = e.rawDial(nil)
			} else {
				ws = e.authedRaw("alice")
			}
			for _, f := range tc.frames {
				if err := ws.WriteMessage(f.kind, []byte(f.data)); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			m := readMsg(t, ws)
			if m.Type != TypeError || m.Error != tc.code || m.CallID != tc.callID {
				t.Fatalf("got %+v, want error %s call_id %q", m, tc.code, tc.callID)
			}
			if m.Message == "" {
				t.Error("error without a human message")
			}
			if m.Final != (m.CallID != "" && wire.EndsCall(tc.code)) {
				t.Errorf("final = %v for %s on call %q", m.Final, tc.code, m.CallID)
			}
			if m.Final { // a refused call ends like any other: a hangup follows the error
				if h := readMsg(t, ws); h.Type != TypeHangup || h.CallID != m.CallID || h.Cause != wire.CauseForCode(tc.code) {
					t.Fatalf("after final %s got %+v, want hangup with cause %s", tc.code, h, wire.CauseForCode(tc.code))
				}
			}
			if tc.wantClose != 0 {
				ce := expectClosed(t, ws)
				if ce.Code != tc.wantClose || ce.Text != tc.code {
					t.Fatalf("closed with %d %q, want %d %q", ce.Code, ce.Text, tc.wantClose, tc.code)
				}
				return
			}
			writeJSON(t, ws, Message{Type: TypePing})
			if m := readMsg(t, ws); m.Type != TypePong {
				t.Fatalf("after the bad frame, ping got %+v, want pong", m)
			}
		})
	}
}

func TestAuthTimeout(t *testing.T) {
	e := newEnv(t, func(o *ServerOptions) { o.AuthTimeout = 200 * time.Millisecond })
	ws := e.rawDial(nil)
	start := time.Now()
	m := readMsg(t, ws)
	if m.Error != wire.CodeUnauthorized {
		t.Fatalf("got %+v, want unauthorized", m)
	}
	if ce := expectClosed(t, ws); ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("close code %d", ce.Code)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("auth timeout took %v", el)
	}
}

func TestAuthTimeoutNotExtendedByPongs(t *testing.T) {
	e := newEnv(t, func(o *ServerOptions) { o.AuthTimeout = 300 * time.Millisecond })
	ws := e.rawDial(nil)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // unsolicited pongs must not keep an unauthenticated socket open
		defer close(done)
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				_ = ws.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
			}
		}
	}()
	defer func() { close(stop); <-done }()
	if m := readMsg(t, ws); m.Error != wire.CodeUnauthorized {
		t.Fatalf("got %+v, want unauthorized", m)
	}
}

func TestOrigin(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		origin  string // "" sends none; "SAME" the test server's own origin
		status  int
	}{
		{"same host, no list", nil, "SAME", http.StatusSwitchingProtocols},
		{"no origin header", nil, "", http.StatusSwitchingProtocols},
		{"other host, no list", nil, "https://evil.example", http.StatusForbidden},
		{"listed", []string{"https://pbx.example.com"}, "https://pbx.example.com", http.StatusSwitchingProtocols},
		{"listed, case differs", []string{"https://PBX.example.com"}, "https://pbx.example.com", http.StatusSwitchingProtocols},
		{"not listed", []string{"https://pbx.example.com"}, "https://pbx.example.com.evil.example", http.StatusForbidden},
		{"same host but list given", []string{"https://pbx.example.com"}, "SAME", http.StatusForbidden},
		{"scheme differs", []string{"https://pbx.example.com"}, "http://pbx.example.com", http.StatusForbidden},
		{"null origin", nil, "null", http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *ServerOptions) { o.AllowedOrigins = tc.allowed })
			hdr := http.Header{}
			switch tc.origin {
			case "SAME":
				hdr.Set("Origin", e.origin)
			case "":
			default:
				hdr.Set("Origin", tc.origin)
			}
			ws, resp, err := websocket.DefaultDialer.Dial(e.wsURL, hdr)
			if ws != nil {
				_ = ws.Close()
			}
			if resp == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(o *ServerOptions) {
		o.RateLimit = RateLimit{PerSecond: 0.5, Burst: 5, MaxDropped: 20}
	})
	ws := e.authedRaw("alice")
	for range 8 {
		writeJSON(t, ws, Message{Type: TypePing})
	}
	pongs, limited := 0, 0
	for range 6 {
		switch m := readMsg(t, ws); {
		case m.Type == TypePong:
			pongs++
		case m.Error == wire.CodeRateLimited:
			limited++
		default:
			t.Fatalf("unexpected %+v", m)
		}
	}
	if pongs != 5 || limited != 1 {
		t.Fatalf("got %d pongs and %d rate_limited errors, want 5 and 1", pongs, limited)
	}
	// Sustained flooding closes the connection.
	for range 20 {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
			break
		}
	}
	m := readMsg(t, ws)
	if m.Error != wire.CodeRateLimited {
		t.Fatalf("got %+v, want the closing rate_limited error", m)
	}
	if ce := expectClosed(t, ws); ce.Text != wire.CodeRateLimited {
		t.Fatalf("closed with %q", ce.Text)
	}
	select {
	case <-e.h.closed:
	case <-time.After(3 * time.Second):
		t.Fatal("SessionClosed not called")
	}
}

// TestTokenExpiryClosesSession: at exp (plus the verifier's leeway) the session gets token_expired and closes, and its
// calls are not held for a resume.
func TestTokenExpiryClosesSession(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.expiryLeeway = 0 // auth.Leeway is 10 s
	ws := e.rawDial(nil)
	writeJSON(t, ws, Message{Type: TypeAuth, Token: e.token("alice", 1500*time.Millisecond)})
	if m := readMsg(t, ws); m.Type != TypeAuthed {
		t.Fatalf("got %+v", m)
	}
	start := time.Now()
	m, err := tryRead(ws, 4*time.Second)
	if err != nil || m.Error != wire.CodeTokenExpired {
		t.Fatalf("got %+v, %v; want token_expired", m, err)
	}
	// jwt exp has one-second resolution.
	if el := time.Since(start); el > 2500*time.Millisecond {
		t.Errorf("closed %v after auth, want about 1.5 s", el)
	}
	if ce := expectClosed(t, ws); ce.Text != wire.CodeTokenExpired {
		t.Fatalf("closed with %q", ce.Text)
	}
	select {
	case s := <-e.h.closed:
		if s.User() != "alice" || s.Context().Err() == nil {
			t.Errorf("closed session %s user %q ctx %v", s.ID(), s.User(), s.Context().Err())
		}
		if g := s.ResumeGrace(); g != 0 {
			t.Errorf("calls of an expired token's session held for %v, want ended at once", g)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("SessionClosed not called")
	}
}

func TestMessagesReachHandlerSanitized(t *testing.T) {
	e := newEnv(t, nil)
	ws := e.authedRaw("alice")
	writeJSON(t, ws, Message{Type: TypeCall, CallID: "c-1", To: "600", SDP: testOffer,
		From: "spoofed", Token: "leak", User: "mallory"})
	writeJSON(t, ws, Message{Type: TypeCandidate, CallID: "c-1"}) // end of candidates
	writeJSON(t, ws, Message{Type: TypeDTMF, CallID: "c-1", Digits: "12#*AD"})
	writeJSON(t, ws, Message{Type: TypeHangup, CallID: "c-1"})
	want := []Message{
		{Type: TypeCall, CallID: "c-1", To: "600", SDP: testOffer},
		{Type: TypeCandidate, CallID: "c-1"},
		{Type: TypeDTMF, CallID: "c-1", Digits: "12#*AD"},
		{Type: TypeHangup, CallID: "c-1"},
	}
	for i, w := range want {
		select {
		case got := <-e.h.msgs:
			if got.String() != w.String() || got.From != "" || got.Token != "" || got.User != "" || got.To != w.To ||
				got.Digits != w.Digits || got.Candidate != nil {
				t.Fatalf("message %d: got %+v, want %+v", i, got, w)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("message %d never reached the handler", i)
		}
	}
}

func TestSessionsOfRegistry(t *testing.T) {
	e := newEnv(t, nil)
	a1 := e.authedRaw("alice")
	_ = e.authedRaw("alice")
	_ = e.authedRaw("bob")
	_ = e.rawDial(nil) // not authenticated: not in the registry
	if n := len(e.srv.SessionsOf("alice")); n != 2 {
		t.Fatalf("SessionsOf(alice) = %d sessions, want 2", n)
	}
	bob := e.srv.SessionsOf("bob")
	if len(bob) != 1 || bob[0].User() != "bob" || bob[0].Display() != "BOB" || bob[0].Claims().Dial[0] != "6XX" {
		t.Fatalf("SessionsOf(bob) = %v", bob)
	}
	if e.srv.Session(bob[0].ID()) != bob[0] {
		t.Error("Session(id) did not find bob's session")
	}
	if len(e.srv.SessionsOf("carol")) != 0 {
		t.Error("carol has sessions")
	}
	_ = a1.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	select {
	case s := <-e.h.closed:
		if s.User() != "alice" {
			t.Fatalf("closed %q", s.User())
		}
	case <-time.After(3 * time.Second):
		t.Fatal("SessionClosed not called")
	}
	if n := len(e.srv.SessionsOf("alice")); n != 1 {
		t.Fatalf("after one tab closed SessionsOf(alice) = %d, want 1", n)
	}
	// The handler can push to every tab of a user.
	for _, s := range e.srv.SessionsOf("bob") {
		if err := s.Send(context.Background(), Message{Type: TypeIncoming, CallID: "in-1", From: "100", SDP: testOffer}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSessionCloseFromHandler(t *testing.T) {
	e := newEnv(t, nil)
	e.h.onMessage = func(ctx context.Context, s *Session, m Message) {
		if m.Type == TypeCall && m.To == "999" {
			s.Close(wire.CodeForbiddenDestination)
		}
	}
	ws := e.authedRaw("alice")
	writeJSON(t, ws, Message{Type: TypeCall, CallID: "c1", To: "999", SDP: testOffer})
	if m := readMsg(t, ws); m.Error != wire.CodeForbiddenDestination {
		t.Fatalf("got %+v", m)
	}
	if ce := expectClosed(t, ws); ce.Code != websocket.ClosePolicyViolation || ce.Text != wire.CodeForbiddenDestination {
		t.Fatalf("closed with %d %q", ce.Code, ce.Text)
	}
	s := <-e.h.closed
	if err := s.Send(context.Background(), Message{Type: TypeRinging}); err == nil {
		t.Error("Send on a closed session succeeded")
	}
}

func TestShutdownClosesSessions(t *testing.T) {
	e := newEnv(t, nil)
	a := e.authedRaw("alice")
	pre := e.rawDial(nil)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ws := range []*websocket.Conn{a, pre} {
		if m := readMsg(t, ws); m.Error != wire.CodeUnavailable {
			t.Fatalf("got %+v, want unavailable", m)
		}
		if ce := expectClosed(t, ws); ce.Code != websocket.CloseGoingAway {
			t.Fatalf("close code %d, want 1001", ce.Code)
		}
	}
	if len(e.h.closed) != 1 {
		t.Fatalf("SessionClosed ran %d times, want 1 (for the authenticated session)", len(e.h.closed))
	}
	_, resp, err := websocket.DefaultDialer.Dial(e.wsURL, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v %v", resp, err)
	}
	if e.srv.Len() != 0 {
		t.Fatalf("%d connections left", e.srv.Len())
	}
	checkNoLeaks(t)
}

func TestSendQueueOverflowClosesSession(t *testing.T) {
	e := newEnv(t, func(o *ServerOptions) { o.SendQueue = 4 })
	ws := e.authedRaw("alice")
	s := e.srv.SessionsOf("alice")[0]
	big := Message{Type: TypeIncoming, CallID: "x", SDP: strings.Repeat("a", 60<<10)}
	var err error
	for i := 0; i < 10000 && err == nil; i++ { // the browser reads nothing
		err = s.Send(context.Background(), big)
	}
	if err == nil {
		t.Fatal("Send never reported a full queue")
	}
	select {
	case <-s.Context().Done():
	case <-time.After(3 * time.Second):
		t.Fatal("session not closed after overflow")
	}
	_ = ws.Close()
}

func TestServerPingsAndDropsSilentPeer(t *testing.T) {
	e := newEnv(t, func(o *ServerOptions) {
		o.PingInterval = 100 * time.Millisecond
		o.PongTimeout = 200 * time.Millisecond
	})
	ws := e.authedRaw("alice")
	pings := make(chan struct{}, 16)
	// Swallow pings without answering: the server must give up on us.
	ws.SetPingHandler(func(string) error { pings <- struct{}{}; return nil })
	start := time.Now()
	_ = ws.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			break
		}
	}
	if len(pings) == 0 {
		t.Error("no ping received")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("silent peer dropped after %v", el)
	}
	select {
	case <-e.h.closed:
	case <-time.After(3 * time.Second):
		t.Fatal("SessionClosed not called")
	}
}

func TestPongsKeepSessionAlive(t *testing.T) {
	e := newEnv(t, func(o *ServerOptions) {
		o.PingInterval = 50 * time.Millisecond
		o.PongTimeout = 100 * time.Millisecond
	})
	c, err := Dial(context.Background(), e.wsURL, e.token("alice", time.Hour), DialOptions{Origin: e.origin})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The client's reader answers pings; the session must outlive many timeouts.
	time.Sleep(600 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Send(ctx, Message{Type: TypePing}); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Recv(ctx); err != nil || m.Type != TypePong {
		t.Fatalf("got %+v, %v", m, err)
	}
}

func TestNoGoroutinesAfterConnectionsEnd(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	c, err := Dial(ctx, e.wsURL, e.token("alice", time.Hour), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw := e.authedRaw("bob")
	pre := e.rawDial(nil)
	big := e.authedRaw("carol")
	_ = big.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 100<<10)))

	_ = c.Close()
	_ = raw.Close() // abrupt: no close frame
	_ = pre.Close()
	expectClosed(t, big)
	for range 3 { // alice, bob, carol
		select {
		case <-e.h.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("SessionClosed not called for every session")
		}
	}
	// The server is still running: nothing of this package may be left.
	checkNoLeaks(t)
	if n := e.srv.Len(); n != 0 {
		t.Fatalf("%d connections still registered", n)
	}
}

// TestConcurrentClientsAndShutdown runs many chatty clients and shuts the
// server down under them; run with -race.
func TestConcurrentClientsAndShutdown(t *testing.T) {
	e := newEnv(t, func(o *ServerOptions) { o.RateLimit = RateLimit{PerSecond: 1000, Burst: 1000} })
	e.h.onMessage = func(ctx context.Context, s *Session, m Message) {
		for _, peer := range e.srv.SessionsOf(s.User()) {
			_ = peer.Send(ctx, Message{Type: TypeRinging, CallID: m.CallID})
		}
	}
	const clients = 12
	var wg sync.WaitGroup
	for i := range clients {
		c, err := Dial(context.Background(), e.wsURL, e.token(fmt.Sprintf("u%d", i%3), time.Hour), DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() { // writer
			defer wg.Done()
			for j := range 200 {
				if c.Send(context.Background(), Message{Type: TypeHangup, CallID: fmt.Sprintf("c%d", j)}) != nil {
					return
				}
			}
		}()
		go func() { // reader, until the server goes away
			defer wg.Done()
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for {
				if _, err := c.Recv(ctx); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if len(e.h.closed) != clients {
		t.Fatalf("SessionClosed ran %d times, want %d", len(e.h.closed), clients)
	}
	checkNoLeaks(t)
}

func TestPingFloodIsRateLimited(t *testing.T) {
	e := newEnv(t, func(o *ServerOptions) {
		o.RateLimit = RateLimit{PerSecond: 0.5, Burst: 5, MaxDropped: 20}
	})
	ws := e.authedRaw("alice")
	pongs := 0
	ws.SetPongHandler(func(string) error { pongs++; return nil })
	for range 40 {
		if err := ws.WriteControl(websocket.PingMessage, []byte("x"), time.Now().Add(time.Second)); err != nil {
			break
		}
	}
	if m := readMsg(t, ws); m.Error != wire.CodeRateLimited {
		t.Fatalf("got %+v, want rate_limited", m)
	}
	if ce := expectClosed(t, ws); ce.Text != wire.CodeRateLimited {
		t.Fatalf("closed with %q", ce.Text)
	}
	if pongs > 5 {
		t.Fatalf("%d pongs, want at most the burst of 5", pongs)
	}
}

// TestUsersAndPresenceChanges: Users lists who is online, and OnUsersChanged fires when a user's first tab
// authenticates and when their last one closes, not for the tabs in between (a cluster publishes presence then).
func TestUsersAndPresenceChanges(t *testing.T) {
	changed := make(chan struct{}, 16)
	e := newEnv(t, func(o *ServerOptions) { o.OnUsersChanged = func() { changed <- struct{}{} } })
	count := func() int {
		n := 0
		for {
			select {
			case <-changed:
				n++
			case <-time.After(200 * time.Millisecond):
				return n
			}
		}
	}
	a1 := e.authedRaw("alice")
	a2 := e.authedRaw("alice")
	if n := count(); n != 1 {
		t.Fatalf("two tabs of alice: %d changes, want 1", n)
	}
	if u := e.srv.Users(); len(u) != 1 || u[0] != "alice" {
		t.Fatalf("Users() = %v", u)
	}
	for i, ws := range []*websocket.Conn{a1, a2} {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		<-e.h.closed
		want := 0
		if i == 1 {
			want = 1
		}
		if n := count(); n != want {
			t.Fatalf("after tab %d closed: %d changes, want %d", i+1, n, want)
		}
	}
	if u := e.srv.Users(); len(u) != 0 {
		t.Fatalf("Users() after both closed = %v", u)
	}
}
