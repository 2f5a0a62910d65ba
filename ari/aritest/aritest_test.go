package aritest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/ari/aritest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 3 * time.Second

// start runs a fake and a real client connected to it; both stop at cleanup.
func start(t *testing.T, opts ...aritest.Option) (*aritest.Server, *ari.Client) {
	t.Helper()
	s := aritest.New(t, opts...)
	c := client(t, s)
	// Wait for Connected itself, not just WaitConnected, so that no later
	// subscription sees it.
	up := c.Subscribe(ari.Filter{Types: []string{ari.TypeConnected}})
	defer up.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done }) // runs before the server's own cleanup
	until(t, up, ari.TypeConnected)
	return s, c
}

// client is a REST-only client of s (no events socket unless Run).
func client(t *testing.T, s *aritest.Server) *ari.Client {
	t.Helper()
	cfg := s.Config()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := ari.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// until reads sub until an event of one of types arrives and returns all read.
func until(t *testing.T, sub *ari.Subscription, types ...string) []ari.Event {
	t.Helper()
	var got []ari.Event
	deadline := time.After(wait)
	for {
		select {
		case ev := <-sub.Events():
			got = append(got, ev)
			if slices.Contains(types, ev.EventType()) {
				return got
			}
		case <-deadline:
			t.Fatalf("no %v within %v; got %s", types, wait, describe(got))
			return nil
		}
	}
}

// quiet asserts sub receives nothing for d.
func quiet(t *testing.T, sub *ari.Subscription, d time.Duration) {
	t.Helper()
	select {
	case ev := <-sub.Events():
		t.Fatalf("unexpected event %s", describe([]ari.Event{ev}))
	case <-time.After(d):
	}
}

// describe renders events compactly: "Dial()", "Dial(ANSWER)", "ChannelDestroyed(17)".
func describe(evs []ari.Event) string {
	var parts []string
	for _, ev := range evs {
		p := ev.EventType()
		switch e := ev.(type) {
		case *ari.Dial:
			p += "(" + e.Dialstatus + ")"
		case *ari.ChannelStateChange:
			p += "(" + e.Channel.State + ")"
		case *ari.ChannelDestroyed:
			p += "(" + itoa(e.Cause) + ")"
		case *ari.ChannelHangupRequest:
			p += "(" + itoa(e.Cause) + ")"
		case *ari.ChannelDialplan:
			p += "(" + e.DialplanApp + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

func itoa(n int) string { return strconv.Itoa(n) }

// take reads exactly n events from sub.
func take(t *testing.T, sub *ari.Subscription, n int) []ari.Event {
	t.Helper()
	var got []ari.Event
	deadline := time.After(wait)
	for len(got) < n {
		select {
		case ev := <-sub.Events():
			got = append(got, ev)
		case <-deadline:
			t.Fatalf("got %d of %d events within %v: %s", len(got), n, wait, describe(got))
		}
	}
	return got
}

func status(err error) int {
	var e *ari.Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func TestOriginateBehaviours(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    aritest.Behavior
		want string
	}{
		{"default answers", aritest.Answer(0), "Dial() ChannelStateChange(Up) Dial(ANSWER) StasisStart"},
		{"ring then answer", aritest.Ring(5 * time.Millisecond).Answer(5 * time.Millisecond),
			"Dial() ChannelStateChange(Ringing) Dial(RINGING) ChannelStateChange(Up) Dial(ANSWER) StasisStart"},
		{"busy", aritest.Busy(), "Dial() Dial(BUSY) ChannelHangupRequest(17) ChannelDestroyed(17)"},
		{"no answer", aritest.Ring(0).NoAnswer(),
			"Dial() ChannelStateChange(Ringing) Dial(RINGING) Dial(NOANSWER) ChannelHangupRequest(19) ChannelDestroyed(19)"},
		{"congestion", aritest.Congestion(), "Dial() Dial(CONGESTION) ChannelHangupRequest(34) ChannelDestroyed(34)"},
		{"unavailable", aritest.Unavailable(), "Dial() Dial(CHANUNAVAIL) ChannelHangupRequest(20) ChannelDestroyed(20)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := start(t)
			s.Endpoint("PJSIP/", tc.b)
			id := ari.NewID()
			sub := c.Channel(id).Subscribe()
			defer sub.Close()
			ch, err := c.Channels().Originate(ctxT(t), ari.OriginateRequest{
				Endpoint: "PJSIP/101", App: c.Application(), AppArgs: "leg,7", ChannelID: id, CallerID: `"Ann" <200>`,
			})
			if err != nil {
				t.Fatal(err)
			}
			if ch.ID != id || !strings.HasPrefix(ch.Name, "PJSIP/101-") || ch.State != "Down" || ch.Caller.Number != "200" {
				t.Errorf("originate reply %+v", ch)
			}
			got := until(t, sub, ari.TypeStasisStart, ari.TypeChannelDestroyed)
			if d := describe(got); d != tc.want {
				t.Fatalf("events:\n got %s\nwant %s", d, tc.want)
			}
			if st, ok := got[len(got)-1].(*ari.StasisStart); ok {
				if !slices.Equal(st.Args, []string{"leg", "7"}) || !st.Channel.InStasis(c.Application()) {
					t.Errorf("StasisStart args %v dialplan %+v", st.Args, st.Channel.Dialplan)
				}
				if err := c.Channel(id).Hangup(ctxT(t), "normal"); err != nil {
					t.Fatal(err)
				}
				if d := describe(until(t, sub, ari.TypeChannelDestroyed)); d != "ChannelHangupRequest(16) StasisEnd ChannelDestroyed(16)" {
					t.Errorf("hangup events: %s", d)
				}
			} else if d, _ := got[len(got)-1].(*ari.ChannelDestroyed); d.CauseTxt != aritest.CauseText(d.Cause) {
				t.Errorf("cause_txt %q", d.CauseTxt)
			}
			s.AssertClean(t)
		})
	}
}

func TestCreateAndDial(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    aritest.Behavior
		want string
	}{
		{"answer", aritest.Ring(0).Answer(10 * time.Millisecond),
			"Dial() ChannelStateChange(Ringing) Dial(RINGING) ChannelStateChange(Up) Dial(ANSWER)"},
		{"busy", aritest.Busy(), "Dial() Dial(BUSY) ChannelHangupRequest(17) StasisEnd ChannelDestroyed(17)"},
		{"answer then far hangup with DTMF", aritest.Answer(0).DTMF(0, "1#").Hangup(5*time.Millisecond, aritest.CauseNormalClearing),
			"Dial() ChannelStateChange(Up) Dial(ANSWER) ChannelDtmfReceived ChannelDtmfReceived ChannelHangupRequest(16) StasisEnd ChannelDestroyed(16)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := start(t)
			s.Endpoint("Local/600@from-patchbay", tc.b)
			id := ari.NewID()
			sub := c.Channel(id).Subscribe()
			defer sub.Close()
			ctx := ctxT(t)
			if _, err := c.Channels().Create(ctx, ari.CreateRequest{
				Endpoint: "Local/600@from-patchbay", App: c.Application(), AppArgs: "leg", ChannelID: id, Formats: "ulaw",
			}); err != nil {
				t.Fatal(err)
			}
			if st := until(t, sub, ari.TypeStasisStart)[0].(*ari.StasisStart); st.Channel.State != "Down" || st.Args[0] != "leg" {
				t.Fatalf("StasisStart %+v", st)
			}
			if err := c.Channel(id).Answer(ctx); status(err) != http.StatusPreconditionFailed {
				t.Errorf("answer of an undialled channel: %v, want 412", err)
			}
			if err := c.Channel(id).Dial(ctx, "", 0); err != nil {
				t.Fatal(err)
			}
			got := take(t, sub, len(strings.Fields(tc.want)))
			if d := describe(got); d != tc.want {
				t.Fatalf("events:\n got %s\nwant %s", d, tc.want)
			}
			if _, alive := s.Channel(id); alive {
				if err := c.Channel(id).Dial(ctx, "", 0); status(err) != http.StatusConflict {
					t.Errorf("second dial: %v, want 409", err)
				}
				if err := c.Channel(id).Hangup(ctx, ""); err != nil {
					t.Fatal(err)
				}
			}
			s.AssertClean(t)
		})
	}
}

func TestDialTimeoutAndCancel(t *testing.T) {
	s, c := start(t)
	s.Endpoint("PJSIP/", aritest.Never())
	ctx := ctxT(t)
	a, b := ari.NewID(), ari.NewID()
	sub := c.Subscribe(ari.Filter{IDs: []string{a, b}, Types: []string{ari.TypeDial, ari.TypeChannelDestroyed}})
	defer sub.Close()
	for _, id := range []string{a, b} {
		if _, err := c.Channels().Create(ctx, ari.CreateRequest{Endpoint: "PJSIP/101", App: c.Application(), ChannelID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Channel(a).Dial(ctx, "", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.Channel(b).Dial(ctx, a, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Channel(b).Hangup(ctx, "normal"); err != nil {
		t.Fatal(err)
	}
	got := describe(until(t, sub, ari.TypeChannelDestroyed))
	got += " " + describe(until(t, sub, ari.TypeChannelDestroyed))
	if want := "Dial() Dial(RINGING) Dial() Dial(RINGING) Dial(CANCEL) ChannelDestroyed(16) Dial(NOANSWER) ChannelDestroyed(19)"; got != want {
		t.Errorf("events:\n got %s\nwant %s", got, want)
	}
	s.AssertClean(t)
}

func TestExternalMedia(t *testing.T) {
	t.Run("with events socket", func(t *testing.T) {
		s, c := start(t)
		ctx := ctxT(t)
		em, err := c.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{App: c.Application(), ExternalHost: "127.0.0.1:40000", Format: "ulaw"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(em.Channel.Name, "UnicastRTP/127.0.0.1:40000-") || em.LocalAddress != "127.0.0.1" || em.LocalPort == 0 {
			t.Errorf("externalMedia reply %+v", em)
		}
		ch, err := c.Channel(em.Channel.ID).Get(ctx)
		if err != nil || ch.State != "Up" || !ch.InStasis(c.Application()) {
			t.Fatalf("channel after StasisStart: %+v, %v", ch, err)
		}
		br, err := c.Bridges().Create(ctx, ari.BridgeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Bridge(br.ID).AddChannel(ctx, ari.AddChannelOptions{}, em.Channel.ID); err != nil {
			t.Fatalf("bridge the externalMedia channel at once: %v", err)
		}
		_ = c.Bridge(br.ID).Delete(ctx)
		_ = c.Channel(em.Channel.ID).Hangup(ctx, "")
		s.AssertClean(t)
	})
	t.Run("without events socket", func(t *testing.T) {
		s := aritest.New(t)
		c := client(t, s)
		ctx := ctxT(t)
		em, err := c.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{App: c.Application(), ExternalHost: "127.0.0.1:40000", Format: "ulaw"})
		if err != nil {
			t.Fatalf("externalMedia succeeds even with no app registered: %v", err)
		}
		br, err := c.Bridges().Create(ctx, ari.BridgeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		// Stasis() failed for the unregistered app and the channel was hung up.
		err = c.Bridge(br.ID).AddChannel(ctx, ari.AddChannelOptions{}, em.Channel.ID)
		if !errors.Is(err, ari.ErrBadRequest) || !strings.Contains(err.Error(), "Channel not found") {
			t.Errorf("addChannel: %v, want 400 Channel not found", err)
		}
		if _, err := c.Channel(em.Channel.ID).Get(ctx); !ari.IsNotFound(err) {
			t.Errorf("get: %v, want 404", err)
		}
		_ = c.Bridge(br.ID).Delete(ctx)
		s.AssertClean(t)
	})
	t.Run("bad requests", func(t *testing.T) {
		s := aritest.New(t)
		c := client(t, s)
		for _, r := range []ari.ExternalMediaRequest{
			{App: "a", ExternalHost: "nohost", Format: "ulaw"},
			{App: "a", ExternalHost: "127.0.0.1:1", Format: "nosuch"},
		} {
			if _, err := c.Channels().ExternalMedia(ctxT(t), r); status(err) != http.StatusBadRequest {
				t.Errorf("%+v: %v, want 400", r, err)
			}
		}
		if _, err := c.Channels().ExternalMedia(ctxT(t), ari.ExternalMediaRequest{App: "a", ExternalHost: "h:1", Format: "ulaw", Transport: "websocket"}); status(err) != http.StatusNotImplemented {
			t.Errorf("websocket transport: %v, want 501", err)
		}
	})
}

func TestBridges(t *testing.T) {
	s, c := start(t)
	ctx := ctxT(t)
	phone := s.Incoming(aritest.Call{Endpoint: "PJSIP/101", CallerNumber: "101", Answered: true})
	em, err := c.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{App: c.Application(), ExternalHost: "127.0.0.1:40000", Format: "ulaw"})
	if err != nil {
		t.Fatal(err)
	}
	b1, b2 := ari.NewID(), ari.NewID()
	sub := c.Subscribe(ari.Filter{IDs: []string{b1, b2}})
	defer sub.Close()
	for _, id := range []string{b1, b2} {
		if _, err := c.Bridges().Create(ctx, ari.BridgeRequest{ID: id, Name: "room-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Bridges().Create(ctx, ari.BridgeRequest{ID: b1}); status(err) != http.StatusConflict {
		t.Errorf("duplicate bridge ID: %v, want 409", err)
	}
	if err := c.Bridge(b1).AddChannel(ctx, ari.AddChannelOptions{}, phone, em.Channel.ID); err != nil {
		t.Fatal(err)
	}
	if d := describe(until(t, sub, ari.TypeChannelEnteredBridge)) + " " + describe(until(t, sub, ari.TypeChannelEnteredBridge)); d != "ChannelEnteredBridge ChannelEnteredBridge" {
		t.Errorf("events %s", d)
	}
	if br, err := c.Bridge(b1).Get(ctx); err != nil || len(br.Channels) != 2 || br.BridgeType != "mixing" || br.Technology != "simple_bridge" {
		t.Errorf("bridge %+v, %v", br, err)
	}
	if app, err := c.Applications().Get(ctx, c.Application()); err != nil || !slices.Contains(app.BridgeIDs, b1) || !slices.Contains(app.ChannelIDs, phone) {
		t.Errorf("application %+v, %v", app, err)
	}
	// A channel added to another bridge moves there, as in Asterisk.
	if err := c.Bridge(b2).AddChannel(ctx, ari.AddChannelOptions{}, phone); err != nil {
		t.Fatal(err)
	}
	if d := describe(until(t, sub, ari.TypeChannelEnteredBridge)); d != "ChannelLeftBridge ChannelEnteredBridge" {
		t.Errorf("move events %s", d)
	}
	for _, tc := range []struct {
		name   string
		err    error
		status int
	}{
		{"remove a channel that is elsewhere", c.Bridge(b1).RemoveChannel(ctx, phone), 422},
		{"add an unknown channel", c.Bridge(b1).AddChannel(ctx, ari.AddChannelOptions{}, "nosuch"), 400},
		{"add to an unknown bridge", c.Bridge("nosuch").AddChannel(ctx, ari.AddChannelOptions{}, phone), 404},
		{"delete an unknown bridge", c.Bridge("nosuch").Delete(ctx), 404},
	} {
		if status(tc.err) != tc.status {
			t.Errorf("%s: %v, want %d", tc.name, tc.err, tc.status)
		}
	}
	if err := c.Bridge(b2).RemoveChannel(ctx, phone); err != nil {
		t.Fatal(err)
	}
	if d := describe(until(t, sub, ari.TypeChannelLeftBridge)); d != "ChannelLeftBridge" {
		t.Errorf("remove events %s", d)
	}
	if err := c.Bridge(b1).Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if d := describe(until(t, sub, ari.TypeBridgeDestroyed)); d != "ChannelLeftBridge BridgeDestroyed" {
		t.Errorf("delete events %s", d)
	}
	if ch, ok := s.Channel(em.Channel.ID); !ok || !ch.InStasis(c.Application()) {
		t.Errorf("channel of a deleted bridge stays in Stasis: %+v", ch)
	}
	_ = c.Bridge(b2).Delete(ctx)
	_ = c.Channel(phone).Hangup(ctx, "")
	_ = c.Channel(em.Channel.ID).Hangup(ctx, "")
	s.AssertClean(t)
}

func TestContinue(t *testing.T) {
	s, c := start(t)
	s.Dialplan("from-patchbay", "600", aritest.AnswerEcho()...)
	ctx := ctxT(t)
	em, err := c.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{App: c.Application(), ExternalHost: "127.0.0.1:4000", Format: "ulaw"})
	if err != nil {
		t.Fatal(err)
	}
	phone := s.Incoming(aritest.Call{Endpoint: "PJSIP/101", Args: []string{"inbound"}})
	sub := c.Subscribe(ari.Filter{Types: []string{ari.TypeStasisEnd, ari.TypeChannelDialplan, ari.TypeChannelStateChange,
		ari.TypeChannelHangupRequest, ari.TypeChannelDestroyed}})
	defer sub.Close()
	// Subscribed, the app keeps hearing about the channel after StasisEnd.
	if _, err := c.Applications().Subscribe(ctx, c.Application(), "channel:"+phone); err != nil {
		t.Fatal(err)
	}
	if err := c.Channel(phone).Continue(ctx, ari.ContinueOptions{Context: "from-patchbay", Extension: "600", Priority: 1}); err != nil {
		t.Fatal(err)
	}
	if d := describe(until(t, sub, "ChannelDialplan")) + " " + describe(until(t, sub, "ChannelDialplan")); d != "StasisEnd ChannelDialplan(Answer) ChannelStateChange(Up) ChannelDialplan(Echo)" {
		t.Errorf("events %s", d)
	}
	ch, err := c.Channel(phone).Get(ctx)
	if err != nil || ch.Dialplan != (ari.DialplanCEP{Context: "from-patchbay", Exten: "600", Priority: 2, AppName: "Echo"}) || ch.InStasis(c.Application()) {
		t.Errorf("after continue: %+v, %v", ch.Dialplan, err)
	}
	if err := c.Channel(phone).Answer(ctx); status(err) != http.StatusConflict {
		t.Errorf("answer outside Stasis: %v, want 409", err)
	}
	br, _ := c.Bridges().Create(ctx, ari.BridgeRequest{})
	if err := c.Bridge(br.ID).AddChannel(ctx, ari.AddChannelOptions{}, phone); status(err) != http.StatusUnprocessableEntity {
		t.Errorf("bridge a channel outside Stasis: %v, want 422", err)
	}
	if err := s.HangupFromFar(phone, aritest.CauseNormalClearing); err != nil {
		t.Fatal(err)
	}
	if d := describe(until(t, sub, ari.TypeChannelDestroyed)); d != "ChannelHangupRequest(16) ChannelDestroyed(16)" {
		t.Errorf("hangup in the dialplan: %s", d)
	}
	_ = c.Bridge(br.ID).Delete(ctx)
	_ = c.Channel(em.Channel.ID).Hangup(ctx, "")

	// Unsubscribed, a continued inbound channel goes quiet after StasisEnd.
	s.Dialplan("internal", "101", aritest.AppAnswer(), aritest.AppWait(10*time.Millisecond), aritest.AppHangup(aritest.CauseUserBusy))
	phone = s.Incoming(aritest.Call{Endpoint: "PJSIP/102"})
	sub2 := c.Channel(phone).Subscribe()
	defer sub2.Close()
	if err := c.Channel(phone).Continue(ctx, ari.ContinueOptions{Context: "internal", Extension: "101"}); err != nil {
		t.Fatal(err)
	}
	if d := describe(until(t, sub2, ari.TypeStasisEnd)); !strings.HasSuffix(d, "StasisEnd") {
		t.Errorf("events %s", d)
	}
	quiet(t, sub2, 50*time.Millisecond)
	s.AssertClean(t)
}

func TestIncoming(t *testing.T) {
	s, c := start(t)
	ctx := ctxT(t)
	sub := c.Subscribe(ari.Filter{Types: []string{ari.TypeStasisStart}})
	defer sub.Close()
	id := s.Incoming(aritest.Call{Endpoint: "PJSIP/101", CallerNumber: "101", CallerName: "Alice", Args: []string{"inbound", "alice"}, Format: "alaw", Exten: "700"})
	st := until(t, sub, ari.TypeStasisStart)[0].(*ari.StasisStart)
	if st.Channel.ID != id || st.Channel.State != "Ring" || st.Channel.Caller != (ari.CallerID{Name: "Alice", Number: "101"}) ||
		!slices.Equal(st.Args, []string{"inbound", "alice"}) || st.Channel.Dialplan.Exten != "700" || !strings.HasPrefix(st.Channel.Name, "PJSIP/101-") {
		t.Errorf("StasisStart %+v", st)
	}
	chSub := c.Channel(id).Subscribe()
	defer chSub.Close()
	if v, err := c.Channel(id).Variable(ctx, "CHANNEL(audionativeformat)"); err != nil || v != "alaw" {
		t.Errorf("native format %q, %v", v, err)
	}
	if _, err := c.Channel(id).Variable(ctx, "NOSUCH"); !ari.IsNotFound(err) {
		t.Errorf("unknown variable: %v, want 404", err)
	}
	if err := c.Channel(id).SetVariable(ctx, "CALLERID(num)", "+4420"); err != nil {
		t.Fatal(err)
	}
	if err := c.Channel(id).SetVariable(ctx, "FOO", "bar"); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Channel(id).Variable(ctx, "CALLERID(num)"); v != "+4420" {
		t.Errorf("CALLERID(num) %q", v)
	}
	for _, step := range []func() error{
		func() error { return c.Channel(id).Ring(ctx) },
		func() error { return c.Channel(id).Answer(ctx) },
		func() error { return c.Channel(id).SendDTMF(ctx, "12", ari.DTMFOptions{}) },
		func() error { return c.Channel(id).Hold(ctx) },
		func() error { return c.Channel(id).Mute(ctx, "in") },
		func() error { return s.DTMFFromFar(id, "5") },
		func() error { return s.HangupFromFar(id, aritest.CauseUserBusy) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	got := until(t, chSub, ari.TypeChannelDestroyed)
	if d := describe(got); d != "ChannelVarset ChannelStateChange(Up) ChannelDtmfReceived ChannelHangupRequest(17) StasisEnd ChannelDestroyed(17)" {
		t.Errorf("events %s", d)
	}
	if d := got[len(got)-1].(*ari.ChannelDestroyed); d.CauseTxt != "User busy" {
		t.Errorf("cause_txt %q", d.CauseTxt)
	}
	if dt := got[2].(*ari.ChannelDtmfReceived); dt.Digit != "5" || dt.DurationMs == 0 {
		t.Errorf("DTMF %+v", dt)
	}
	if err := s.HangupFromFar(id, 0); err == nil {
		t.Error("far hangup of a gone channel succeeded")
	}
	s.AssertClean(t)
}

func TestHangupReasons(t *testing.T) {
	s, c := start(t)
	ctx := ctxT(t)
	for _, tc := range []struct {
		reason, code string
		status, want int
	}{
		{"", "", 204, 16}, {"normal", "", 204, 16}, {"busy", "", 204, 17}, {"congestion", "", 204, 34},
		{"no_answer", "", 204, 19}, {"unallocated", "", 204, 1}, {"failure", "", 204, 38}, {"rejected", "", 204, 21},
		{"answered_elsewhere", "", 204, 26}, {"", "41", 204, 41}, {"nonsense", "", 400, 0}, {"", "x", 400, 0}, {"busy", "17", 400, 0},
	} {
		id := s.Incoming(aritest.Call{Endpoint: "PJSIP/101"})
		sub := c.Channel(id).Subscribe(ari.TypeChannelDestroyed)
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, s.URL()+"/ari/channels/"+id+"?reason="+tc.reason+"&reason_code="+tc.code, nil)
		req.SetBasicAuth(aritest.DefaultUsername, aritest.DefaultPassword)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("reason=%q code=%q: status %d, want %d", tc.reason, tc.code, resp.StatusCode, tc.status)
		} else if tc.status == 204 {
			if d := until(t, sub, ari.TypeChannelDestroyed)[0].(*ari.ChannelDestroyed); d.Cause != tc.want {
				t.Errorf("reason=%q code=%q: cause %d, want %d", tc.reason, tc.code, d.Cause, tc.want)
			}
		} else {
			_ = c.Channel(id).Hangup(ctx, "")
		}
		sub.Close()
	}
	if err := c.Channel("nosuch").Hangup(ctx, ""); !ari.IsNotFound(err) {
		t.Errorf("hangup of unknown channel: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
	s.AssertClean(t)
}

func TestAuth(t *testing.T) {
	s := aritest.New(t, aritest.WithCredentials("u", "p"), aritest.WithApplication("app1"))
	cfg := s.Config()
	if cfg.Username != "u" || cfg.Application != "app1" {
		t.Fatalf("config %v", cfg)
	}
	cfg.Password = "wrong"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := ari.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Asterisk().Ping(ctxT(t)); !ari.IsUnauthorized(err) {
		t.Errorf("ping with a wrong password: %v", err)
	}
	if err := c.Run(ctxT(t)); !ari.IsUnauthorized(err) {
		t.Errorf("Run with a wrong password: %v", err)
	}
	good := client(t, s)
	if p, err := good.Asterisk().Ping(ctxT(t)); err != nil || p.Ping != "pong" || p.AsteriskID != aritest.DefaultAsteriskID {
		t.Errorf("ping %+v, %v", p, err)
	}
	if info, err := good.Asterisk().Info(ctxT(t)); err != nil || info.System.EntityID != aritest.DefaultAsteriskID {
		t.Errorf("info %+v, %v", info, err)
	}
}

func TestFaults(t *testing.T) {
	s := aritest.New(t)
	c := client(t, s)
	ctx := ctxT(t)
	s.FailNext("POST", "/bridges", http.StatusServiceUnavailable)
	if _, err := c.Bridges().Create(ctx, ari.BridgeRequest{}); status(err) != 503 {
		t.Errorf("first create: %v, want 503", err)
	}
	br, err := c.Bridges().Create(ctx, ari.BridgeRequest{})
	if err != nil {
		t.Fatalf("second create: %v", err)
	}
	s.FailAlways("*", "/ari/bridges/*", http.StatusInternalServerError)
	for range 2 {
		if _, err := c.Bridge(br.ID).Get(ctx); status(err) != 500 {
			t.Errorf("get: %v, want 500", err)
		}
	}
	s.ClearFaults()
	s.Delay("GET", "/asterisk/ping", 100*time.Millisecond)
	t0 := time.Now()
	if _, err := c.Asterisk().Ping(ctx); err != nil || time.Since(t0) < 100*time.Millisecond {
		t.Errorf("delayed ping took %v, %v", time.Since(t0), err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := c.Asterisk().Ping(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ping past its deadline: %v", err)
	}
	s.ClearFaults()
	if n := s.Count("POST", "/bridges"); n != 2 {
		t.Errorf("Count POST /bridges = %d", n)
	}
	if n := s.Count("", "/bridges/*"); n != 2 {
		t.Errorf("Count /bridges/* = %d", n)
	}
	reqs := s.Requests()
	if r := reqs[0]; r.Method != "POST" || r.Path != "/bridges" || r.Query.Get("type") != "mixing" || r.Status != 503 {
		t.Errorf("first request %+v", r)
	}
	_ = c.Bridge(br.ID).Delete(ctx)
	s.AssertClean(t)
}

func TestFailNthDelayNth(t *testing.T) {
	s := aritest.New(t)
	c := client(t, s)
	ctx := ctxT(t)
	s.FailNth(2, "POST", "/bridges", http.StatusInternalServerError)
	s.DelayNth(3, "POST", "/bridges", 100*time.Millisecond)
	var got []int
	var took []time.Duration
	for range 4 {
		t0 := time.Now()
		br, err := c.Bridges().Create(ctx, ari.BridgeRequest{})
		took = append(took, time.Since(t0))
		got = append(got, status(err))
		if err == nil {
			_ = c.Bridge(br.ID).Delete(ctx)
		}
	}
	if !slices.Equal(got, []int{0, 500, 0, 0}) {
		t.Errorf("statuses %v, want only the second to fail", got)
	}
	if took[2] < 100*time.Millisecond || took[3] >= 100*time.Millisecond {
		t.Errorf("took %v: want only the third delayed", took)
	}
	s.AssertClean(t)
}

func TestFreezeThaw(t *testing.T) {
	s, c := start(t)
	sub := c.Subscribe(ari.Filter{Types: []string{ari.TypeConnected, ari.TypeDisconnected, ari.TypeReconciled, ari.TypeStasisStart}})
	defer sub.Close()
	id := s.Incoming(aritest.Call{Endpoint: "PJSIP/101"})
	until(t, sub, ari.TypeStasisStart)
	s.Freeze()
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Channel(id).Get(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("REST while frozen: %v, want a timeout", err)
	}
	// No pongs: the client declares the socket dead (2.5 ping intervals).
	if d := describe(until(t, sub, ari.TypeDisconnected)); d != "Disconnected" {
		t.Errorf("events %s", d)
	}
	s.Thaw()
	got := until(t, sub, ari.TypeReconciled)
	if d := describe(got); d != "Connected Reconciled" || !got[0].(*ari.Connected).Reconnect {
		t.Errorf("after thaw: %s", d)
	}
	if r := got[1].(*ari.Reconciled); !slices.Contains(r.AliveChannels, id) || len(r.GoneChannels) != 0 {
		t.Errorf("reconciled %+v", r)
	}
	_ = c.Channel(id).Hangup(ctxT(t), "")
	s.AssertClean(t)
}

func TestDropEventsAndRestart(t *testing.T) {
	s, c := start(t)
	ctx := ctxT(t)
	sub := c.Subscribe(ari.Filter{Types: []string{ari.TypeConnected, ari.TypeDisconnected, ari.TypeReconciled, ari.TypeStasisStart}})
	defer sub.Close()
	em, err := c.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{App: c.Application(), ExternalHost: "127.0.0.1:40000", Format: "ulaw"})
	if err != nil {
		t.Fatal(err)
	}
	br, err := c.Bridges().Create(ctx, ari.BridgeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	until(t, sub, ari.TypeStasisStart)

	s.DropEvents()
	got := until(t, sub, ari.TypeReconciled)
	if d := describe(got); d != "Disconnected Connected Reconciled" {
		t.Fatalf("after drop: %s", d)
	}
	if r := got[2].(*ari.Reconciled); !slices.Contains(r.AliveChannels, em.Channel.ID) || !slices.Contains(r.AliveBridges, br.ID) {
		t.Errorf("reconciled after drop %+v", r)
	}
	// Events flow again on the new socket.
	s.Incoming(aritest.Call{Endpoint: "PJSIP/101"})
	until(t, sub, ari.TypeStasisStart)

	s.Restart()
	got = until(t, sub, ari.TypeReconciled)
	r := got[len(got)-1].(*ari.Reconciled)
	if !slices.Contains(r.GoneChannels, em.Channel.ID) || !slices.Contains(r.GoneBridges, br.ID) || len(r.AliveChannels) != 0 {
		t.Errorf("reconciled after restart %+v", r)
	}
	if len(s.Channels()) != 0 || len(s.Bridges()) != 0 {
		t.Errorf("state survived a restart")
	}
	if !s.Registered(c.Application()) {
		t.Error("app not registered again after the restart")
	}
}

func TestEchoMedia(t *testing.T) {
	s, c := start(t, aritest.WithEchoMedia())
	s.Dialplan("from-patchbay", "600", aritest.AnswerEcho()...)
	ctx := ctxT(t)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	em, err := c.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{App: c.Application(), ExternalHost: conn.LocalAddr().String(), Format: "ulaw"})
	if err != nil {
		t.Fatal(err)
	}
	asterisk, err := net.ResolveUDPAddr("udp", em.LocalAddrPort())
	if err != nil {
		t.Fatal(err)
	}
	seq := byte(0)
	// echoes sends one RTP packet from pc and reports whether it came back.
	echoes := func(pc *net.UDPConn) bool {
		seq++
		pkt := append([]byte{0x80, 0, 0, seq, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 160)...)
		if _, err := pc.WriteToUDP(pkt, asterisk); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			return false
		}
		if from.String() != asterisk.String() || n != len(pkt) || buf[3] != seq {
			t.Errorf("echo from %v, %d bytes, seq %d; want %v, %d, %d", from, n, buf[3], asterisk, len(pkt), seq)
		}
		return true
	}
	if echoes(conn) {
		t.Error("echo before the channel is connected")
	}
	phone := s.Incoming(aritest.Call{Endpoint: "PJSIP/101"})
	br, _ := c.Bridges().Create(ctx, ari.BridgeRequest{})
	if err := c.Bridge(br.ID).AddChannel(ctx, ari.AddChannelOptions{}, em.Channel.ID, phone); err != nil {
		t.Fatal(err)
	}
	if echoes(conn) {
		t.Error("echo while the phone is still ringing")
	}
	if err := c.Channel(phone).Answer(ctx); err != nil {
		t.Fatal(err)
	}
	if !echoes(conn) {
		t.Error("no echo in a bridge with an answered channel")
	}
	if echoes(other) {
		t.Error("echo of a packet from a socket other than external_host")
	}
	s.Freeze()
	if echoes(conn) {
		t.Error("echo while frozen")
	}
	s.Thaw()
	if err := c.Bridge(br.ID).Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Channel(em.Channel.ID).Continue(ctx, ari.ContinueOptions{Context: "from-patchbay", Extension: "600", Priority: 1}); err != nil {
		t.Fatal(err)
	}
	if !echoes(conn) {
		t.Error("no echo after continue into Answer+Echo")
	}
	_ = c.Channel(phone).Hangup(ctx, "")
	_ = c.Channel(em.Channel.ID).Hangup(ctx, "")
	if echoes(conn) {
		t.Error("echo after hangup")
	}
	s.AssertClean(t)
}

func TestPlaybackRecordSnoop(t *testing.T) {
	s, c := start(t, aritest.WithPlaybackDuration(20*time.Millisecond))
	ctx := ctxT(t)
	id := ari.NewID()
	sub := c.Channel(id).Subscribe() // before the call arrives, so StasisStart is not missed
	defer sub.Close()
	s.Incoming(aritest.Call{Endpoint: "PJSIP/101", ID: id, Answered: true})
	until(t, sub, ari.TypeStasisStart)
	pb, err := c.Channel(id).Play(ctx, ari.PlayOptions{Media: []string{"sound:hello-world"}, PlaybackID: "pb1"})
	if err != nil || pb.ID != "pb1" || pb.TargetURI != "channel:"+id || pb.State != "queued" {
		t.Fatalf("play %+v, %v", pb, err)
	}
	if d := describe(until(t, sub, ari.TypePlaybackFinished)); d != "PlaybackStarted PlaybackFinished" {
		t.Errorf("playback events %s", d)
	}
	if _, err := c.Playbacks().Get(ctx, "pb1"); !ari.IsNotFound(err) {
		t.Errorf("finished playback: %v", err)
	}
	rec, err := c.Channel(id).Record(ctx, ari.RecordOptions{Name: "r1", Format: "wav"})
	if err != nil || rec.Name != "r1" {
		t.Fatalf("record %+v, %v", rec, err)
	}
	until(t, sub, ari.TypeRecordingStarted)
	if _, err := c.Channel(id).Record(ctx, ari.RecordOptions{Name: "r1", Format: "wav"}); status(err) != http.StatusConflict {
		t.Errorf("duplicate recording: %v, want 409", err)
	}
	if _, err := c.Channel(id).Record(ctx, ari.RecordOptions{Name: "r2", Format: "mp5"}); status(err) != http.StatusUnprocessableEntity {
		t.Errorf("unknown format: %v, want 422", err)
	}
	if err := c.Recordings().Stop(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	until(t, sub, ari.TypeRecordingFinished)
	if st, err := c.Recordings().ListStored(ctx); err != nil || len(st) != 1 || st[0].Name != "r1" {
		t.Errorf("stored %+v, %v", st, err)
	}

	snoopSub := c.Subscribe(ari.Filter{Types: []string{ari.TypeStasisStart, ari.TypeChannelDestroyed}})
	defer snoopSub.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/ari/channels/"+id+"/snoop?spy=in&app="+c.Application()+"&snoopId=snoop1", nil)
	req.SetBasicAuth(aritest.DefaultUsername, aritest.DefaultPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("snoop: %d", resp.StatusCode)
	}
	if st := until(t, snoopSub, ari.TypeStasisStart)[0].(*ari.StasisStart); st.Channel.ID != "snoop1" || !strings.HasPrefix(st.Channel.Name, "Snoop/"+id) {
		t.Errorf("snoop StasisStart %+v", st.Channel)
	}
	if err := c.Channel(id).Hangup(ctx, ""); err != nil {
		t.Fatal(err)
	}
	// The snoop channel goes with the channel it spies on.
	for range 2 {
		until(t, snoopSub, ari.TypeChannelDestroyed)
	}
	http.DefaultClient.CloseIdleConnections()
	s.AssertClean(t)
}

func TestMalformedRequests(t *testing.T) {
	s := aritest.New(t)
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/ari/channels?endpoint=PJSIP/1&app=a", "{not json", 400},
		{"POST", "/ari/channels?endpoint=PJSIP/1&app=a", `{"variables": {"A": 1}}`, 400},
		{"POST", "/ari/channels?endpoint=nope&app=a", "", 400},
		{"POST", "/ari/channels?endpoint=PJSIP/1", "", 400},
		{"POST", "/ari/channels?endpoint=PJSIP/1&app=a&timeout=soon", "", 400},
		{"POST", "/ari/channels?app=a", `{"endpoint": "PJSIP/1", "timeout": 5}`, 200}, // body fields count as parameters
		{"POST", "/ari/channels/create?endpoint=PJSIP/1&app=a&formats=nosuch", "", 400},
		{"POST", "/ari/channels/" + strings.Repeat("x", 200) + "?endpoint=PJSIP/1&app=a", "", 400},
		{"POST", "/ari/bridges?type=weird", "", 400},
		{"POST", "/ari/bridges/x/addChannel", "", 404},
		{"GET", "/ari/nosuch", "", 404},
		{"GET", "/elsewhere", "", 404},
		{"GET", "/ari/events", "", 400},
		{"GET", "/ari/events?app=a", "", 400}, // not a WebSocket upgrade
		{"POST", "/ari/applications/a/subscription?eventSource=channel:x", "", 404},
		{"GET", "/ari/channels/x/variable", "", 400},
		{"POST", "/ari/asterisk/variable?variable=G&value=1", "", 204},
	} {
		req, _ := http.NewRequest(tc.method, s.URL()+tc.path, strings.NewReader(tc.body))
		req.SetBasicAuth(aritest.DefaultUsername, aritest.DefaultPassword)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Message string `json:"message"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s %q: %d %q, want %d", tc.method, tc.path, tc.body, resp.StatusCode, e.Message, tc.status)
		} else if tc.status >= 400 && e.Message == "" {
			t.Errorf("%s %s: %d without a message", tc.method, tc.path, tc.status)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestEventsOnlyForOwnChannels(t *testing.T) {
	s, c := start(t)
	other := s.Config()
	other.Application = "other-app"
	other.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c2, err := ari.New(other)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c2.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := c2.WaitConnected(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	mine := c.Subscribe(ari.Filter{Types: []string{ari.TypeStasisStart}})
	defer mine.Close()
	theirs := c2.Subscribe(ari.Filter{Types: []string{ari.TypeStasisStart}})
	defer theirs.Close()
	id := s.Incoming(aritest.Call{Endpoint: "PJSIP/101", App: "other-app"})
	if st := until(t, theirs, ari.TypeStasisStart)[0].(*ari.StasisStart); st.Channel.ID != id || st.Application != "other-app" {
		t.Errorf("StasisStart %+v", st)
	}
	quiet(t, mine, 50*time.Millisecond)
	_ = c.Channel(id).Hangup(ctxT(t), "")
	s.AssertClean(t)
}

// recorder is a testing.TB that records Errorf instead of failing.
type recorder struct {
	testing.TB
	msgs []string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Errorf(f string, a ...any) { r.msgs = append(r.msgs, fmt.Sprintf(f, a...)) }

func TestAssertCleanReportsLeftovers(t *testing.T) {
	s, c := start(t)
	id := s.Incoming(aritest.Call{Endpoint: "PJSIP/101"})
	br, err := c.Bridges().Create(ctxT(t), ari.BridgeRequest{Name: "left"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{TB: t}
	s.AssertClean(rec)
	if len(rec.msgs) != 1 || !strings.Contains(rec.msgs[0], id) || !strings.Contains(rec.msgs[0], `"left"`) {
		t.Fatalf("AssertClean reported %q", rec.msgs)
	}
	_ = c.Channel(id).Hangup(ctxT(t), "")
	_ = c.Bridge(br.ID).Delete(ctxT(t))
	s.AssertClean(t)
}
