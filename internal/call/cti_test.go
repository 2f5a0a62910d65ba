package call

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/ari/aritest"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/recording"
	"github.com/patchbay/patchbay/internal/relay"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Unit tests of the contact-center paths of call control against the stateful ARI fake (ari/aritest), with real
// signalling, real WebRTC (the synthetic caller) and a real relay. Each checks that what a failed step leaves behind
// is nothing: no channel or bridge in Asterisk, no claim, no call, no goroutine.

type ctiHarness struct {
	t      *testing.T
	s      *aritest.Server
	a      *ari.Client
	m      *Manager
	eng    *synth.Engine
	signer *auth.Signer
	wsURL  string
	rec    *recording.Recorder
	ctx    context.Context
	seenUp int // answered calls seen by waitUp so far
}

func newCTIHarness(t *testing.T, edit func(*Options)) *ctiHarness {
	t.Helper()
	// Registered first, so it runs last: after every part below has stopped.
	t.Cleanup(func() {
		goleak.VerifyNone(t, goleak.IgnoreCurrent())
	})
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("PATCHBAY_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := aritest.New(t, aritest.WithEchoMedia())
	cfg := s.Config()
	cfg.Logger = log
	cfg.SweepInterval = -1 // the sweep would clean up what these tests check was never left
	// A slow -race run must not take a late pong for a dead Asterisk (the fake drops a lost app's channels).
	cfg.PingInterval, cfg.DeadAfter = 2*time.Second, 30*time.Second
	a, err := ari.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ariDone := make(chan struct{})
	go func() {
		defer close(ariDone)
		_ = a.Run(ctx)
	}()
	if err := a.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	api, err := media.NewAPI(media.Options{ICEAddress: "127.0.0.1", IncludeLoopback: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	base := 52000 + rand.IntN(100)*50
	ports, err := relay.NewPorts("127.0.0.1", base, base+49, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	router, err := dialplan.NewRouter(dialplan.DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	phones, _ := dialplan.CompilePatterns([]string{"_1XX"})
	recDir := t.TempDir()
	rec, err := recording.New(recording.Options{ARI: a, Dir: recDir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{ARI: a, Media: api, Ports: ports, Router: router, Logger: log, EndpointExtensions: phones,
		SetupTimeout: 2 * time.Second, CloseTimeout: 2 * time.Second, NoMediaTimeout: 15 * time.Second,
		CTI: CTIOptions{Recorder: rec}}
	if edit != nil {
		edit(&o)
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	mDone := make(chan struct{})
	go func() {
		defer close(mDone)
		_ = m.Run(ctx)
	}()
	for m.runCtx() == canceledCtx { // Run has not taken its context yet
		time.Sleep(time.Millisecond)
	}
	signer, err := auth.NewSigner([]byte("0123456789abcdef0123456789abcdef-cti-test"), "patchbay")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := signal.NewServer(signal.ServerOptions{Verifier: signer, Handler: m, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	m.SetDirectory(srv)
	ts := httptest.NewServer(srv)
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Close()
		ts.Close()
		cancel()
		<-mDone
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		rec.Close(cctx)
		ccancel()
		<-ariDone
		_ = ports.Close()
		_ = api.Close()
	})
	return &ctiHarness{t: t, s: s, a: a, m: m, eng: eng, signer: signer, wsURL: "ws" + strings.TrimPrefix(ts.URL, "http") + "/", rec: rec, ctx: ctx}
}

// conn signs a browser in.
func (h *ctiHarness) conn(user, role string, grants ...string) *signal.Conn {
	h.t.Helper()
	cl := auth.Claims{Name: user, Role: role, Dial: grants}
	cl.Subject = user
	tok, err := h.signer.Mint(cl, time.Hour)
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := signal.Dial(h.ctx, h.wsURL, tok, signal.DialOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

type result struct {
	rep *synth.Report
	err error
}

// call places a browser call that runs until ctx ends or the server hangs up.
func (h *ctiHarness) call(ctx context.Context, sig synth.Signaller, id, to string) (connected chan string, done chan result) {
	connected, done = make(chan string, 1), make(chan result, 1)
	go func() {
		rep, err := h.eng.Call(ctx, sig, synth.CallOptions{CallID: id, To: to, Duration: -1, OnConnected: func(id string) { connected <- id }})
		done <- result{rep, err}
	}()
	return connected, done
}

func (h *ctiHarness) waitUp(connected chan string, done chan result) {
	h.t.Helper()
	select {
	case <-connected:
	case r := <-done:
		h.t.Fatalf("call ended before it connected: %v", r.err)
	case <-time.After(10 * time.Second):
		h.t.Fatal("call did not connect")
	}
	// The far end is dialled once browser media flows, and answers at once: wait until call control knows.
	h.waitFor("the far end answered", func() bool { return h.answeredCalls() > h.seenUp })
	h.seenUp++
}

// answeredCalls counts the live calls whose far end has answered, as call control publishes them.
func (h *ctiHarness) answeredCalls() int {
	n := 0
	for _, c := range h.m.LiveCalls() {
		if !c.Answered.IsZero() {
			n++
		}
	}
	return n
}

// result waits (bounded) for a browser call's end.
func (h *ctiHarness) result(done chan result) result {
	h.t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		h.t.Fatal("the browser's call did not end")
	}
	return result{}
}

func (h *ctiHarness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second) // generous: -race on a shared 2-core host is slow
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertNothingLeft: no call, no channel or bridge in Asterisk, and no claim on any ID a request named.
func (h *ctiHarness) assertNothingLeft() {
	h.t.Helper()
	h.waitFor("no calls", func() bool { return h.m.Active() == 0 })
	h.s.AssertClean(h.t)
	for _, r := range h.s.Requests() {
		var ids []string
		for _, k := range []string{"channelId", "otherChannelId", "bridgeId", "snoopId"} {
			ids = append(ids, r.Query.Get(k))
		}
		if segs := strings.Split(strings.Trim(r.Path, "/"), "/"); len(segs) >= 2 && (segs[0] == "channels" || segs[0] == "bridges") {
			ids = append(ids, segs[1])
		}
		for _, id := range ids {
			if id != "" && h.a.Claimed(id) {
				h.t.Errorf("%s is still claimed after every call ended", id)
			}
		}
	}
}

// eventTypes lists the call's events that matter here (not the answer SDP, candidates or the final hangup).
func eventTypes(rep *synth.Report) []string {
	var out []string
	for _, e := range rep.Events {
		switch e.Type {
		case signal.TypeAnswer, signal.TypeHangup, signal.TypeRinging, signal.TypeQuality:
			continue
		}
		out = append(out, e.Type+"/"+e.By)
	}
	return out
}

// TestBlindTransferSetupFailureLeavesNothing: the transfer call fails at each of its steps in Asterisk; the
// browser's call has already ended (transferred), the transferee is hung up, and nothing is left.
func TestBlindTransferSetupFailureLeavesNothing(t *testing.T) {
	for _, step := range []struct{ name, method, path string }{
		{"bridge", "POST", "/bridges"},
		{"move the transferee", "POST", "/bridges/*/addChannel"},
		{"create the new leg", "POST", "/channels/create"},
		{"dial it", "POST", "/channels/*/dial"},
		{"it is busy", "", ""},
	} {
		t.Run(step.name, func(t *testing.T) {
			h := newCTIHarness(t, nil)
			conn := h.conn("alice", "agent", "ext")
			connected, done := h.call(h.ctx, conn, "c1", "102")
			h.waitUp(connected, done)
			if step.method != "" {
				h.s.FailNext(step.method, step.path, 500)
			} else {
				h.s.Endpoint("PJSIP/101", aritest.Busy())
			}
			if err := conn.Send(h.ctx, signal.Message{Type: signal.TypeTransfer, CallID: "c1", To: "101"}); err != nil {
				t.Fatal(err)
			}
			r := h.result(done)
			if r.err != nil || strings.Join(eventTypes(r.rep), " ") != "answered/ transferred/you" || r.rep.HungUpBy != "remote" {
				t.Errorf("browser: %v, events %v, hung up by %s", r.err, eventTypes(r.rep), r.rep.HungUpBy)
			}
			h.assertNothingLeft()
		})
	}
}

// TestBlindTransferHandsTheFarPartyOn: the transferee moves to the transfer call's bridge with the new party, and
// stays claimed by exactly that call; it ends when either side hangs up.
func TestBlindTransferHandsTheFarPartyOn(t *testing.T) {
	h := newCTIHarness(t, nil)
	conn := h.conn("alice", "agent", "ext")
	connected, done := h.call(h.ctx, conn, "c1", "102")
	h.waitUp(connected, done)
	var transferee string
	for _, ch := range h.s.Channels() {
		if strings.HasPrefix(ch.Name, "PJSIP/102") {
			transferee = ch.ID
		}
	}
	if err := conn.Send(h.ctx, signal.Message{Type: signal.TypeTransfer, CallID: "c1", To: "101"}); err != nil {
		t.Fatal(err)
	}
	h.result(done)
	h.waitFor("the transferee bridged with 101", func() bool {
		bs := h.s.Bridges()
		if len(bs) != 1 || len(bs[0].Channels) != 2 {
			return false
		}
		ch, ok := h.s.Channel(bs[0].Channels[0])
		ch2, _ := h.s.Channel(bs[0].Channels[1])
		return ok && (ch.ID == transferee || ch2.ID == transferee)
	})
	h.waitFor("the browser's call closed", func() bool { return h.m.Active() == 1 })
	if !h.a.Claimed(transferee) || h.m.Active() != 1 {
		t.Errorf("transferee claimed %v, %d calls; want claimed by the one transfer call", h.a.Claimed(transferee), h.m.Active())
	}
	if err := h.s.HangupFromFar(transferee, 16); err != nil {
		t.Fatal(err)
	}
	h.assertNothingLeft()
}

// h101Call is an agent's answered call "c1" to phone 101, with the phone's channel ID; hangup ends it.
func h101Call(t *testing.T) (h *ctiHarness, conn *signal.Conn, far string, hangup context.CancelFunc, done chan result) {
	h = newCTIHarness(t, nil)
	conn = h.conn("alice", "agent", "ext")
	ctx, hangup := context.WithCancel(h.ctx)
	connected, done := h.call(ctx, conn, "c1", "101")
	h.waitUp(connected, done)
	for _, ch := range h.s.Channels() {
		if strings.HasPrefix(ch.Name, "PJSIP/101") {
			far = ch.ID
		}
	}
	return h, conn, far, hangup, done
}

// TestHoldBothWays: the browser's hold holds the far channel and mutes its own; the far party's hold key reaches
// the browser as held/resumed by "far".
func TestHoldBothWays(t *testing.T) {
	h, conn, far, hangup, done := h101Call(t)
	defer hangup()
	for _, typ := range []string{signal.TypeHold, signal.TypeHold, signal.TypeResume} {
		if err := conn.Send(h.ctx, signal.Message{Type: typ, CallID: "c1"}); err != nil {
			t.Fatal(err)
		}
	}
	h.waitFor("hold and unhold requests", func() bool {
		return h.s.Count("POST", "/channels/"+far+"/hold") == 1 && h.s.Count("DELETE", "/channels/"+far+"/hold") == 1 &&
			h.s.Count("POST", "/channels/*/mute") == 1 && h.s.Count("DELETE", "/channels/*/mute") == 1
	})
	if err := h.s.HoldFromFar(far, true); err != nil {
		t.Fatal(err)
	}
	h.waitFor("music toward the browser", func() bool { return h.s.Count("POST", "/channels/*/moh") == 1 })
	if err := h.s.HoldFromFar(far, false); err != nil {
		t.Fatal(err)
	}
	h.waitFor("music stopped", func() bool { return h.s.Count("DELETE", "/channels/*/moh") >= 1 })
	// Each stop goes again twice (Asterisk can lose one, hold.go), and no more.
	h.waitFor("stops repeated", func() bool {
		return h.s.Count("DELETE", "/channels/*/moh") == 1+stopRepeats && h.s.Count("DELETE", "/channels/"+far+"/hold") == 1+stopRepeats
	})
	time.Sleep(2 * stopAgainAfter)
	if n, m := h.s.Count("DELETE", "/channels/*/moh"), h.s.Count("DELETE", "/channels/"+far+"/hold"); n != 1+stopRepeats || m != 1+stopRepeats {
		t.Errorf("music stopped %d times, far party unheld %d times; want %d each", n, m, 1+stopRepeats)
	}
	hangup()
	r := h.result(done)
	got := strings.Join(eventTypes(r.rep), " ")
	if got != "answered/ held/you held/you resumed/you held/far resumed/far" { // a second hold is answered, not repeated
		t.Errorf("browser events %q", got)
	}
	h.assertNothingLeft()
}

// TestRepeatedStopYieldsToANewHold: a stop sent again must not undo a hold that came after it, the far party's
// (music toward the browser) or the browser's (the far party held).
func TestRepeatedStopYieldsToANewHold(t *testing.T) {
	h, conn, far, hangup, done := h101Call(t)
	defer hangup()
	// The phone holds, resumes and holds again at once: the music stopped once, and started again.
	for _, on := range []bool{true, false, true} {
		if err := h.s.HoldFromFar(far, on); err != nil {
			t.Fatal(err)
		}
	}
	h.waitFor("music on, off, on", func() bool { return h.s.Count("POST", "/channels/*/moh") == 2 })
	time.Sleep(3 * stopAgainAfter)
	if n := h.s.Count("DELETE", "/channels/*/moh"); n != 1 {
		t.Errorf("music stopped %d times while the phone holds again; want 1", n)
	}
	if err := h.s.HoldFromFar(far, false); err != nil {
		t.Fatal(err)
	}
	h.waitFor("music stopped for good", func() bool { return h.s.Count("DELETE", "/channels/*/moh") == 2+stopRepeats })

	// The browser holds, resumes and holds again: the far party unheld once.
	for _, typ := range []string{signal.TypeHold, signal.TypeResume, signal.TypeHold} {
		if err := conn.Send(h.ctx, signal.Message{Type: typ, CallID: "c1"}); err != nil {
			t.Fatal(err)
		}
	}
	h.waitFor("hold, unhold, hold", func() bool { return h.s.Count("POST", "/channels/"+far+"/hold") == 2 })
	time.Sleep(3 * stopAgainAfter)
	if n := h.s.Count("DELETE", "/channels/"+far+"/hold"); n != 1 {
		t.Errorf("far party unheld %d times while the browser holds again; want 1", n)
	}
	hangup()
	h.result(done)
	h.assertNothingLeft()
}

// TestAttendedTransferJoinsTheConsultCall: the consult call gives its far party to the transfer call; both browser
// calls end; the two far parties are bridged by the one transfer call.
func TestAttendedTransferJoinsTheConsultCall(t *testing.T) {
	h := newCTIHarness(t, nil)
	conn := h.conn("alice", "agent", "ext")
	mux := newMux(h.ctx, conn)
	c1, d1 := h.call(h.ctx, mux.view("a"), "a", "101")
	h.waitUp(c1, d1)
	c2, d2 := h.call(h.ctx, mux.view("b"), "b", "102")
	h.waitUp(c2, d2)
	if err := conn.Send(h.ctx, signal.Message{Type: signal.TypeTransfer, CallID: "a", Target: "b"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []chan result{d1, d2} {
		r := h.result(d)
		if ev := eventTypes(r.rep); len(ev) == 0 || ev[len(ev)-1] != "transferred/you" || r.rep.HungUpBy != "remote" {
			t.Errorf("browser call %s: %v, hung up by %s (%v)", r.rep.CallID, ev, r.rep.HungUpBy, r.err)
		}
	}
	var phones []string
	h.waitFor("the phones joined", func() bool {
		bs := h.s.Bridges()
		if len(bs) != 1 || len(bs[0].Channels) != 2 {
			return false
		}
		phones = bs[0].Channels
		return true
	})
	h.waitFor("the transfer call alone", func() bool { return h.m.Active() == 1 })
	if err := h.s.HangupFromFar(phones[0], 16); err != nil {
		t.Fatal(err)
	}
	h.assertNothingLeft()
}

// TestAttendedTransferGivesUpCleanly: the consult call is busy (an ARI request of its own) past the transfer's wait.
// The transfer is refused, and the consult call, when free again, does not hand its far party to a transfer call
// that nobody runs: both calls go on, and end cleanly.
func TestAttendedTransferGivesUpCleanly(t *testing.T) {
	old := ctiTimeout
	ctiTimeout = 300 * time.Millisecond
	t.Cleanup(func() { ctiTimeout = old })
	h := newCTIHarness(t, nil)
	conn := h.conn("alice", "agent", "ext")
	mux := newMux(h.ctx, conn)
	ctx, hangup := context.WithCancel(h.ctx)
	defer hangup()
	c1, d1 := h.call(ctx, mux.view("a"), "a", "101")
	h.waitUp(c1, d1)
	c2, d2 := h.call(ctx, mux.view("b"), "b", "102")
	h.waitUp(c2, d2)
	h.s.DelayNth(1, "POST", "/channels/*/dtmf", 1500*time.Millisecond)
	if err := conn.Send(h.ctx, signal.Message{Type: signal.TypeDTMF, CallID: "b", Digits: "1"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // b is in its DTMF request
	if err := conn.Send(h.ctx, signal.Message{Type: signal.TypeTransfer, CallID: "a", Target: "b"}); err != nil {
		t.Fatal(err)
	}
	// The synthetic browser hangs a up on the refusal (transfer_failed); b goes on, with its phone.
	if r := h.result(d1); signal.ErrorCode(r.err) != wire.CodeTransferFailed {
		t.Errorf("call a: %v, want transfer_failed", r.err)
	}
	time.Sleep(2 * time.Second) // past b's request: b has seen the handoff by now
	if n := h.m.Active(); n != 1 {
		t.Errorf("%d calls after the refused transfer, want b alone", n)
	}
	if bs := h.s.Bridges(); len(bs) != 1 || len(bs[0].Channels) != 2 {
		t.Errorf("bridges after the refused transfer: %+v, want b's with its phone", bs)
	}
	hangup()
	r := h.result(d2)
	for _, ev := range eventTypes(r.rep) {
		if strings.HasPrefix(ev, "transferred") {
			t.Errorf("call b was told %s for a refused transfer", ev)
		}
	}
	h.assertNothingLeft()
}

// TestPhoneREFERKeepsTheBrowser: the far phone blind-transfers the browser; the Local channel that replaces it
// becomes the far party, the browser is told, and the call ends only when the new party hangs up.
func TestPhoneREFERKeepsTheBrowser(t *testing.T) {
	h := newCTIHarness(t, nil)
	conn := h.conn("alice", "agent", "ext")
	connected, done := h.call(h.ctx, conn, "c1", "101")
	h.waitUp(connected, done)
	var far string
	for _, ch := range h.s.Channels() {
		if strings.HasPrefix(ch.Name, "PJSIP/101") {
			far = ch.ID
		}
	}
	local, err := h.s.BlindTransferFromFar(far, "from-phones", "102")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if h.m.Active() != 1 || !h.a.Claimed(local) || h.a.Claimed(far) {
		t.Fatalf("after the REFER: %d calls, replacement claimed %v, transferer claimed %v", h.m.Active(), h.a.Claimed(local), h.a.Claimed(far))
	}
	if err := h.s.HangupFromFar(local, 16); err != nil {
		t.Fatal(err)
	}
	r := h.result(done)
	if got := strings.Join(eventTypes(r.rep), " "); got != "answered/ transferred/far" || r.rep.HungUpBy != "remote" {
		t.Errorf("browser events %q, hung up by %s", got, r.rep.HungUpBy)
	}
	h.assertNothingLeft()
}

// TestSuperviseSetupFailureLeavesNothing: a supervision that fails at any step refuses the supervisor and leaves
// the agent's call untouched; a supervision that works ends with the agent's call.
func TestSuperviseSetupFailureLeavesNothing(t *testing.T) {
	for _, step := range []struct{ name, method, path string }{
		{"media channel", "POST", "/channels/externalMedia"},
		{"bridge", "POST", "/bridges"},
		{"add the supervisor", "POST", "/bridges/*/addChannel"},
		{"snoop", "POST", "/channels/*/snoop"},
		{"works", "", ""},
	} {
		t.Run(step.name, func(t *testing.T) {
			h := newCTIHarness(t, nil)
			agent := h.conn("alice", "agent", "ext")
			ctx, hangup := context.WithCancel(h.ctx)
			defer hangup()
			connected, done := h.call(ctx, agent, "c1", "101")
			h.waitUp(connected, done)
			calls := h.m.LiveCalls()
			if len(calls) != 1 {
				t.Fatalf("live calls %+v", calls)
			}
			if step.method != "" {
				h.s.FailNext(step.method, step.path, 500)
			}
			sup := h.conn("sam", RoleSupervisor)
			supDone := make(chan result, 1)
			supUp := make(chan string, 1)
			go func() {
				rep, err := h.eng.Offer(h.ctx, sup, synth.CallOptions{CallID: "s1", Duration: -1, OnConnected: func(id string) { supUp <- id }},
					func(id, sdp string) signal.Message {
						return signal.Message{Type: signal.TypeSupervise, CallID: id, Target: calls[0].ID, Mode: signal.ModeWhisper, SDP: sdp}
					})
				supDone <- result{rep, err}
			}()
			if step.method != "" {
				r := h.result(supDone)
				if r.err == nil && r.rep.HungUpBy != "remote" {
					t.Errorf("failed supervision: %v %+v", r.err, r.rep)
				}
				h.waitFor("the agent's call alone", func() bool { return h.m.Active() == 1 })
			} else {
				<-supUp
				h.waitFor("snoop bridged", func() bool { return h.s.Count("POST", "/channels/*/snoop") == 1 && len(h.s.Bridges()) == 2 })
				if err := sup.Send(h.ctx, signal.Message{Type: signal.TypeSupervise, CallID: "s1", Mode: signal.ModeBarge}); err != nil {
					t.Fatal(err)
				}
				h.waitFor("barge snoop", func() bool { return h.s.Count("POST", "/channels/*/snoop") == 2 })
				reqs := h.s.Requests()
				var whispers []string
				for _, r := range reqs {
					if strings.HasSuffix(r.Path, "/snoop") {
						whispers = append(whispers, r.Query.Get("spy")+"/"+r.Query.Get("whisper"))
					}
				}
				if strings.Join(whispers, " ") != "both/out both/both" {
					t.Errorf("snoops %v; want spy both with whisper out, then both", whispers)
				}
			}
			hangup() // the agent hangs up: a supervision ends with it
			h.result(done)
			if step.method == "" {
				r := h.result(supDone)
				if r.rep.HungUpBy != "remote" {
					t.Errorf("supervision did not end with the agent's call: %+v", r.rep)
				}
			}
			h.assertNothingLeft()
		})
	}
}

// TestSuperviseRefusals: only a supervisor may supervise, only an agent's or moderator's call, and only one that
// exists; each refusal makes nothing in Asterisk.
func TestSuperviseRefusals(t *testing.T) {
	h := newCTIHarness(t, nil)
	user := h.conn("bob", "", "ext")
	ctx, hangup := context.WithCancel(h.ctx)
	defer hangup()
	connected, done := h.call(ctx, user, "c1", "101")
	h.waitUp(connected, done)
	target := h.m.LiveCalls()[0].ID
	for _, tc := range []struct {
		role, target, code string
	}{
		{"agent", target, wire.CodeNotAllowed},
		{RoleSupervisor, "nosuchcall", wire.CodeUnknownCall},
		{RoleSupervisor, target, wire.CodeNotAllowed}, // bob has no agent role
	} {
		before := len(h.s.Requests())
		c := h.conn("sam", tc.role)
		_, err := h.eng.Offer(h.ctx, c, synth.CallOptions{Duration: time.Second}, func(id, sdp string) signal.Message {
			return signal.Message{Type: signal.TypeSupervise, CallID: id, Target: tc.target, Mode: signal.ModeListen, SDP: sdp}
		})
		if signal.ErrorCode(err) != tc.code {
			t.Errorf("role %q target %s: %v; want %s", tc.role, tc.target, err, tc.code)
		}
		if n := len(h.s.Requests()) - before; n != 0 {
			t.Errorf("refused supervision made %d ARI requests", n)
		}
	}
	hangup()
	h.result(done)
	h.assertNothingLeft()
}

// TestConsoleListsTheCallsASupervisorMayJoin: a supervisor's console lists an agent's call, which it may supervise,
// and not a plain user's, which supervise would refuse.
func TestConsoleListsTheCallsASupervisorMayJoin(t *testing.T) {
	h := newCTIHarness(t, nil)
	ctx, hangup := context.WithCancel(h.ctx)
	defer hangup()
	c1, d1 := h.call(ctx, h.conn("bob", "", "ext"), "c1", "101")
	h.waitUp(c1, d1)
	c2, d2 := h.call(ctx, h.conn("alice", "agent", "ext"), "c2", "102")
	h.waitUp(c2, d2)
	sup := h.conn("sam", RoleSupervisor)
	if err := sup.Send(h.ctx, signal.Message{Type: signal.TypeConsole}); err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(h.ctx, 5*time.Second)
	defer rcancel()
	for {
		m, err := sup.Recv(rctx)
		if err != nil {
			t.Fatalf("no console answer: %v", err)
		}
		if m.Type != signal.TypeConsole {
			continue
		}
		if len(m.Calls) != 1 || m.Calls[0].User != "alice" || m.Calls[0].Role != "agent" {
			t.Errorf("console lists %+v; want alice's (agent) call alone", m.Calls)
		}
		break
	}
	hangup()
	h.result(d1)
	h.result(d2)
	h.assertNothingLeft()
}

// TestRecordingOfACall: the API records a call's bridge; the recording is collected into the directory when the
// call ends, with its sidecar.
func TestRecordingOfACall(t *testing.T) {
	h := newCTIHarness(t, nil)
	conn := h.conn("alice", "agent", "ext")
	ctx, hangup := context.WithCancel(h.ctx)
	defer hangup()
	connected, done := h.call(ctx, conn, "c1", "101")
	h.waitUp(connected, done)
	id := h.m.LiveCalls()[0].ID
	if _, err := h.m.RecordCall(h.ctx, "nosuchcall", true, "api:test"); err == nil {
		t.Error("recording an unknown call: no error")
	}
	rid, err := h.m.RecordCall(h.ctx, id, true, "api:test")
	if err != nil || !recording.ValidID(rid) {
		t.Fatalf("record: %q %v", rid, err)
	}
	if again, err := h.m.RecordCall(h.ctx, id, true, "api:test"); err != nil || again != rid {
		t.Errorf("second start: %q %v; want the same recording", again, err)
	}
	time.Sleep(200 * time.Millisecond)
	hangup()
	r := h.result(done)
	if got := strings.Join(eventTypes(r.rep), " "); !strings.Contains(got, "recording/") {
		t.Errorf("the browser was not told of the recording: %v", got)
	}
	h.waitFor("recording collected", func() bool {
		m, err := h.rec.Get(rid)
		return err == nil && m.State == recording.StateComplete
	})
	m, _ := h.rec.Get(rid)
	if m.CallID != id || len(m.Parties) != 2 || m.Bytes == 0 || m.StartedBy != "api:test" {
		t.Errorf("sidecar %+v", m)
	}
	h.waitFor("Asterisk's copy deleted", func() bool { return h.s.Count("DELETE", "/recordings/stored/*") == 1 })
	h.assertNothingLeft()
}

// mux lets two synthetic calls share one signalling connection.
type mux struct {
	c    *signal.Conn
	subs map[string]chan signal.Message
	add  chan muxSub
}

type muxSub struct {
	id string
	ch chan signal.Message
}

func newMux(ctx context.Context, c *signal.Conn) *mux {
	m := &mux{c: c, add: make(chan muxSub)}
	msgs := make(chan signal.Message, 256)
	go func() { // ends when the connection closes
		for {
			msg, err := c.Recv(ctx)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- msg
		}
	}()
	go func() { // ends when the reader does
		subs := map[string]chan signal.Message{}
		for {
			select {
			case s := <-m.add:
				subs[s.id] = s.ch
			case msg, ok := <-msgs:
				if !ok {
					return
				}
				if ch := subs[msg.CallID]; ch != nil {
					ch <- msg
				}
			}
		}
	}()
	return m
}

type muxView struct {
	m  *mux
	ch chan signal.Message
}

func (m *mux) view(id string) *muxView {
	ch := make(chan signal.Message, 256)
	m.add <- muxSub{id, ch}
	return &muxView{m: m, ch: ch}
}

func (v *muxView) Send(ctx context.Context, msg signal.Message) error { return v.m.c.Send(ctx, msg) }
func (v *muxView) Recv(ctx context.Context) (signal.Message, error) {
	select {
	case msg := <-v.ch:
		return msg, nil
	case <-ctx.Done():
		return signal.Message{}, ctx.Err()
	}
}

// TestModeratorMutesKicksAndEndsTheRoom: a room's moderator mutes, kicks and ends through signalling; a participant
// may not; each action reaches Asterisk and the room.
func TestModeratorMutesKicksAndEndsTheRoom(t *testing.T) {
	var reg *rooms.Registry
	h := newCTIHarness(t, func(o *Options) {
		reg = rooms.New(rooms.Options{ARI: o.ARI, Grace: time.Second, Logger: o.Logger})
		o.Rooms = reg
	})
	t.Cleanup(func() { reg.Close(context.Background()) })
	if _, err := reg.Create(h.ctx, rooms.CreateOptions{ID: "standup"}); err != nil {
		t.Fatal(err)
	}
	join := func(user, role, id string) (*signal.Conn, chan result) {
		cl := auth.Claims{Name: user, Room: "standup", Role: role}
		cl.Subject = user
		tok, err := h.signer.Mint(cl, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := signal.Dial(h.ctx, h.wsURL, tok, signal.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		done := make(chan result, 1)
		go func() {
			rep, err := h.eng.Join(h.ctx, c, synth.JoinOptions{Room: "standup"}, synth.CallOptions{CallID: id, Duration: -1})
			done <- result{rep, err}
		}()
		return c, done
	}
	mod, modDone := join("mia", rooms.RoleModerator, "m1")
	var pid string
	patIn := func(what, old string) {
		h.waitFor(what, func() bool {
			ps, _ := reg.Participants("standup")
			for _, p := range ps {
				if p.CallerID == "pat" {
					pid = p.ID
				}
			}
			return len(ps) == 2 && pid != old
		})
	}
	// A participant may not moderate, hold the room or hand it on: each is refused with not_allowed and nothing
	// changes. not_allowed does not end a call, but the synthetic caller gives up on it: pat hangs it up and joins
	// again.
	for i, req := range []signal.Message{
		{Type: signal.TypeModerate, Action: signal.ActionMute},
		{Type: signal.TypeHold},
		{Type: signal.TypeTransfer, To: "600"},
	} {
		id := fmt.Sprintf("p%d", i+1)
		part, partDone := join("pat", rooms.RoleParticipant, id)
		patIn("pat in the room as "+id, pid)
		req.CallID = id
		if req.Type == signal.TypeModerate {
			req.Target = pid
		}
		if err := part.Send(h.ctx, req); err != nil {
			t.Fatal(err)
		}
		if r := h.result(partDone); signal.ErrorCode(r.err) != wire.CodeNotAllowed {
			t.Errorf("participant sending %s: %v; want %s", req.Type, r.err, wire.CodeNotAllowed)
		}
		if err := part.Send(h.ctx, signal.Message{Type: signal.TypeHangup, CallID: id}); err != nil {
			t.Fatal(err)
		}
	}
	_, partDone := join("pat", rooms.RoleParticipant, "p9")
	patIn("pat back, once", pid)
	if err := mod.Send(h.ctx, signal.Message{Type: signal.TypeModerate, CallID: "m1", Action: signal.ActionMute, Target: pid}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("pat muted", func() bool {
		ps, _ := reg.Participants("standup")
		for _, p := range ps {
			if p.ID == pid {
				return p.Muted
			}
		}
		return false
	})
	if err := mod.Send(h.ctx, signal.Message{Type: signal.TypeModerate, CallID: "m1", Action: signal.ActionKick, Target: pid}); err != nil {
		t.Fatal(err)
	}
	if r := h.result(partDone); r.rep.HungUpBy != "remote" {
		t.Errorf("kicked participant: %v %+v", r.err, r.rep)
	}
	if err := mod.Send(h.ctx, signal.Message{Type: signal.TypeModerate, CallID: "m1", Action: signal.ActionEndRoom}); err != nil {
		t.Fatal(err)
	}
	if r := h.result(modDone); r.rep.HungUpBy != "remote" {
		t.Errorf("moderator after ending the room: %v", r.err)
	}
	if reg.Exists("standup") {
		t.Error("the room still exists")
	}
	h.assertNothingLeft()
}
