package call

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/patchbay/patchbay/ari/aritest"
	"github.com/patchbay/patchbay/internal/limits"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Setup failure at every step of every flow. Each flow lists the ARI requests its setup makes, in order (the
// first subtest checks that list against what a working call really sends, so a new step cannot go untested).
// Then each step in turn fails with 500, and separately is held past the setup timeout, and the test checks what
// a user would: the browser gets an error with a stable code and then a hangup, the phone or trunk is hung up (or
// sent to its treatment), the API call ends with a cause, Asterisk holds nothing, and the caller's concurrency
// lease is back (one call at a time is allowed, and the next call is admitted).

// The setup timeout of the slow cases that must fail (the step is held 5 s past it). It may be short: on a busy
// machine an earlier step may time out first, which fails the call the same way. Every other case gets 10 s, so
// that a busy machine cannot make a working step look slow.
const matrixSetupTimeout = 500 * time.Millisecond

// setupStep is one ARI request of a flow's setup. tolerated: a failure of this request alone does not fail the
// call (it works on without); toleratedSlow: neither does its slowness (it then eats the whole setup budget,
// which usually fails the step after it).
type setupStep struct {
	req                      string // as harness.steps renders it, e.g. "POST /bridges/{br}/addChannel"
	tolerated, toleratedSlow bool
	// afterMedia: the step waits for the browser's media, so its case needs a browser with real media; the other
	// cases use offers and answers whose ICE never completes (far cheaper on a busy test machine).
	afterMedia bool
}

// attempt is one call of a flow, begun by flow.start.
type attempt interface {
	works(t *testing.T)            // the call worked; it is ended by the time works returns
	fails(t *testing.T, slow bool) // the call failed as a user expects
}

type flow struct {
	name     string
	prepare  func(h *harness)                     // rooms, scripts
	start    func(h *harness, media bool) attempt // media: the browser (if any) sends real media
	steps    []setupStep
	teardown []string // what close sends after a working call, in order
	// again checks the caller's lease came back: with one call allowed at a time, the next is admitted.
	again func(t *testing.T, h *harness)
}

func matrixHarness(t *testing.T, f flow, setupTimeout time.Duration) *harness {
	h := newHarness(t, withOptions(func(o *Options) {
		o.SetupTimeout = setupTimeout
		o.PSTN.TokenLimits = limits.New(limits.Config{MaxConcurrent: 1})
		o.PSTN.PhoneLimits = limits.New(limits.Config{MaxConcurrent: 1})
		o.PSTN.APIKeyLimits = limits.New(limits.Config{MaxConcurrent: 1})
	}))
	h.fake.Dialplan(TreatmentContext, TreatmentUnavailable, aritest.AppHangup(aritest.CauseCongestion))
	h.fake.Dialplan(TreatmentContext, TreatmentUnallocated, aritest.AppHangup(aritest.CauseUnallocated))
	if f.prepare != nil {
		f.prepare(h)
	}
	return h
}

var idPart = regexp.MustCompile(`\{[a-z]+\}`)

// method and pattern turn a rendered step into what FailNth takes: "POST", "/bridges/*/addChannel".
func (s setupStep) method() string { return strings.SplitN(s.req, " ", 2)[0] }
func (s setupStep) pattern() string {
	return idPart.ReplaceAllString(strings.SplitN(s.req, " ", 2)[1], "*")
}

func TestSetupFailsAtEveryStep(t *testing.T) {
	defer goleak.VerifyNone(t)
	type job struct {
		name string
		long bool
		run  func(t *testing.T)
	}
	var jobs []job
	for _, f := range setupFlows() {
		jobs = append(jobs, job{f.name + "/steps", false, func(t *testing.T) {
			h := matrixHarness(t, f, 10*time.Second)
			defer h.close()
			a := f.start(h, true)
			a.works(t)
			h.assertClean()
			if f.prepare != nil {
				f.prepare(h) // rooms ended by assertClean come back
			}
			var want []string
			for _, s := range f.steps {
				want = append(want, s.req)
			}
			want = append(want, f.teardown...)
			if got := h.steps(0); !slices.Equal(got, want) {
				t.Errorf("a working %s call sends\n  %v\nthe test knows\n  %v\nupdate the flow's steps so every one is failed below", f.name, got, want)
			}
			f.again(t, h)
		}})
		for i, s := range f.steps {
			n := 0 // the how-manieth request of its kind in the setup
			for _, o := range f.steps[:i+1] {
				if o.method() == s.method() && o.pattern() == s.pattern() {
					n++
				}
			}
			for _, slow := range []bool{false, true} {
				mode := "500"
				if slow {
					mode = "slow"
				}
				name := fmt.Sprintf("%s/%d_%s/%s", f.name, i+1, strings.ReplaceAll(s.req, "/", "_"), mode)
				jobs = append(jobs, job{name, slow && s.toleratedSlow, func(t *testing.T) {
					works := (slow && s.toleratedSlow) || (!slow && s.tolerated)
					timeout := 10 * time.Second
					switch {
					case slow && !works:
						timeout = matrixSetupTimeout
					case slow: // the step eats the whole budget, the call goes on: not too long a wait
						timeout = 5 * time.Second
					}
					h := matrixHarness(t, f, timeout)
					defer h.close()
					if slow {
						h.fake.DelayNth(n, s.method(), s.pattern(), timeout+5*time.Second)
					} else {
						h.fake.FailNth(n, s.method(), s.pattern(), http.StatusInternalServerError)
					}
					if works {
						f.start(h, true).works(t)
					} else {
						f.start(h, s.afterMedia).fails(t, slow)
					}
					h.assertClean()
					if slow {
						// A short setup timeout would make the next call flaky on a busy machine: check the leases.
						noLeases(t, h)
						return
					}
					if f.prepare != nil {
						f.prepare(h)
					}
					f.again(t, h)
				}})
			}
		}
	}
	// Run the cases side by side (each has its own harness and fake): most of a case is waiting. The longest
	// (a slow step the call survives: it waits out a whole setup timeout) start first.
	slices.SortStableFunc(jobs, func(a, b job) int { return cmpBool(b.long, a.long) })
	sem := make(chan struct{}, 10)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t.Run(j.name, j.run)
		}()
	}
	wg.Wait()
}

// ---- browser → extension or outside number ----

// bcall is a browser's side of a call: a synthetic call with media, or, without media, only signalling (an
// offer or answer whose ICE never completes).
type bcall struct {
	b  *browser
	id string
	c  *synthCall // nil without media
}

// hangup ends the browser's side (the browser hangs up).
func (x *bcall) hangup(t *testing.T) {
	t.Helper()
	if x.c != nil {
		x.c.stop()
		if x.c.err != nil && !errors.Is(x.c.err, context.Canceled) {
			t.Errorf("synthetic call %s: %v (events %+v)", x.c.id, x.c.err, x.c.rep.Events)
		}
		return
	}
	x.b.send(signal.Message{Type: signal.TypeHangup, CallID: x.id})
}

// stop ends the synthetic call, if any, without judging it (its call already failed).
func (x *bcall) stop() {
	if x.c != nil {
		x.c.stop()
	}
}

func placeCall(b *browser, to string, media bool) *bcall {
	if !media {
		return &bcall{b: b, id: b.rawCall(to)}
	}
	c := b.call(to, synth.CallOptions{Duration: -1})
	return &bcall{b: b, id: c.id, c: c}
}

// answerNext answers the browser's next incoming call, with media or with an answer whose ICE never completes.
func answerNext(h *harness, b *browser, media bool) *bcall {
	if media {
		c := b.receive(synth.CallOptions{Duration: -1})
		return &bcall{b: b, c: c}
	}
	x := &bcall{b: b}
	h.goTest(func() {
		for h.ctx.Err() == nil {
			for _, m := range b.messages("") {
				if m.Type == signal.TypeIncoming {
					ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
					_ = b.conn.Send(ctx, signal.Message{Type: signal.TypeAnswer, CallID: m.CallID, SDP: deadAnswer(h.t, m.SDP)})
					cancel()
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return x
}

// incomingID is the call_id of the browser's incoming call.
func incomingID(b *browser) string { return b.wait("", signal.TypeIncoming, patience).CallID }

type browserOutAttempt struct {
	h  *harness
	x  *bcall
	to string
}

func (a *browserOutAttempt) works(t *testing.T) {
	t.Helper()
	a.x.b.wait(a.x.id, signal.TypeAnswered, patience)
	a.x.hangup(t)
}

func (a *browserOutAttempt) fails(t *testing.T, slow bool) {
	t.Helper()
	browserFailed(t, a.x.b, a.x.id, slow)
	a.x.stop()
}

// browserFailed checks a browser learnt its call failed in setup: unavailable, a message, then a hangup.
func browserFailed(t *testing.T, b *browser, callID string, slow bool) {
	t.Helper()
	errMsg, hangup := b.ended(callID, patience)
	if errMsg == nil || errMsg.Error != wire.CodeUnavailable || errMsg.Message == "" {
		t.Errorf("error before the hangup: %+v; want %s with a message (all: %s)", errMsg, wire.CodeUnavailable, describeMsgs(b.messages(callID)))
	} else if slow && !strings.Contains(errMsg.Message, "in time") {
		t.Errorf("a slow Asterisk should be named as such: %q", errMsg.Message)
	}
	if hangup.Cause != wire.CauseTemporaryFailure {
		t.Errorf("hangup cause %q, want %s", hangup.Cause, wire.CauseTemporaryFailure)
	}
}

// againBrowser places one more call as the same user: it must be admitted (answered), then it is hung up.
func againBrowser(to string, join bool) func(t *testing.T, h *harness) {
	return func(t *testing.T, h *harness) {
		t.Helper()
		h.bmu.Lock()
		b := h.browsers[0]
		h.bmu.Unlock()
		var id string
		if join {
			id = b.rawJoin(to)
		} else {
			id = b.rawCall(to)
		}
		var first signal.Message
		h.eventually("the next call is answered or refused", patience, func() bool {
			for _, m := range b.messages(id) {
				if m.Type == signal.TypeAnswer || m.Type == signal.TypeError {
					first = m
					return true
				}
			}
			return false
		})
		if first.Type != signal.TypeAnswer {
			t.Errorf("the next call was refused: %s %q (the failed call kept its lease?)", first.Error, first.Message)
		}
		b.send(signal.Message{Type: signal.TypeHangup, CallID: id})
		h.assertClean()
	}
}

func browserOutFlow(name, to string, steps []setupStep, teardown []string) flow {
	return flow{
		name: name,
		start: func(h *harness, media bool) attempt {
			return &browserOutAttempt{h: h, to: to, x: placeCall(h.browser("alice"), to, media)}
		},
		steps:    steps,
		teardown: teardown,
		again:    againBrowser(to, false),
	}
}

// ---- a phone calls a browser user ----

type phoneInAttempt struct {
	h     *harness
	x     *bcall
	phone string
}

func (a *phoneInAttempt) works(t *testing.T) {
	t.Helper()
	a.h.eventually("the phone is answered", patience, func() bool {
		ch, _ := a.h.fake.Channel(a.phone)
		return ch.State == "Up"
	})
	a.x.hangup(t)
}

func (a *phoneInAttempt) fails(t *testing.T, slow bool) {
	t.Helper()
	browserFailed(t, a.x.b, incomingID(a.x.b), slow)
	phoneHungUp(t, a.h, a.phone, "failure")
	a.x.stop()
}

// phoneHungUp checks Patchbay hung the dialplan's channel up, with reason.
func phoneHungUp(t *testing.T, h *harness, id, reason string) {
	t.Helper()
	h.eventually("the phone is gone", patience, func() bool { _, ok := h.fake.Channel(id); return !ok })
	hs := h.requests("DELETE", "/channels/"+id)
	if len(hs) != 1 || hs[0].Query.Get("reason") != reason {
		var got []string
		for _, r := range hs {
			got = append(got, r.Query.Encode())
		}
		t.Errorf("phone hang-ups %v, want one with reason %s", got, reason)
	}
}

// ---- a browser joins a room ----

// roomAttempt is a join: "joined" comes before any media, so it needs none.
type roomAttempt struct {
	h  *harness
	b  *browser
	id string
}

func (a *roomAttempt) works(t *testing.T) {
	t.Helper()
	a.b.wait(a.id, signal.TypeJoined, patience)
	a.b.send(signal.Message{Type: signal.TypeHangup, CallID: a.id})
}

func (a *roomAttempt) fails(t *testing.T, slow bool) {
	t.Helper()
	browserFailed(t, a.b, a.id, slow)
	if ps, _ := a.h.rooms.Participants("sales"); len(ps) != 0 {
		t.Errorf("participants left in the room: %+v", ps)
	}
}

func createRoom(h *harness) {
	if _, err := h.rooms.Create(context.Background(), rooms.CreateOptions{ID: "sales"}); err != nil {
		h.t.Fatal(err)
	}
}

// ---- a phone enters a room ----

type phoneRoomAttempt struct {
	h     *harness
	phone string
}

func (a *phoneRoomAttempt) works(t *testing.T) {
	t.Helper()
	a.h.eventually("the phone is in the room", patience, func() bool {
		ps, _ := a.h.rooms.Participants("sales")
		return len(ps) == 1
	})
	if err := a.h.fake.HangupFromFar(a.phone, 0); err != nil {
		t.Fatal(err)
	}
}

func (a *phoneRoomAttempt) fails(t *testing.T, slow bool) {
	t.Helper()
	a.h.eventually("the phone is gone", patience, func() bool { _, ok := a.h.fake.Channel(a.phone); return !ok })
	hangups := a.h.requests("DELETE", "/channels/"+a.phone)
	treated := a.h.requests("POST", "/channels/"+a.phone+"/continue")
	switch {
	case len(hangups) == 1 && len(treated) == 0 && hangups[0].Query.Get("reason") == "failure":
	case len(hangups) == 0 && len(treated) == 1 && treated[0].Query.Get("context") == TreatmentContext &&
		treated[0].Query.Get("extension") == TreatmentUnavailable:
	default:
		t.Errorf("phone: hang-ups %+v, treatments %+v; want one hang-up (failure) or the unavailable treatment", hangups, treated)
	}
	if ps, _ := a.h.rooms.Participants("sales"); len(ps) != 0 {
		t.Errorf("participants left in the room: %+v", ps)
	}
}

// ---- a softphone calls out ----

type phonePSTNAttempt struct {
	h     *harness
	phone string
}

func (a *phonePSTNAttempt) works(t *testing.T) {
	t.Helper()
	a.h.eventually("the phone is answered", patience, func() bool {
		ch, _ := a.h.fake.Channel(a.phone)
		return ch.State == "Up"
	})
	if err := a.h.fake.HangupFromFar(a.phone, 0); err != nil {
		t.Fatal(err)
	}
}

func (a *phonePSTNAttempt) fails(t *testing.T, slow bool) {
	t.Helper()
	phoneHungUp(t, a.h, a.phone, "failure")
}

func startPhonePSTN(h *harness) *phonePSTNAttempt {
	return &phonePSTNAttempt{h: h, phone: h.fake.Incoming(aritest.Call{Endpoint: "PJSIP/101", CallerNumber: "101",
		Args: []string{"outbound", "00" + pstnNumber[1:]}})}
}

// ---- click-to-call ----

type apiAttempt struct {
	h    *harness
	id   string
	user *bcall // the browser user rung, if any
}

func (a *apiAttempt) works(t *testing.T) {
	t.Helper()
	if a.user != nil {
		a.h.eventually("the API call is answered", patience, func() bool {
			st, _ := a.h.m.APICall(a.id, "crm")
			return st.State == StateAnswered
		})
		a.user.b.wait(a.id, signal.TypeAnswered, patience)
		// Hung up through the API: a browser hanging up races its own DTLS close, which may end the call as
		// media_timeout instead (see the report).
		if err := a.h.m.HangupAPICall(a.id, "crm"); err != nil {
			t.Fatal(err)
		}
		a.user.b.wait(a.id, signal.TypeHangup, patience)
		a.user.stop()
	} else {
		a.h.eventually("the answered call is in the room", patience, func() bool {
			ps, _ := a.h.rooms.Participants("sales")
			return len(ps) == 1
		})
		if err := a.h.m.HangupAPICall(a.id, "crm"); err != nil {
			t.Fatal(err)
		}
	}
	a.h.eventually("the API call ended", patience, func() bool {
		st, _ := a.h.m.APICall(a.id, "crm")
		return st.State == StateEnded
	})
	if st, _ := a.h.m.APICall(a.id, "crm"); st.Answered.IsZero() || st.Cause != wire.CauseNormalClearing {
		t.Errorf("API call %+v", st)
	}
}

func (a *apiAttempt) fails(t *testing.T, slow bool) {
	t.Helper()
	a.h.eventually("the API call ended", patience, func() bool {
		st, _ := a.h.m.APICall(a.id, "crm")
		return st.State == StateEnded
	})
	if st, _ := a.h.m.APICall(a.id, "crm"); st.Cause != wire.CauseTemporaryFailure {
		t.Errorf("API call ended with %q, want %s: %+v", st.Cause, wire.CauseTemporaryFailure, st)
	}
	if a.user != nil {
		b := a.user.b
		in := b.messages("")
		if i := slices.IndexFunc(in, func(m signal.Message) bool { return m.Type == signal.TypeIncoming }); i >= 0 {
			browserFailed(t, b, in[i].CallID, slow) // it failed after the browser answered
		} else {
			a.h.eventually("the browser is told the API call ended", patience, func() bool {
				p := lastProgress(b.messages(a.id))
				return p != nil && p.Event == signal.ProgressEnded && p.Cause == wire.CauseTemporaryFailure
			})
		}
		a.user.stop()
	}
}

func startAPI(h *harness, r OriginateRequest) string {
	res, err := h.m.Originate(context.Background(), r)
	if err != nil {
		h.t.Fatalf("originate: %v", err)
	}
	return res.ID
}

func againAPI(r OriginateRequest) func(t *testing.T, h *harness) {
	return func(t *testing.T, h *harness) {
		t.Helper()
		res, err := h.m.Originate(context.Background(), r)
		var rf *Refusal
		if errors.As(err, &rf) {
			t.Fatalf("the next API call was refused: %v (the failed call kept its lease?)", rf)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := h.m.HangupAPICall(res.ID, "crm"); err != nil {
			t.Fatal(err)
		}
		h.assertClean()
	}
}

func setupFlows() []flow {
	em := setupStep{req: "POST /channels/externalMedia"}
	bridged := []setupStep{
		{req: "POST /bridges"},
		{req: "POST /bridges/{br}/addChannel"},
		{req: "POST /channels/create"},
		{req: "POST /bridges/{br}/addChannel"},
		{req: "POST /channels/{far}/dial", afterMedia: true},
	}
	bridgedTeardown := []string{"DELETE /channels/{far}", "DELETE /channels/{em}", "DELETE /bridges/{br}"}
	roomReq := OriginateRequest{APIKey: "crm", To: "600", Room: "sales"}
	userReq := OriginateRequest{APIKey: "crm", To: "600", ConnectUser: "alice"}
	return []flow{
		// The browser's channel is made presenting the caller ID (creation variables): no step of its own.
		browserOutFlow("browser_dialplan", "600", slices.Concat([]setupStep{em}, []setupStep{
			{req: "POST /applications/patchbay-test/subscription"},
			{req: "POST /channels/{em}/continue", afterMedia: true},
		}), []string{"DELETE /channels/{em}"}),
		browserOutFlow("browser_phone", "101", slices.Concat([]setupStep{em}, bridged), bridgedTeardown),
		browserOutFlow("browser_local", "602", slices.Concat([]setupStep{em}, bridged), bridgedTeardown),
		// An outside call makes its trunk leg once media flows (trunks.go: a leg per trunk tried, in failover order).
		browserOutFlow("browser_pstn", pstnNumber, []setupStep{
			em,
			{req: "POST /bridges"},
			{req: "POST /bridges/{br}/addChannel"},
			{req: "POST /channels/{em}/variable", afterMedia: true}, // CALLERID(num) the trunk presents
			{req: "POST /channels/{em}/variable", afterMedia: true}, // CALLERID(name)
			{req: "POST /channels/create", afterMedia: true},
			{req: "POST /bridges/{br}/addChannel", afterMedia: true},
			{req: "POST /channels/{trunk}/dial", afterMedia: true},
		}, []string{"DELETE /channels/{trunk}", "DELETE /channels/{em}", "DELETE /bridges/{br}"}),
		{
			name: "phone_in",
			start: func(h *harness, media bool) attempt {
				x := answerNext(h, h.browser("alice"), media)
				phone := h.fake.Incoming(aritest.Call{Endpoint: "PJSIP/101", CallerNumber: "101", Args: []string{"inbound", "alice"}})
				return &phoneInAttempt{h: h, x: x, phone: phone}
			},
			steps: []setupStep{
				{req: "GET /channels/{dialplan}/variable", tolerated: true, toleratedSlow: true}, // the caller's law
				{req: "POST /channels/{dialplan}/ring", tolerated: true, toleratedSlow: true},
				// the browser answers
				{req: "POST /channels/externalMedia"},
				{req: "POST /bridges"},
				{req: "POST /bridges/{br}/addChannel"},
				{req: "POST /channels/{dialplan}/answer", afterMedia: true},
			},
			teardown: []string{"DELETE /channels/{dialplan}", "DELETE /channels/{em}", "DELETE /bridges/{br}"},
			again:    func(*testing.T, *harness) {}, // no limits apply to incoming calls
		},
		{
			name:    "room",
			prepare: createRoom,
			start: func(h *harness, _ bool) attempt {
				b := h.browserWith(roomClaims("alice", "sales", rooms.RoleParticipant))
				return &roomAttempt{h: h, b: b, id: b.rawJoin("sales")}
			},
			steps: []setupStep{
				{req: "POST /channels/externalMedia"},
				{req: "POST /channels/{em}/variable", tolerated: true}, // TALK_DETECT
				{req: "POST /bridges"},                                 // the room's bridge (first member)
				{req: "POST /bridges/{room}/addChannel"},
			},
			teardown: []string{"POST /bridges/{room}/removeChannel", "DELETE /channels/{em}", "DELETE /bridges/{room}"},
			again:    againBrowser("sales", true),
		},
		{
			name: "phone_room",
			prepare: func(h *harness) {
				createRoom(h)
				_ = h.numbers.Map(context.Background(), "8001", "sales", time.Hour)
			},
			start: func(h *harness, _ bool) attempt {
				return &phoneRoomAttempt{h: h, phone: h.fake.Incoming(aritest.Call{Endpoint: "PJSIP/101", CallerNumber: "101", Args: []string{"room", "8001"}})}
			},
			steps: []setupStep{
				{req: "GET /channels/{dialplan}/variable", tolerated: true}, // the phone's law
				{req: "POST /channels/{dialplan}/answer"},
				{req: "POST /channels/{dialplan}/variable", tolerated: true}, // TALK_DETECT
				{req: "POST /bridges"},
				{req: "POST /bridges/{room}/addChannel"},
			},
			teardown: []string{"POST /bridges/{room}/removeChannel", "DELETE /bridges/{room}"},
			again:    func(*testing.T, *harness) {},
		},
		{
			name:    "phone_pstn",
			prepare: func(h *harness) { h.fake.Endpoint("PJSIP/+44", aritest.Ring(0).Answer(20*time.Millisecond)) },
			start:   func(h *harness, _ bool) attempt { return startPhonePSTN(h) },
			steps: []setupStep{
				{req: "POST /bridges"},
				{req: "POST /bridges/{br}/addChannel"},
				{req: "POST /channels/{dialplan}/variable"}, // CALLERID(num) the trunk presents
				{req: "POST /channels/create"},
				{req: "POST /bridges/{br}/addChannel"},
				{req: "POST /channels/{trunk}/dial"},
				{req: "POST /channels/{dialplan}/ring", tolerated: true, toleratedSlow: true}, // the trunk rings
				{req: "POST /channels/{dialplan}/answer"},                                     // the trunk answered
			},
			teardown: []string{"DELETE /channels/{trunk}", "DELETE /bridges/{br}"},
			again: func(t *testing.T, h *harness) {
				a := startPhonePSTN(h)
				a.works(t)
				h.assertClean()
			},
		},
		{
			name: "api_room",
			prepare: func(h *harness) {
				createRoom(h)
				h.fake.Endpoint("Local/600", aritest.Ring(0).Answer(20*time.Millisecond))
			},
			start: func(h *harness, _ bool) attempt { return &apiAttempt{h: h, id: startAPI(h, roomReq)} },
			steps: []setupStep{
				{req: "POST /channels/create"},
				{req: "POST /channels/{far}/dial"},
				// answered
				{req: "GET /channels/{far}/variable", tolerated: true}, // the far end's law; slow, it eats the join's time
				{req: "POST /bridges"},
				{req: "POST /bridges/{room}/addChannel"},
			},
			teardown: []string{"DELETE /channels/{far}", "POST /bridges/{room}/removeChannel", "DELETE /bridges/{room}"},
			again:    againAPI(roomReq),
		},
		{
			name:    "api_user",
			prepare: func(h *harness) { h.fake.Endpoint("Local/600", aritest.Ring(0).Answer(20*time.Millisecond)) },
			start: func(h *harness, media bool) attempt {
				x := answerNext(h, h.browser("alice"), media)
				return &apiAttempt{h: h, id: startAPI(h, userReq), user: x}
			},
			steps: []setupStep{
				{req: "POST /channels/create"},
				{req: "POST /channels/{far}/dial"},
				// answered: the far end's law, then the browser is rung (with an offer in that law) and answers
				{req: "GET /channels/{far}/variable", tolerated: true, toleratedSlow: true},
				{req: "POST /channels/externalMedia"},
				{req: "POST /bridges"},
				{req: "POST /bridges/{br}/addChannel"},
			},
			teardown: []string{"DELETE /channels/{far}", "DELETE /channels/{em}", "DELETE /bridges/{br}"},
			again:    againAPI(userReq),
		},
	}
}

// lastProgress returns the last progress message.
func lastProgress(ms []signal.Message) *signal.Message {
	var p *signal.Message
	for _, m := range ms {
		if m.Type == signal.TypeProgress {
			p = &m
		}
	}
	return p
}

// noLeases checks every caller's concurrency lease came back.
func noLeases(t *testing.T, h *harness) {
	t.Helper()
	for _, l := range []struct {
		lim *limits.Limiter
		key string
	}{{h.m.o.PSTN.TokenLimits, "token:alice"}, {h.m.o.PSTN.PhoneLimits, "phone:101"}, {h.m.o.PSTN.APIKeyLimits, "apikey:crm"}} {
		if _, active := l.lim.Used(l.key); active != 0 {
			t.Errorf("%s still holds %d call(s) of its limit", l.key, active)
		}
	}
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
