//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	pion "github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// The TestFault… group: Patchbay, Asterisk and the network fail under live calls, and nothing leaks.

// inspector is an ARI client on its own application, to look at what Asterisk holds. It never runs its events
// socket, so it never sweeps anything.
func inspector(t *testing.T, a *testenv.Asterisk) *ari.Client {
	t.Helper()
	c, err := ari.New(ari.Config{URL: a.ARIURL(), Username: a.ARIUser, Password: a.ARIPassword, Application: "inspector"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// held counts the channels and bridges Asterisk holds whose IDs carry prefix ("" counts all).
func held(t *testing.T, c *ari.Client, prefix string) (chans, bridges []string) {
	t.Helper()
	// 15 s: a list waits on Asterisk's channel container, which a loaded host may keep busy for seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cs, err := c.Channels().List(ctx)
	if err != nil {
		t.Fatalf("list channels: %v", err)
	}
	bs, err := c.Bridges().List(ctx)
	if err != nil {
		t.Fatalf("list bridges: %v", err)
	}
	for _, ch := range cs {
		if strings.HasPrefix(ch.ID, prefix) {
			chans = append(chans, ch.ID+" "+ch.Name)
		}
	}
	for _, b := range bs {
		if strings.HasPrefix(b.ID, prefix) {
			bridges = append(bridges, b.ID)
		}
	}
	return chans, bridges
}

// waitEmpty waits until Asterisk holds no channel and no bridge with prefix, and reports how long it took.
func waitEmpty(t *testing.T, c *ari.Client, prefix string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		chans, bridges := held(t, c, prefix)
		if len(chans) == 0 && len(bridges) == 0 {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("after %v Asterisk still holds %d channels %v and %d bridges %v", within, len(chans), chans, len(bridges), bridges)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// toneWAV writes a WAV of hz for d and returns its path.
func toneWAV(t *testing.T, hz float64, d time.Duration) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("tone%g.wav", hz))
	if err := audio.WriteWAV(p, audio.Sine(hz, 8000, d, 0.3), 8000); err != nil {
		t.Fatal(err)
	}
	return p
}

// procAPI sends one REST request to a Patchbay process with an API key and decodes the reply into out.
func procAPI(t *testing.T, hc *http.Client, base, key, method, path string, body any, want int, out any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, base+"/api/v1"+path, rd)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

// bgCall runs a synthetic call until the far end (or Patchbay) ends it, and hands its report over.
func bgCall(ctx context.Context, eng *synth.Engine, sig synth.Signaller, o synth.CallOptions) <-chan *synth.Report {
	ch := make(chan *synth.Report, 1)
	go func() {
		rep, err := eng.Call(ctx, sig, o)
		if rep == nil {
			rep = &synth.Report{}
		}
		if err != nil && rep.Cause == "" {
			rep.Cause = "error: " + err.Error()
		}
		ch <- rep
	}()
	return ch
}

// TestFaultPatchbayKilledMidCall: `kill -9` of Patchbay with a browser→phone call, a room with a phone and an
// API call up. After a restart, within 5 s Asterisk holds nothing of Patchbay's, the phone got its BYE, and the
// next call works.
func TestFaultPatchbayKilledMidCall(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	apiKey := "k-" + strings.Repeat("7", 30)
	p := testenv.StartPatchbayProcess(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Auth.APIKeys = map[string]config.Secret{"crm": config.Secret(apiKey)}
		c.API.Dial = map[string][]string{"crm": {"ext"}}
	}})
	insp := inspector(t, a)
	prefix := "pb." + a.App + "."
	phone := testenv.StartBaresip(t, testenv.BaresipOptions{Name: "101", Registrar: fmt.Sprintf("127.0.0.1:%d", a.SIPPort),
		User: "101", Password: a.Phone(t, "101").Password, PlayWAV: toneWAV(t, 1000, 5*time.Minute), AutoAnswer: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := phone.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	// 1. A browser calls the phone.
	browserCall := bgCall(ctx, eng, p.Dial(t, ctx, "alice", "ext"), synth.CallOptions{To: "101", Duration: -1, ToneHz: 440, ExpectHz: 1000})
	if _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	// 2. An API call to extension 601 (a tone) into a new room, and 3. a browser in that room with the ticket.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: p.TLS}, Timeout: 10 * time.Second}
	var res struct{ Ticket string }
	procAPI(t, hc, p.BaseURL, apiKey, "POST", "/calls", map[string]any{"to": "601", "connect": map[string]any{"create_room": true}}, http.StatusCreated, &res)
	ticket := res.Ticket
	roomDone := make(chan *synth.Report, 1)
	go func() {
		rep, _ := eng.Join(ctx, p.Dial(t, ctx, "bob"), synth.JoinOptions{Ticket: ticket}, synth.CallOptions{Duration: -1, ToneHz: 660, ExpectHz: 440})
		roomDone <- rep
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		chans, bridges := held(t, insp, prefix)
		if len(chans) >= 5 && len(bridges) >= 2 {
			t.Logf("up before the kill: %d channels %v, %d bridges", len(chans), chans, len(bridges))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls not all up: %d channels %v, %d bridges %v", len(chans), chans, len(bridges), bridges)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second) // media flowing everywhere

	p.Kill(t)
	time.Sleep(time.Second)
	chans, bridges := held(t, insp, "")
	t.Logf("one second after kill -9: Asterisk still holds %d channels and %d bridges", len(chans), len(bridges))
	if len(chans) == 0 {
		t.Fatal("nothing left after the kill: the test would prove nothing")
	}

	restart := time.Now()
	p.Start(t)
	took := waitEmpty(t, insp, "", 5*time.Second+time.Since(restart))
	t.Logf("MEASURED restart → Asterisk empty in %v (restart itself took part of it)", time.Since(restart).Round(time.Millisecond))
	_ = took
	closed, err := phone.WaitEvent(ctx, "CALL_CLOSED")
	if err != nil {
		t.Fatalf("phone never got its BYE: %v", err)
	}
	t.Logf("phone's call closed: %+v", closed)

	// The next call works.
	rep, err := eng.Call(ctx, p.Dial(t, ctx, "carol", "ext"), synth.CallOptions{To: "600", Duration: 2 * time.Second})
	if err != nil || !rep.Heard.Detected(5) {
		t.Fatalf("call after restart: err %v, heard %+v", err, rep.Heard)
	}
	waitEmpty(t, insp, "", 5*time.Second)
	cancel()
	<-browserCall
	<-roomDone
}

// TestFaultTwoInstancesShareAsterisk: two Patchbays (own application and instance) on one Asterisk. Restarting one,
// and its start-up sweep, never touches the other's call, which keeps its audio.
func TestFaultTwoInstancesShareAsterisk(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	insp := inspector(t, a)
	pa := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.ARI.App, c.ARI.Instance = a.App, "east"
	}})
	pbB := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.ARI.App, c.ARI.Instance = "patchbay-west", "west"
		c.ARI.SweepInterval = time.Second
	}})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// West's call runs 8 s across east's restart; it is an echo, so hearing our own tone proves the path.
	westCall := bgCall(ctx, eng, pbB.Dial(t, ctx, "wendy", "ext"), synth.CallOptions{To: "600", Duration: 8 * time.Second, ToneHz: 700})
	eastCall := bgCall(ctx, eng, pa.Dial(t, ctx, "erin", "ext"), synth.CallOptions{To: "601", Duration: -1, ExpectHz: 440})
	waitFor(t, 10*time.Second, "both calls up", func() bool { return pa.Server.ActiveCalls() == 1 && pbB.Server.ActiveCalls() == 1 })
	time.Sleep(time.Second)
	westBefore, _ := held(t, insp, "pb.west.")
	pa.Stop(t)
	<-eastCall
	pa2 := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.ARI.App, c.ARI.Instance = a.App, "east"
		c.ARI.SweepInterval = time.Second
	}})
	time.Sleep(2500 * time.Millisecond) // east's start-up sweep and a periodic one have run
	westAfter, _ := held(t, insp, "pb.west.")
	if len(westAfter) != len(westBefore) {
		t.Errorf("west's channels changed across east's restart: %v → %v", westBefore, westAfter)
	}
	rep := <-westCall
	t.Logf("west's call: sent %d received %d loss %.3f heard %+v cause %q", rep.Sent, rep.Received, rep.Loss, rep.Heard, rep.Cause)
	if !rep.Heard.Detected(50) || rep.HungUpBy != "local" {
		t.Errorf("west's call was disturbed by east's restart: hung up by %q (%s), heard %+v", rep.HungUpBy, rep.Cause, rep.Heard)
	}
	_ = pa2
	waitEmpty(t, insp, "", 5*time.Second)
}

// TestFaultRelayPortsExhausted: at capacity (the relay's media.max_calls, which replaced per-call relay ports when
// every call came to share one socket), a new call is refused with unavailable and a message about capacity, and
// nothing is created for it in Asterisk.
func TestFaultRelayPortsExhausted(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	insp := inspector(t, a)
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Media.MaxCalls = 2
		c.Calls.DialplanExtensions = nil // 601 through a Local channel and a bridge: the resource that used to leak
	}})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var calls []<-chan *synth.Report
	for _, u := range []string{"u1", "u2"} {
		calls = append(calls, bgCall(ctx, eng, pb.Dial(t, ctx, u, "ext"), synth.CallOptions{To: "601", Duration: -1, ExpectHz: 440}))
	}
	waitFor(t, 10*time.Second, "two calls up", func() bool {
		_, b := held(t, insp, "")
		return pb.Server.ActiveCalls() == 2 && len(b) == 2
	})
	_, bridgesBefore := held(t, insp, "")
	_, err = eng.Call(ctx, pb.Dial(t, ctx, "u3", "ext"), synth.CallOptions{To: "601", Duration: time.Second})
	if code := signal.ErrorCode(err); code != wire.CodeUnavailable || !strings.Contains(err.Error(), "capacity") {
		t.Fatalf("third call: err %v, want unavailable about capacity", err)
	}
	t.Logf("third call refused: %v", err)
	_, bridgesAfter := held(t, insp, "")
	if len(bridgesAfter) != len(bridgesBefore) {
		t.Errorf("the refused call left bridges: %v → %v", bridgesBefore, bridgesAfter)
	}
	cancel()
	for _, c := range calls {
		<-c
	}
	waitEmpty(t, insp, "", 5*time.Second)
}

// TestFaultAsteriskKilledAndFrozen: Asterisk crashes (kill -9) or hangs (SIGSTOP for 20 s) under a live call.
// The browser gets a hangup within 3 s either way, and once Asterisk is back the next call works without
// restarting Patchbay; Asterisk is left with nothing of Patchbay's.
func TestFaultAsteriskKilledAndFrozen(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	insp := inspector(t, a)
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.ARI.SweepInterval = 2 * time.Second
		c.ARI.DeadAfter = config.Defaults().ARI.DeadAfter // detection as deployed (testenv relaxes it)
	}})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, fault := range []string{"kill -9", "SIGSTOP 20s"} {
		t.Run(fault, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			call := bgCall(ctx, eng, pb.Dial(t, ctx, "alice", "ext"), synth.CallOptions{To: "601", Duration: -1, ExpectHz: 440})
			waitFor(t, 10*time.Second, "call up", func() bool { return pb.Server.ActiveCalls() == 1 })
			time.Sleep(time.Second)
			at := time.Now()
			if fault == "kill -9" {
				a.Kill(t)
			} else {
				a.Freeze(t)
			}
			var rep *synth.Report
			select {
			case rep = <-call:
			case <-time.After(10 * time.Second):
				if fault != "kill -9" {
					a.Thaw(t)
				}
				t.Fatalf("%s: the browser was not told within 10 s", fault)
			}
			told := time.Since(at)
			t.Logf("MEASURED %s → browser told in %v: hung up by %s, cause %s (%d)", fault, told.Round(time.Millisecond), rep.HungUpBy, rep.Cause, rep.Code)
			if told > 3*time.Second {
				t.Errorf("%s: browser told after %v, want within 3 s", fault, told)
			}
			if rep.HungUpBy != "remote" || rep.Cause != wire.CauseAsteriskLost {
				t.Errorf("%s: hung up by %q with %q, want remote with %s", fault, rep.HungUpBy, rep.Cause, wire.CauseAsteriskLost)
			}
			if fault == "kill -9" {
				a.Start(t)
			} else {
				time.Sleep(20*time.Second - time.Since(at))
				a.Thaw(t)
			}
			// New calls are refused at once while Patchbay has no Asterisk; once it is back one works.
			var err error
			for i := 0; i < 40; i++ {
				rep, err = eng.Call(ctx, pb.Dial(t, ctx, "alice", "ext"), synth.CallOptions{To: "600", Duration: 2 * time.Second})
				if err == nil || signal.ErrorCode(err) != wire.CodeUnavailable {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if err != nil || !rep.Heard.Detected(5) {
				t.Fatalf("%s: call once Asterisk is back: err %v, heard %+v", fault, err, rep.Heard)
			}
			waitEmpty(t, insp, "", 5*time.Second)
		})
	}
}

// TestFaultBrowserNeverCompletesICE: a browser that sends an offer and then never connects gets no_audio within
// 10 s, and the far end is never dialled, let alone left answered.
func TestFaultBrowserNeverCompletesICE(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	insp := inspector(t, a)
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := pb.Dial(t, ctx, "alice", "ext")
	// A real offer from a peer that is closed at once: its candidates lead nowhere.
	offer := deadOffer(t)
	start := time.Now()
	if err := conn.Send(ctx, signal.Message{Type: signal.TypeCall, CallID: "c1", To: "600", SDP: offer}); err != nil {
		t.Fatal(err)
	}
	var gotErr, gotHangup signal.Message
	var dialled atomic.Bool
	watchDone := make(chan struct{})
	watchStopped := make(chan struct{})
	go func() { // watch for the far end answering while the browser never connects
		defer close(watchStopped)
		for {
			select {
			case <-watchDone:
				return
			case <-time.After(200 * time.Millisecond):
			}
			lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
			chans, _ := insp.Channels().List(lctx)
			lcancel()
			for _, c := range chans {
				if strings.HasPrefix(c.Name, "Local/600") && c.State == "Up" {
					dialled.Store(true) // Echo's Answer() ran: the far end was dialled and answered
				}
			}
		}
	}()
	for gotHangup.Type == "" {
		m, err := conn.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for the end of the call: %v (after %v)", err, time.Since(start))
		}
		switch m.Type {
		case signal.TypeError:
			gotErr = m
		case signal.TypeHangup:
			gotHangup = m
		}
	}
	close(watchDone)
	<-watchStopped
	after := time.Since(start)
	t.Logf("MEASURED never-connecting browser: error %q (%s) then hangup %q after %v", gotErr.Error, gotErr.Message, gotHangup.Cause, after.Round(time.Millisecond))
	if gotErr.Error != wire.CodeNoAudio || after > 11*time.Second {
		t.Errorf("got error %q after %v, want no_audio within 10 s", gotErr.Error, after)
	}
	if dialled.Load() {
		t.Error("the far end (600) was dialled although the browser's media never flowed")
	}
	waitEmpty(t, insp, "", 5*time.Second)
}

// deadOffer returns an SDP offer (PCMU) whose peer is already closed: its candidates lead nowhere.
func deadOffer(t *testing.T) string {
	t.Helper()
	me := &pion.MediaEngine{}
	if err := me.RegisterCodec(media.PCMU.Codec(), pion.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	se := pion.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	pc, err := pion.NewAPI(pion.WithMediaEngine(me), pion.WithSettingEngine(se)).NewPeerConnection(pion.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromKind(pion.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pion.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	sdp := pc.LocalDescription().SDP
	_ = pc.Close()
	return sdp
}

// TestFaultSIGTERMWithCallsUp: SIGTERM refuses new calls at once, gives the calls up to shutdown_timeout, then
// sends each its hangup (server_shutdown), leaves Asterisk empty and exits 0.
func TestFaultSIGTERMWithCallsUp(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	insp := inspector(t, a)
	p := testenv.StartPatchbayProcess(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.HTTP.ShutdownTimeout = 3 * time.Second
	}})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	idle := p.Dial(t, ctx, "idle", "ext") // a socket that will try to call during the drain
	var calls []<-chan *synth.Report
	for _, u := range []string{"u1", "u2"} {
		calls = append(calls, bgCall(ctx, eng, p.Dial(t, ctx, u, "ext"), synth.CallOptions{To: "600", Duration: -1}))
	}
	waitFor(t, 10*time.Second, "two calls up", func() bool { c, _ := held(t, insp, ""); return len(c) >= 2 })
	time.Sleep(time.Second)
	sigAt := time.Now()
	p.Signal(t, syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	_, err = eng.Call(ctx, idle, synth.CallOptions{To: "600", Duration: time.Second})
	if signal.ErrorCode(err) != wire.CodeUnavailable {
		t.Errorf("a new call during the drain: %v, want unavailable", err)
	}
	for i, c := range calls {
		rep := <-c
		t.Logf("call %d ended %v after SIGTERM: by %s, cause %s (%d)", i, time.Since(sigAt).Round(time.Millisecond), rep.HungUpBy, rep.Cause, rep.Code)
		if rep.HungUpBy != "remote" || rep.Cause != wire.CauseServerShutdown || rep.Code != wire.CauseCode(wire.CauseServerShutdown) {
			t.Errorf("call %d: hung up by %q with %q (%d), want remote with server_shutdown (41)", i, rep.HungUpBy, rep.Cause, rep.Code)
		}
	}
	if code := p.Wait(t, 20*time.Second); code != 0 {
		t.Errorf("patchbay exited %d after SIGTERM, want 0", code)
	}
	t.Logf("MEASURED SIGTERM → exit in %v", time.Since(sigAt).Round(time.Millisecond))
	if chans, bridges := held(t, insp, ""); len(chans)+len(bridges) > 0 {
		t.Errorf("Asterisk holds %v %v after Patchbay stopped", chans, bridges)
	}
}

// TestFaultOverloadFailsFastAndLeavesNothing: Asterisk answers slowly (frozen and thawed in bursts) while calls
// are placed. Setups fail fast with a clear cause or succeed; after the load, within the sweep interval, Asterisk
// holds nothing of Patchbay's.
func TestFaultOverloadFailsFastAndLeavesNothing(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	insp := inspector(t, a)
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.ARI.SweepInterval = 3 * time.Second
		c.Calls.SetupTimeout = time.Second
		c.ARI.DeadAfter = 5 * time.Second // slow, not dead: calls in progress survive the bursts
		c.Limits.PerToken = config.LimitSet{}
	}})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stopBursts := make(chan struct{})
	var bursts sync.WaitGroup
	bursts.Add(1)
	go func() { // frozen 1.5 s (past setup_timeout), running 0.5 s
		defer bursts.Done()
		for {
			select {
			case <-stopBursts:
				return
			default:
			}
			a.Freeze(t)
			time.Sleep(1500 * time.Millisecond)
			a.Thaw(t)
			time.Sleep(500 * time.Millisecond)
		}
	}()
	type result struct {
		err   error
		took  time.Duration
		heard bool
	}
	results := make(chan result, 30)
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 150 * time.Millisecond)
			conn, err := signal.Dial(ctx, pb.URL, pb.Token(t, fmt.Sprintf("load%d", i), "ext"), signal.DialOptions{TLSConfig: pb.TLS})
			if err != nil {
				results <- result{err: err}
				return
			}
			defer conn.Close()
			start := time.Now()
			rep, err := eng.Call(ctx, conn, synth.CallOptions{To: "600", Duration: 2 * time.Second})
			results <- result{err: err, took: time.Since(start), heard: err == nil && rep.Heard.Detected(5)}
		}(i)
	}
	wg.Wait()
	close(stopBursts)
	bursts.Wait()
	close(results)
	var ok, refused, other int
	var slowest time.Duration
	for r := range results {
		switch {
		case r.err == nil:
			ok++
		case signal.ErrorCode(r.err) == wire.CodeUnavailable:
			refused++
			if r.took > slowest {
				slowest = r.took
			}
			if !strings.Contains(r.err.Error(), "in time") && !strings.Contains(r.err.Error(), "too many calls") &&
				!strings.Contains(r.err.Error(), "connection to the PBX") {
				t.Errorf("refusal without a clear cause: %v", r.err)
			}
		default:
			other++
			t.Logf("call failed otherwise: %v", r.err)
		}
	}
	t.Logf("MEASURED under freeze/thaw bursts: %d calls completed, %d refused with unavailable (slowest refusal %v), %d other",
		ok, refused, slowest.Round(time.Millisecond), other)
	if refused == 0 {
		t.Error("no setup failed: the bursts did not slow Asterisk enough for the test to prove anything")
	}
	if slowest > 4*time.Second {
		t.Errorf("a refusal took %v: setup should fail within about setup_timeout (1 s) per step", slowest)
	}
	took := waitEmpty(t, insp, "", 8*time.Second)
	t.Logf("MEASURED Asterisk empty %v after the load ended", took.Round(time.Millisecond))
}

// TestFaultAdmission: one token's joins count against its concurrency limit; a flood of 2,000 unauthenticated
// sockets from one address is capped with a clear close code, Patchbay's memory grows by a bounded amount, and a
// real call during the flood works.
func TestFaultAdmission(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	apiKey := "k-" + strings.Repeat("8", 30)
	p := testenv.StartPatchbayProcess(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Limits.PerToken = config.LimitSet{MaxConcurrent: 2}
		c.Auth.APIKeys = map[string]config.Secret{"crm": config.Secret(apiKey)}
	}})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("joins count against the token's limit", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: p.TLS}, Timeout: 10 * time.Second}
		var room struct{ ID string }
		procAPI(t, hc, p.BaseURL, apiKey, "POST", "/rooms", map[string]any{}, http.StatusCreated, &room)
		cl := auth.Claims{Room: room.ID, Role: "participant"}
		cl.Subject = "dora"
		tok, err := p.Signer.Mint(cl, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// One token, one socket, three joins: the limit is the token's, whatever the socket.
		conn, err := signal.Dial(ctx, p.URL, tok, signal.DialOptions{TLSConfig: p.TLS})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var joins []<-chan *synth.Report
		for i := 0; i < 2; i++ {
			c, err := signal.Dial(ctx, p.URL, tok, signal.DialOptions{TLSConfig: p.TLS})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ch := make(chan *synth.Report, 1)
			go func() {
				rep, _ := eng.Join(ctx, c, synth.JoinOptions{Room: room.ID}, synth.CallOptions{Duration: 4 * time.Second})
				ch <- rep
			}()
			joins = append(joins, ch)
		}
		time.Sleep(2 * time.Second)
		_, err = eng.Join(ctx, conn, synth.JoinOptions{Room: room.ID}, synth.CallOptions{Duration: time.Second})
		if signal.ErrorCode(err) != wire.CodeTooManyCalls {
			t.Errorf("third join of a token limited to 2: %v, want too_many_calls", err)
		}
		for _, j := range joins {
			if rep := <-j; rep == nil || rep.HungUpBy != "local" {
				t.Errorf("an admitted join did not run to its end: %+v", rep)
			}
		}
	})

	t.Run("2000 unauthenticated sockets", func(t *testing.T) {
		before := p.RSS(t)
		// The flood comes from 127.0.0.2, the real caller from 127.0.0.1: the cap is per address.
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		d := websocket.Dialer{TLSClientConfig: p.TLS, HandshakeTimeout: 5 * time.Second, NetDialContext: nd.DialContext}
		var mu sync.Mutex
		open, refused := 0, 0
		var conns []*websocket.Conn
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for i := 0; i < 2000; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c, _, err := d.DialContext(ctx, p.URL, nil)
				if err != nil {
					return
				}
				_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				_, msg, err := c.ReadMessage()
				mu.Lock()
				defer mu.Unlock()
				if err == nil && strings.Contains(string(msg), wire.CodeTooManyConnections) {
					refused++
					c.Close()
					return
				}
				open++
				conns = append(conns, c)
			}()
		}
		wg.Wait()
		during := p.RSS(t)
		t.Logf("MEASURED 2000 unauthenticated sockets from one address: %d held, %d refused with %s; RSS %d → %d MiB (+%d MiB)",
			open, refused, wire.CodeTooManyConnections, before>>20, during>>20, (during-before)>>20)
		if open > 32 || refused < 1900 {
			t.Errorf("held %d, refused %d: want at most the per-address cap (32) held", open, refused)
		}
		if during-before > 64<<20 {
			t.Errorf("RSS grew by %d MiB during the flood, want under 64 MiB", (during-before)>>20)
		}
		// A real call while the flood's sockets are still open.
		rep, err := eng.Call(ctx, p.Dial(t, ctx, "eve", "ext"), synth.CallOptions{To: "600", Duration: 2 * time.Second})
		if err != nil || !rep.Heard.Detected(5) {
			t.Errorf("call during the flood: err %v heard %+v", err, rep.Heard)
		}
		for _, c := range conns {
			c.Close()
		}
	})
}

// waitFor polls cond until it holds or fails the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFaultStaleEventsSocket: a stale events socket of Patchbay's application closes after Patchbay's own took
// the application over (what a reconnect while Asterisk was frozen leaves behind), and Asterisk deactivates the
// application, so no channel can enter Stasis while Patchbay's socket stays open and answers pings. Patchbay
// notices within seconds, registers again, and calls work.
func TestFaultStaleEventsSocket(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	call := func(what string) {
		t.Helper()
		rep, err := eng.Call(ctx, pb.Dial(t, ctx, "alice", "ext"), synth.CallOptions{To: "600", Duration: 2 * time.Second})
		if err != nil || !rep.Heard.Detected(5) {
			t.Fatalf("%s: err %v, heard %+v", what, err, rep.Heard)
		}
	}
	call("call before")

	// A second socket for the same application replaces Patchbay's registration; closing it abruptly makes
	// Asterisk deactivate the application.
	u := strings.Replace(a.ARIURL(), "http", "ws", 1) + "/ari/events?app=" + a.App
	hdr := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(a.ARIUser+":"+a.ARIPassword))}}
	stale, _, err := websocket.DefaultDialer.DialContext(ctx, u, hdr)
	if err != nil {
		t.Fatalf("open the stale socket: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	_ = stale.NetConn().Close()
	closed := time.Now()
	asteriskSays := func(s string, after int) int {
		data, _ := os.ReadFile(a.LogPath)
		if i := strings.Index(string(data[min(after, len(data)):]), s); i >= 0 {
			return after + i + len(s)
		}
		return -1
	}
	var at int
	waitFor(t, 5*time.Second, "Asterisk deactivates the application", func() bool {
		at = asteriskSays("Deactivating Stasis app '"+a.App+"'", 0)
		return at >= 0
	})
	waitFor(t, 15*time.Second, "Patchbay registers the application again", func() bool {
		// "Activating" if Asterisk still kept the deactivated application, "Creating" if it had destroyed it.
		return asteriskSays("Activating Stasis app '"+a.App+"'", at) >= 0 || asteriskSays("Creating Stasis app '"+a.App+"'", at) >= 0
	})
	t.Logf("MEASURED application deactivated by a stale socket → registered again after %v", time.Since(closed).Round(time.Millisecond))
	if d := time.Since(closed); d > 10*time.Second {
		t.Errorf("the application stayed deactivated for %v, want under 10 s", d)
	}
	call("call after")
}
