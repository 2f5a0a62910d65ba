//go:build integration

package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
	"go.uber.org/goleak"
)

// browserCallEnv is one Asterisk, one Patchbay and a synthetic-caller engine.
type browserCallEnv struct {
	ast *testenv.Asterisk
	pb  *testenv.Patchbay
	eng *synth.Engine
	ari *ari.Client
}

func newBrowserCallEnv(t *testing.T) *browserCallEnv {
	t.Helper()
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	// A second ARI client, on another app name, to look at what Patchbay left behind.
	inspect, err := ari.New(ari.Config{URL: a.ARIURL(), Username: a.ARIUser, Password: a.ARIPassword, Application: "inspector"})
	if err != nil {
		t.Fatal(err)
	}
	return &browserCallEnv{ast: a, pb: pb, eng: eng, ari: inspect}
}

// assertClean fails if Asterisk still has channels or bridges, or Patchbay still has calls, a few seconds on.
func (e *browserCallEnv) assertClean(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var chans []ari.Channel
	var bridges []ari.Bridge
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		chans, err = e.ari.Channels().List(ctx)
		if err != nil {
			t.Fatalf("list channels: %v", err)
		}
		bridges, err = e.ari.Bridges().List(ctx)
		if err != nil {
			t.Fatalf("list bridges: %v", err)
		}
		if len(chans) == 0 && len(bridges) == 0 && e.pb.Server.ActiveCalls() == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var names []string
	for _, c := range chans {
		names = append(names, c.Name)
	}
	t.Fatalf("left behind: channels %v, %d bridges, %d active calls", names, len(bridges), e.pb.Server.ActiveCalls())
}

func TestBrowserCallsEchoAndHearsItself(t *testing.T) {
	e := newBrowserCallEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := e.pb.Dial(t, ctx, "alice", "ext")
	// Warm up once (pion and the HTTP client start pools lazily), then count: the measured call must leave no
	// goroutine behind in Patchbay, the relay or the synthetic caller.
	if _, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "600", Duration: 500 * time.Millisecond}); err != nil {
		t.Fatalf("warm-up call: %v", err)
	}
	e.assertClean(t)
	baseline := goroutineBaseline()
	rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "600", ToneHz: 1000, Duration: 3 * time.Second})
	if err != nil {
		t.Fatalf("call 600: %v", err)
	}
	t.Logf("answer after %v, first echo after %v, sent %d received %d loss %.3f, RTT p50 %v p99 %v, heard %+v",
		rep.AnswerAfter, rep.FirstEchoAfter, rep.Sent, rep.Received, rep.Loss, rep.RTT.P50, rep.RTT.P99, rep.Heard)
	if !rep.Heard.Detected(10) {
		t.Errorf("did not hear own 1000 Hz tone back through Echo: %+v", rep.Heard)
	}
	if rep.RTT.Count == 0 {
		t.Errorf("no echoed packet matched what was sent: G.711 was not carried bit-exact")
	}
	if _, ok := rep.Event(signal.TypeAnswered); !ok {
		t.Errorf("no 'answered' event; events: %+v", rep.Events)
	}
	e.assertClean(t)
	assertGoroutinesBack(t, baseline)
}

// goroutineBaseline is what runs before a call: the stack's own goroutines, which the call must leave as it found.
func goroutineBaseline() goleak.Option { return goleak.IgnoreCurrent() }

// assertGoroutinesBack fails, with the stacks, if goroutines beyond baseline are left 10 s after the calls ended (a
// loaded host may take that long to tear them down). An idle keep-alive connection to ARI's HTTP server, and the
// loops of an events socket the ARI client reconnected meanwhile (a loaded host may miss a canary), are the
// client's, not a call's.
func assertGoroutinesBack(t *testing.T, baseline goleak.Option) {
	t.Helper()
	var leak error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		leak = goleak.Find(baseline,
			goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreAnyFunction("github.com/patchbay/patchbay/ari.(*Client).readLoop"),
			goleak.IgnoreAnyFunction("github.com/patchbay/patchbay/ari.(*Client).readLoop.func2"),
			goleak.IgnoreAnyFunction("github.com/patchbay/patchbay/ari.(*Client).appCheckLoop"),
			goleak.IgnoreAnyFunction("github.com/patchbay/patchbay/ari.(*Client).sweepLoop"))
		if leak == nil || time.Now().After(deadline) {
			break
		}
	}
	if leak != nil {
		t.Fatalf("goroutines left by the calls: %v", leak)
	}
}

func TestBrowserCallsToneExtension(t *testing.T) {
	e := newBrowserCallEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := e.pb.Dial(t, ctx, "alice", "ext")
	rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "601", ToneHz: 1000, ExpectHz: 440, Duration: 3 * time.Second})
	if err != nil {
		t.Fatalf("call 601: %v", err)
	}
	if !rep.Heard.Detected(10) {
		t.Errorf("did not hear the 440 Hz tone of extension 601: %+v", rep.Heard)
	}
	e.assertClean(t)
}

func TestBrowserDTMFReachesRead(t *testing.T) {
	e := newBrowserCallEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := e.pb.Dial(t, ctx, "alice", "ext")
	_, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "602", DTMF: "4721", DTMFAfter: time.Second, Duration: 6 * time.Second})
	if err != nil && !strings.Contains(err.Error(), "hang") {
		t.Logf("call 602 ended with: %v", err)
	}
	got, err := e.ari.Asterisk().Variable(ctx, "LAST_DTMF_READ")
	if err != nil {
		t.Fatalf("read LAST_DTMF_READ: %v", err)
	}
	if got != "4721" {
		t.Errorf("Read() got %q, want 4721", got)
	}
	e.assertClean(t)
}

func TestHostileCallsAreRefusedAndServerKeepsServing(t *testing.T) {
	e := newBrowserCallEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := e.pb.Dial(t, ctx, "mallory", "ext")
	offerless := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
	opusOnly := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n" +
		"a=rtpmap:111 opus/48000/2\r\na=mid:0\r\na=sendrecv\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
		"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\n"
	ilbcOnly := strings.ReplaceAll(strings.ReplaceAll(opusOnly, " 111\r\n", " 97\r\n"), "a=rtpmap:111 opus/48000/2", "a=rtpmap:97 iLBC/8000")
	for i, tc := range []struct {
		name, to, sdp, want string
	}{
		{"injection", "100&PJSIP/carrier/900", opusOnly, wire.CodeInvalidNumber},
		{"context escape", "600@internal", opusOnly, wire.CodeInvalidNumber},
		{"variable", "${EXTEN}", opusOnly, wire.CodeInvalidNumber},
		{"pstn not granted", "+441234567890", opusOnly, wire.CodeForbiddenDestination},
		{"no audio", "600", offerless, ""},
		// Opus-only offers are carried (Asterisk transcodes toward narrowband), so the
		// unusable offer is one whose only codec Patchbay cannot carry.
		{"no usable codec", "600", ilbcOnly, wire.CodeUnsupportedMedia},
	} {
		id := "hostile-" + string(rune('a'+i))
		if err := conn.Send(ctx, signal.Message{Type: signal.TypeCall, CallID: id, To: tc.to, SDP: tc.sdp}); err != nil {
			t.Fatalf("%s: send: %v", tc.name, err)
		}
		m := recvType(t, ctx, conn, signal.TypeError)
		if tc.want != "" && m.Error != tc.want {
			t.Errorf("%s: error %q (%s), want %q", tc.name, m.Error, m.Message, tc.want)
		}
		if tc.want == "" && m.Error == "" {
			t.Errorf("%s: no error code", tc.name)
		}
	}
	// No ARI resource was made for any of them, and a good call still works on the same connection.
	e.assertClean(t)
	rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "600", Duration: 2 * time.Second})
	if err != nil || !rep.Heard.Detected(5) {
		t.Fatalf("good call after hostile ones: err %v heard %+v", err, rep.Heard)
	}
	e.assertClean(t)
}

func recvType(t *testing.T, ctx context.Context, c *signal.Conn, typ string) signal.Message {
	t.Helper()
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if m.Type == typ {
			return m
		}
	}
}

// TestBrowserTokenExpiryEndsCall: a browser whose token runs out in mid-call keeps its call until exp plus the
// verifier's leeway, is then told token_expired and its socket is closed, and the call leaves nothing behind in
// Asterisk or Patchbay. (That such a session's calls are not held for a resume is TestTokenExpiryClosesSession's.)
func TestBrowserTokenExpiryEndsCall(t *testing.T) {
	e := newBrowserCallEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	claims := auth.Claims{Name: "alice", Dial: []string{"ext"}}
	claims.Subject = "alice"
	const ttl = 3 * time.Second
	tok, err := e.pb.Server.Signer().Mint(claims, ttl)
	if err != nil {
		t.Fatal(err)
	}
	minted := time.Now()
	conn, err := signal.Dial(ctx, e.pb.URL, tok, signal.DialOptions{TLSConfig: e.pb.TLS})
	if err != nil {
		t.Fatalf("signal dial: %v", err)
	}
	defer conn.Close()
	inCall := make(chan int, 1)
	rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "600", Duration: 45 * time.Second,
		OnConnected: func(string) {
			chans, err := e.ari.Channels().List(ctx)
			if err != nil {
				t.Errorf("list channels: %v", err)
			}
			inCall <- len(chans)
		}})
	ended := time.Since(minted)
	t.Logf("call ended %v after the token was minted (ttl %v, leeway %v): %v", ended, ttl, auth.Leeway, err)
	select {
	case n := <-inCall:
		if n == 0 {
			t.Fatal("no Asterisk channel while the call was up")
		}
	default:
		t.Fatalf("the call never connected: %v", err)
	}
	if err == nil {
		t.Fatalf("the call ended without the socket closing; events %+v", rep.Events)
	}
	if ev, ok := rep.Event(signal.TypeError); !ok || ev.Error != wire.CodeTokenExpired {
		t.Errorf("got error event %+v, want %s", ev, wire.CodeTokenExpired)
	}
	// exp has one-second resolution; the session lives exp + the verifier's leeway.
	if lo, hi := ttl+auth.Leeway-time.Second, ttl+auth.Leeway+5*time.Second; ended < lo || ended > hi {
		t.Errorf("socket closed %v after minting, want between %v and %v", ended, lo, hi)
	}
	if !rep.Heard.Detected(5) {
		t.Errorf("did not hear the echo before expiry: %+v", rep.Heard)
	}
	e.assertClean(t)
}

// TestBrowserPresentsItsIdentity: what the dialplan and a phone see of a browser calling them is the token's
// identity, its first caller ID and its name: on the browser's own channel running the echo extension (600), and
// in the From of the INVITE that rings a phone (101).
func TestBrowserPresentsItsIdentity(t *testing.T) {
	e := newBrowserCallEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const num, name = "+442071230042", "Alice Presented"
	cl := auth.Claims{Name: name, Dial: []string{"ext"}, CallerIDs: []string{num}}
	cl.Subject = "alice"
	tok, err := e.pb.Server.Signer().Mint(cl, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := signal.Dial(ctx, e.pb.URL, tok, signal.DialOptions{TLSConfig: e.pb.TLS})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	t.Run("600", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			_, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "600", Duration: 4 * time.Second})
			done <- err
		}()
		// The browser's channel (UnicastRTP) running Echo: CALLERID(num) in `core show channels concise`.
		var line, out string
		for deadline := time.Now().Add(10 * time.Second); line == "" && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			out, err = e.ast.CLI(ctx, "core show channels concise")
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "UnicastRTP/") && strings.Contains(l, "!Echo!") {
					line = l
				}
			}
		}
		if line == "" {
			t.Fatalf("no UnicastRTP channel running Echo:\n%s", out)
		}
		if f := strings.Split(line, "!"); len(f) < 8 || f[7] != num {
			t.Errorf("the dialplan sees caller ID %q, want %s (%s)", f[min(7, len(f)-1)], num, line)
		}
		show, err := e.ast.CLI(ctx, "core show channel "+strings.Split(line, "!")[0])
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(show, "Caller ID Name: "+name) {
			t.Errorf("the dialplan does not see the caller's name %q:\n%s", name, show)
		}
		if err := <-done; err != nil {
			t.Fatalf("call 600: %v", err)
		}
	})

	t.Run("101", func(t *testing.T) {
		phone := testenv.StartBaresip(t, testenv.BaresipOptions{User: "101", Password: e.ast.Phone(t, "101").Password,
			AutoAnswer: true, Registrar: fmt.Sprintf("127.0.0.1:%d", e.ast.SIPPort)})
		if err := phone.WaitRegistered(ctx); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "101", Duration: 2 * time.Second})
			done <- err
		}()
		ev, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED") // auto-answered: no CALL_INCOMING; peeruri is the From
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ev.PeerURI, "sip:"+num+"@") {
			t.Errorf("the phone is rung from %q, want the caller ID %s", ev.PeerURI, num)
		}
		if err := <-done; err != nil {
			t.Fatalf("call 101: %v", err)
		}
	})
	e.assertClean(t)
}
