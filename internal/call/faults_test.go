package call

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/ari/aritest"
	"github.com/patchbay/patchbay/internal/limits"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Faults around a call that is set up: capacity, the far end, the browser, Asterisk, shutdown.

// upCall places a call to to and waits until it is answered; it runs until stopped.
func upCall(t *testing.T, b *browser, to string) *synthCall {
	t.Helper()
	c := b.call(to, synth.CallOptions{Duration: -1})
	b.wait(c.id, signal.TypeAnswered, patience)
	return c
}

// A server setting up as many calls as it may at once (calls.max_setups) refuses the next one at once, as the
// server being busy, before anything is made in Asterisk: it does not queue behind a slow Asterisk. (This was the
// relay-ports-exhausted test; since every call shares one relay socket there are no ports to exhaust: see the
// report to the lead.)
func TestSetupCapacity(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t, withOptions(func(o *Options) { o.MaxSetups = 1 }))
	defer h.close()
	alice, bob := h.browser("alice"), h.browser("bob")
	h.fake.DelayNth(1, "POST", "/channels/externalMedia", time.Second) // Asterisk is slow for the first call
	first := alice.rawCall("602")
	h.eventually("the first call is being set up", patience, func() bool { return h.fake.Count("POST", "/channels/externalMedia") == 1 })
	id := bob.rawCall("602")
	errMsg, hangup := bob.ended(id, patience)
	if errMsg == nil || errMsg.Error != wire.CodeUnavailable || !strings.Contains(errMsg.Message, "too many calls at once") {
		t.Errorf("refusal %+v, want unavailable saying the server is busy setting calls up", errMsg)
	}
	if hangup.Cause != wire.CauseTemporaryFailure {
		t.Errorf("hangup cause %q, want %s", hangup.Cause, wire.CauseTemporaryFailure)
	}
	alice.wait(first, signal.TypeAnswer, patience) // the slow call goes on
	if n := h.fake.Count("POST", "/channels/externalMedia"); n != 1 {
		t.Errorf("%d externalMedia channels made, want only the first call's", n)
	}
	alice.send(signal.Message{Type: signal.TypeHangup, CallID: first})
	h.assertClean()
}

// The far end refuses or ends the call: the browser's hangup carries the cause, mapped from Asterisk's dial
// status or hang-up cause.
func TestFarEndHangsUp(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	cases := []struct {
		ext   string
		b     aritest.Behavior
		cause string
	}{
		{"101", aritest.Busy(), wire.CauseUserBusy},
		{"102", aritest.Ring(0).NoAnswer(), wire.CauseNoAnswer},
		{"103", aritest.Congestion(), wire.CauseCongestion},
		{"104", aritest.Unavailable(), wire.CauseSubscriberAbsent},
		{"105", aritest.Answer(0).Hangup(200*time.Millisecond, aritest.CauseNormalClearing), wire.CauseNormalClearing},
		{"106", aritest.Answer(0).Hangup(200*time.Millisecond, aritest.CauseCallRejected), wire.CauseCallRejected},
	}
	type running struct {
		b *browser
		c *synthCall
	}
	var calls []running
	for _, tc := range cases {
		h.fake.Endpoint("PJSIP/"+tc.ext, tc.b)
		b := h.browser("user" + tc.ext)
		calls = append(calls, running{b, b.call(tc.ext, synth.CallOptions{Duration: -1})})
	}
	for i, tc := range cases {
		_, hangup := calls[i].b.ended(calls[i].c.id, patience)
		if hangup.Cause != tc.cause || hangup.Code != wire.CauseCode(tc.cause) {
			t.Errorf("%s: hangup %s/%d, want %s/%d", tc.ext, hangup.Cause, hangup.Code, tc.cause, wire.CauseCode(tc.cause))
		}
		if rep, err := calls[i].c.result(t, patience); err != nil || rep.Cause != tc.cause {
			t.Errorf("%s: the synthetic browser saw %v, cause %q", tc.ext, err, rep.Cause)
		}
	}
	h.assertClean()
}

// The browser hangs up: the far end is hung up with a normal clearing.
func TestBrowserHangsUp(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	alice := h.browser("alice")
	c := upCall(t, alice, "101")
	far := h.channelsOf("far")
	c.stop() // sends hangup
	h.assertClean()
	if len(far) != 1 {
		t.Fatalf("far legs %+v", far)
	}
	if hs := h.requests("DELETE", "/channels/"+far[0].ID); len(hs) != 1 || hs[0].Query.Get("reason") != "normal" {
		t.Errorf("far leg hang-ups %+v", hs)
	}
	for _, m := range alice.messages(c.id) {
		if m.Type == signal.TypeHangup || m.Type == signal.TypeError {
			t.Errorf("the browser that hung up was sent %s", m.String())
		}
	}
}

// The browser's socket closes. Without a resume grace its call ends at once. With one, the call is held (its
// media may still flow) and a resumed session takes it over; if nobody comes back, it ends quietly.
func TestBrowserSocketCloses(t *testing.T) {
	defer goleak.VerifyNone(t)
	t.Run("no grace", func(t *testing.T) {
		h := newHarness(t)
		defer h.close()
		alice := h.browser("alice")
		c := upCall(t, alice, "602")
		alice.close()
		h.assertClean()
		c.stop()
	})
	t.Run("resumed", func(t *testing.T) {
		h := newHarness(t, withResumeGrace(10*time.Second))
		defer h.close()
		tab := h.browser("alice")
		c := upCall(t, tab, "602")
		tab.drop()                         // the synthetic call keeps sending media, as a tab whose socket dropped does
		time.Sleep(600 * time.Millisecond) // SessionClosed has run: the call is held, not ended
		if n := h.m.Active(); n != 1 || len(h.channelsOf("far")) != 1 {
			t.Fatalf("call not held through the socket's loss: %d calls, far legs %+v", n, h.channelsOf("far"))
		}
		back := h.browser("alice")
		ids := h.m.SessionResumed(context.Background(), h.sig.Session(back.session), tab.session)
		if len(ids) != 1 || ids[0] != c.id {
			t.Fatalf("resumed %v, want [%s]", ids, c.id)
		}
		far := h.channelsOf("far")[0].ID
		if err := h.fake.HangupFromFar(far, aritest.CauseNormalClearing); err != nil {
			t.Fatal(err)
		}
		if _, hangup := back.ended(c.id, patience); hangup.Cause != wire.CauseNormalClearing {
			t.Errorf("resumed session got hangup %+v", hangup)
		}
		c.stop()
		h.assertClean()
	})
	t.Run("a tab being rung drops out and is not given back", func(t *testing.T) {
		h := newHarness(t, withResumeGrace(10*time.Second))
		defer h.close()
		tab1, tab2 := h.browser("alice"), h.browser("alice")
		phone := h.fake.Incoming(aritest.Call{Endpoint: "PJSIP/101", CallerNumber: "101", Args: []string{"inbound", "alice"}})
		in := tab1.wait("", signal.TypeIncoming, patience)
		tab2.wait(in.CallID, signal.TypeIncoming, patience)
		tab1.drop()
		time.Sleep(600 * time.Millisecond) // SessionClosed has run
		back := h.browser("alice")
		if ids := h.m.SessionResumed(context.Background(), h.sig.Session(back.session), tab1.session); len(ids) != 0 {
			t.Errorf("resumed %v: a tab that was being rung has no call to take back", ids)
		}
		if n := h.m.Active(); n != 1 {
			t.Fatalf("%d calls: the other tab is still being rung", n)
		}
		if err := h.fake.HangupFromFar(phone, aritest.CauseNormalClearing); err != nil {
			t.Fatal(err)
		}
		tab2.ended(in.CallID, patience)
		h.assertClean()
	})
	t.Run("grace expires", func(t *testing.T) {
		h := newHarness(t, withResumeGrace(time.Second))
		defer h.close()
		tab := h.browser("alice")
		c := upCall(t, tab, "602")
		tab.drop()
		start := time.Now()
		h.eventually("the call ends after the grace", patience, func() bool { return h.m.Active() == 0 })
		if took := time.Since(start); took < 900*time.Millisecond {
			t.Errorf("call ended %v after the socket closed, before the %v grace", took, time.Second)
		}
		c.stop()
		h.assertClean()
	})
}

// Asterisk freezes (SIGSTOP): the events socket goes silent, REST pings fail, and every browser in a call gets
// asterisk_lost within dead_after + 1 s; new calls are refused at once. After a thaw the sweep removes what the
// calls could not, and calls work again.
func TestAsteriskFrozen(t *testing.T) {
	defer goleak.VerifyNone(t)
	const deadAfter = 2 * time.Second // with the 1 s below, the 3 s the issue promises
	h := newHarness(t, withSweep(), withARI(func(a *ari.Config) { a.PingInterval, a.DeadAfter = 500*time.Millisecond, deadAfter }),
		withOptions(func(o *Options) { o.CloseTimeout = time.Second })) // close's requests to the frozen Asterisk time out
	defer h.close()
	alice, bob := h.browser("alice"), h.browser("bob")
	c := upCall(t, alice, "602")
	frozen := time.Now()
	h.fake.Freeze()
	_, hangup := alice.ended(c.id, patience)
	if took := time.Since(frozen); took > deadAfter+time.Second {
		t.Errorf("browser told %v after Asterisk froze, want within %v", took, deadAfter+time.Second)
	}
	if hangup.Cause != wire.CauseAsteriskLost {
		t.Errorf("hangup cause %q, want %s", hangup.Cause, wire.CauseAsteriskLost)
	}
	refused := bob.rawCall("602")
	errMsg, _ := bob.ended(refused, patience)
	if errMsg == nil || errMsg.Error != wire.CodeUnavailable || !strings.Contains(errMsg.Message, "connection to the PBX") {
		t.Errorf("a call while Asterisk is frozen: %+v, want unavailable at once", errMsg)
	}
	h.eventually("the frozen call has closed", patience, func() bool { return h.m.Active() == 0 })
	if len(h.fake.Channels()) == 0 {
		t.Errorf("nothing left in a frozen Asterisk? the sweep has nothing to prove")
	}
	h.fake.Thaw()
	h.assertClean() // the sweep at reconnect
	c.stop()
	h.eventually("calls are taken again", patience, func() bool { return h.m.unavailable() == "" })
	upCall(t, bob, "602").stop()
	h.assertClean()
}

// nextEvent fails the test unless the subscription's next event, within d, is of type want.
func nextEvent(t *testing.T, sub *ari.Subscription, want string, d time.Duration, what string) {
	t.Helper()
	select {
	case ev := <-sub.Events():
		if ev.EventType() != want {
			t.Fatalf("%s: got %s, want %s", what, ev.EventType(), want)
		}
	case <-time.After(d):
		t.Fatalf("%s: no %s within %v", what, want, d)
	}
}

// Asterisk starved of CPU on a loaded host: its events socket and REST answer nothing for seconds, but its media
// still flows. That is not a frozen Asterisk: the call goes on through it, and after it recovers.
func TestAsteriskStarvedCallGoesOn(t *testing.T) {
	defer goleak.VerifyNone(t)
	const deadAfter = time.Second
	h := newHarness(t, withARI(func(a *ari.Config) { a.PingInterval, a.DeadAfter = 500*time.Millisecond, deadAfter }))
	defer h.close()
	alice := h.browser("alice")
	c := upCall(t, alice, "602")
	up := h.ari.Subscribe(ari.Filter{Types: []string{ari.TypeDisconnected, ari.TypeConnected}})
	defer up.Close()
	h.fake.Starve()
	nextEvent(t, up, ari.TypeDisconnected, patience, "the events socket of a starved Asterisk found silent")
	time.Sleep(3 * deadAfter) // several pings missed meanwhile
	for _, m := range alice.messages(c.id) {
		if m.Type == signal.TypeHangup || m.Type == signal.TypeError {
			t.Fatalf("the call ended while Asterisk's media still flowed: %s", m.String())
		}
	}
	if !strings.Contains(h.logs.String(), "media still flows") {
		t.Errorf("no log line says why the calls go on")
	}
	h.fake.Thaw()
	nextEvent(t, up, ari.TypeConnected, patience, "the events socket back after the thaw")
	if h.m.Active() != 1 || h.m.unavailable() != "" {
		t.Fatalf("%d calls, unavailable %q after the thaw; want the call up and calls taken", h.m.Active(), h.m.unavailable())
	}
	c.stop()
	h.assertClean()
}

// The events socket drops but Asterisk still answers REST: the call goes on, and so do new ones.
func TestEventsSocketDropsCallSurvives(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	alice := h.browser("alice")
	c := upCall(t, alice, "602")
	up := h.ari.Subscribe(ari.Filter{Types: []string{ari.TypeConnected, ari.TypeReconciled}})
	defer up.Close()
	h.fake.DropEvents()
	for _, want := range []string{ari.TypeConnected, ari.TypeReconciled} {
		nextEvent(t, up, want, 5*time.Second, "after the socket dropped")
	}
	time.Sleep(300 * time.Millisecond)
	for _, m := range alice.messages(c.id) {
		if m.Type == signal.TypeHangup || m.Type == signal.TypeError {
			t.Fatalf("the call ended with the socket: %s", m.String())
		}
	}
	if h.m.Active() != 1 {
		t.Fatalf("%d calls after the socket came back", h.m.Active())
	}
	c.stop()
	h.assertClean()
}

// Asterisk restarts: every channel and bridge is gone. The call learns it at the reconcile after the reconnect
// and ends with asterisk_lost; the next call works.
func TestAsteriskRestart(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	alice := h.browser("alice")
	c := upCall(t, alice, "602")
	h.fake.Restart()
	if _, hangup := alice.ended(c.id, patience); hangup.Cause != wire.CauseAsteriskLost {
		t.Errorf("hangup cause %q, want %s", hangup.Cause, wire.CauseAsteriskLost)
	}
	c.stop()
	h.assertClean()
	h.eventually("connected again", patience, func() bool { return h.m.unavailable() == "" })
	upCall(t, alice, "602").stop()
	h.assertClean()
}

// A browser repeating a live call_id is told duplicate_call and spends none of its call budget: with two new
// calls a minute, a duplicate in between still leaves room for a second call, and only a third is refused.
func TestDuplicateCallIDSpendsNoBudget(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t, withOptions(func(o *Options) {
		o.PSTN.TokenLimits = limits.New(limits.Config{CallsPerMinute: 1, Burst: 2})
	}))
	defer h.close()
	alice := h.browser("alice")
	first := alice.rawCall("602")
	alice.wait(first, signal.TypeAnswer, patience)
	for _, typ := range []string{signal.TypeCall, signal.TypeJoin} {
		alice.send(signal.Message{Type: typ, CallID: first, To: "602", Room: "sales", SDP: deadOffer(t)})
	}
	h.eventually("both duplicates refused", patience, func() bool {
		n := 0
		for _, m := range alice.messages(first) {
			if m.Type == signal.TypeError && m.Error == wire.CodeDuplicateCall {
				n++
			}
		}
		return n == 2
	})
	second := alice.rawCall("602")
	alice.wait(second, signal.TypeAnswer, patience)
	third := alice.rawCall("602")
	if errMsg, _ := alice.ended(third, patience); errMsg == nil || errMsg.Error != wire.CodeCallRateLimited {
		t.Errorf("third call: %+v, want %s", errMsg, wire.CodeCallRateLimited)
	}
	for _, id := range []string{first, second} {
		alice.send(signal.Message{Type: signal.TypeHangup, CallID: id})
	}
	h.assertClean()
	for _, m := range alice.messages(first) {
		if m.Type == signal.TypeHangup {
			t.Errorf("the live call got %s from its duplicate", m.String())
		}
	}
}

// Shutdown: Drain refuses new calls and joins on open sockets with unavailable; EndAll hangs every call up with
// server_shutdown; Asterisk is left with nothing.
func TestShutdown(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	alice, bob := h.browser("alice"), h.browser("bob")
	ca, cb := upCall(t, alice, "602"), upCall(t, bob, "101")
	h.m.Drain()
	for _, id := range []string{alice.rawCall("602"), alice.rawJoin("sales")} {
		errMsg, _ := alice.ended(id, patience)
		if errMsg == nil || errMsg.Error != wire.CodeUnavailable || !strings.Contains(errMsg.Message, "shutting down") {
			t.Errorf("new call while draining: %+v, want unavailable (shutting down)", errMsg)
		}
	}
	if h.m.Active() != 2 {
		t.Fatalf("draining ended calls: %d left", h.m.Active())
	}
	if n := h.m.EndAll(wire.CauseServerShutdown); n != 2 {
		t.Errorf("EndAll ended %d calls, want 2", n)
	}
	for _, x := range []struct {
		b *browser
		c *synthCall
	}{{alice, ca}, {bob, cb}} {
		if _, hangup := x.b.ended(x.c.id, patience); hangup.Cause != wire.CauseServerShutdown || hangup.Code != 41 {
			t.Errorf("%s: hangup %s/%d, want %s/41", x.b.user, hangup.Cause, hangup.Code, wire.CauseServerShutdown)
		}
		x.c.stop()
	}
	h.assertClean()
}

// A teardown DELETE that fails leaves the bridge to the sweep, which removes it at once (SweepSoon).
func TestFailedTeardownIsSwept(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t, withSweep())
	defer h.close()
	alice := h.browser("alice")
	c := upCall(t, alice, "602")
	h.fake.FailNext("DELETE", "/bridges/*", http.StatusInternalServerError)
	c.stop()
	h.assertClean()
	dels := h.requests("DELETE", "/bridges/*")
	if len(dels) != 2 || dels[0].Status != http.StatusInternalServerError || dels[1].Status != http.StatusNoContent || dels[0].Path != dels[1].Path {
		t.Errorf("bridge deletes %+v, want the call's (failed) and the sweep's", dels)
	}
}
