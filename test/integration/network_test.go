//go:build integration

package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// networkEnv is one Asterisk, one coturn on loopback and one Patchbay handing out coturn credentials.
type networkEnv struct {
	ast  *testenv.Asterisk
	turn *testenv.Coturn
	pb   *testenv.Patchbay
}

type networkOptions struct {
	grace time.Duration // signalling.resume_grace; 0: the default
	turn  bool          // start coturn and configure turn.*
	edit  func(*config.Config)
}

func newNetworkEnv(t *testing.T, o networkOptions) *networkEnv {
	t.Helper()
	e := &networkEnv{ast: testenv.StartAsterisk(t, testenv.AsteriskOptions{})}
	if o.turn {
		e.turn = testenv.StartCoturn(t, testenv.CoturnOptions{CertDir: e.ast.CertDir})
	}
	e.pb = testenv.StartPatchbay(t, e.ast, testenv.PatchbayOptions{Config: func(c *config.Config) {
		if o.grace > 0 {
			c.Signalling.ResumeGrace = o.grace
		}
		if e.turn != nil {
			c.TURN.URLs = e.turn.URLs("127.0.0.1")
			c.TURN.Secret = config.Secret(e.turn.Secret)
		}
		if o.edit != nil {
			o.edit(c)
		}
	}})
	return e
}

// resumable is a synth.Signaller whose WebSocket can be dropped and resumed under a running call.
type resumable struct {
	t     *testing.T
	pb    *testenv.Patchbay
	token string

	mu      sync.Mutex
	cur     *signal.Conn
	swapped chan struct{} // closed when cur is replaced
}

func newResumable(t *testing.T, ctx context.Context, pb *testenv.Patchbay, user string) *resumable {
	r := &resumable{t: t, pb: pb, token: pb.Token(t, user, "ext"), swapped: make(chan struct{})}
	c, err := signal.Dial(ctx, pb.URL, r.token, signal.DialOptions{TLSConfig: pb.TLS})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r.cur = c
	t.Cleanup(func() { r.conn().Close() })
	return r
}

func (r *resumable) conn() *signal.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

func (r *resumable) Send(ctx context.Context, m signal.Message) error { return r.conn().Send(ctx, m) }

// Recv reads from the current connection; a read that fails because the connection was swapped goes on with the
// next one.
func (r *resumable) Recv(ctx context.Context) (signal.Message, error) {
	for {
		r.mu.Lock()
		c, sw := r.cur, r.swapped
		r.mu.Unlock()
		m, err := c.Recv(ctx)
		if err == nil {
			return m, nil
		}
		select {
		case <-sw:
			continue
		case <-ctx.Done():
			return signal.Message{}, err
		case <-time.After(30 * time.Second):
			return signal.Message{}, err
		}
	}
}

// drop kills the socket without a close frame, as a network failure does.
func (r *resumable) drop() signal.Message {
	c := r.conn()
	authed := c.Authed()
	c.Abort()
	return authed
}

// resume opens a new socket with the resume token of the dropped one.
func (r *resumable) resume(ctx context.Context, token string) signal.Message {
	c, err := signal.Dial(ctx, r.pb.URL, r.token, signal.DialOptions{TLSConfig: r.pb.TLS, Resume: token})
	if err != nil {
		r.t.Fatalf("resume: %v", err)
	}
	r.mu.Lock()
	r.cur = c
	close(r.swapped)
	r.swapped = make(chan struct{})
	r.mu.Unlock()
	return c.Authed()
}

// TestNetworkResume: a WebSocket killed mid-call and reopened with the resume token within the grace gets its call
// back, and media never stopped; after the grace the call ends (signalling_lost) and a resume gives nothing back.
func TestNetworkResume(t *testing.T) {
	testenv.Sensitive(t) // it times media gaps (< 300 ms): not beside a lane's three-browser room
	e := newNetworkEnv(t, networkOptions{grace: 3 * time.Second})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("within grace", func(t *testing.T) {
		r := newResumable(t, ctx, e.pb, "alice")
		type result struct {
			rep *synth.Report
			err error
		}
		done := make(chan result, 1)
		go func() {
			rep, err := eng.Call(ctx, r, synth.CallOptions{CallID: "resume-1", To: "601", ToneHz: 1000, ExpectHz: 440, Duration: 6 * time.Second})
			done <- result{rep, err}
		}()
		time.Sleep(2 * time.Second)
		authed := r.drop()
		time.Sleep(time.Second) // the server sees the drop; the call is held
		if n := e.pb.Server.ActiveCalls(); n != 1 {
			t.Fatalf("%d active calls while held, want 1", n)
		}
		back := r.resume(ctx, authed.ResumeToken)
		if len(back.Resumed) != 1 || back.Resumed[0] != "resume-1" {
			t.Fatalf("authed after resume: resumed %v, want [resume-1]", back.Resumed)
		}
		res := <-done
		if res.err != nil {
			t.Fatalf("call across the resume: %v", res.err)
		}
		t.Logf("heard %+v, gaps %v", res.rep.Heard, res.rep.Gaps)
		if !res.rep.Heard.Detected(10) {
			t.Errorf("tone not heard across the resume: %+v", res.rep.Heard)
		}
		if g := res.rep.MaxGap(); g > 300*time.Millisecond {
			t.Errorf("media paused %v while signalling was away; it must not depend on the socket", g)
		}
		waitActive(t, e.pb, 0, 5*time.Second)
	})

	t.Run("after grace", func(t *testing.T) {
		r := newResumable(t, ctx, e.pb, "bob")
		cctx, ccancel := context.WithCancel(ctx)
		defer ccancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = eng.Call(cctx, r, synth.CallOptions{CallID: "lost-1", To: "601", Duration: -1})
		}()
		waitActive(t, e.pb, 1, 10*time.Second)
		time.Sleep(time.Second)
		authed := r.drop()
		time.Sleep(2 * time.Second)
		if n := e.pb.Server.ActiveCalls(); n != 1 {
			t.Fatalf("call not held within the grace: %d active", n)
		}
		waitActive(t, e.pb, 0, 4*time.Second) // grace 3 s from the drop
		back := r.resume(ctx, authed.ResumeToken)
		if len(back.Resumed) != 0 {
			t.Fatalf("resumed %v after the grace", back.Resumed)
		}
		ccancel()
		<-done
	})
}

func waitActive(t *testing.T, pb *testenv.Patchbay, want int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for pb.Server.ActiveCalls() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d active calls after %v, want %d", pb.Server.ActiveCalls(), d, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNetworkPaths: a client that cannot use UDP at all still calls over ICE-TCP straight to Patchbay, and over
// TURN/TCP through coturn; a relay-only client calls through TURN/UDP. Each hears extension 601's 440 Hz tone.
func TestNetworkPaths(t *testing.T) {
	e := newNetworkEnv(t, networkOptions{turn: true})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn := e.pb.Dial(t, ctx, "alice", "ext")
	var turnUDP, turnTCP []webrtc.ICEServer
	for _, s := range conn.Authed().ICEServers {
		for _, u := range s.URLs {
			is := webrtc.ICEServer{URLs: []string{u}, Username: s.Username, Credential: s.Credential}
			switch {
			case len(u) > 5 && u[:5] == "turn:" && contains(u, "transport=udp"):
				turnUDP = append(turnUDP, is)
			case len(u) > 5 && u[:5] == "turn:" && contains(u, "transport=tcp"):
				turnTCP = append(turnTCP, is)
			}
		}
	}
	if len(turnUDP) == 0 || len(turnTCP) == 0 {
		t.Fatalf("authed.ice_servers %+v lacks TURN UDP and TCP", conn.Authed().ICEServers)
	}
	for _, tc := range []struct {
		name string
		opts synth.EngineOptions
	}{
		{"ICE-TCP direct", synth.EngineOptions{LoopbackOnly: true, NetworkTypes: []webrtc.NetworkType{webrtc.NetworkTypeTCP4}}},
		// pion publishes relay candidates only with a UDP network type (the relayed address is UDP); with
		// relay-only and a transport=tcp URL it talks nothing but TCP to coturn, as behind a UDP-blocking firewall.
		{"TURN TCP", synth.EngineOptions{LoopbackOnly: true, RelayOnly: true, ICEServers: turnTCP}},
		{"TURN UDP", synth.EngineOptions{LoopbackOnly: true, RelayOnly: true, ICEServers: turnUDP}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.turn.Allocations()
			eng, err := synth.NewEngine(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := eng.Call(ctx, conn, synth.CallOptions{To: "601", ToneHz: 1000, ExpectHz: 440, Duration: 3 * time.Second})
			if err != nil {
				t.Fatalf("call 601: %v", err)
			}
			t.Logf("connected after %v, heard %+v", rep.ConnectedAfter, rep.Heard)
			if !rep.Heard.Detected(10) {
				t.Errorf("did not hear 601's tone: %+v", rep.Heard)
			}
			if tc.opts.RelayOnly && e.turn.Allocations() == before {
				t.Errorf("no TURN allocation in coturn's log: the call did not go through the relay")
			}
			waitActive(t, e.pb, 0, 5*time.Second)
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
