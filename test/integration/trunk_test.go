//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ari"
	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/webhook"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

const trunkName = "pstn"

// trunkEnv is Asterisk with a trunk to a SIPp carrier on 127.0.0.2, Patchbay routing PSTN numbers to it, and a
// synthetic browser engine.
type trunkEnv struct {
	ast  *testenv.Asterisk
	pb   *testenv.Patchbay
	sipp *testenv.SIPp
	eng  *synth.Engine
	ari  *ari.Client
}

func newTrunkEnv(t *testing.T, sippOpts testenv.SIPpOptions, edit func(*config.Config)) *trunkEnv {
	t.Helper()
	sp := testenv.StartSIPp(t, sippOpts)
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{Params: func(p *asteriskconfigs.Params) {
		p.Trunk = asteriskconfigs.Trunk{Name: trunkName, Host: sp.Addr(), Match: []string{sp.IP}}
	}})
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Asterisk.Trunk.Name = trunkName
		if edit != nil {
			edit(c)
		}
	}})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	inspect, err := ari.New(ari.Config{URL: a.ARIURL(), Username: a.ARIUser, Password: a.ARIPassword, Application: "inspector"})
	if err != nil {
		t.Fatal(err)
	}
	e := &trunkEnv{ast: a, pb: pb, sipp: sp, eng: eng, ari: inspect}
	e.waitTrunkReachable(t)
	return e
}

// waitTrunkReachable waits until the trunk's contact is usable (qualified, or not qualified at all): an
// unreachable contact makes PJSIP refuse to dial it.
func (e *trunkEnv) waitTrunkReachable(t *testing.T) {
	t.Helper()
	// 30 s: on a loaded host the first qualify and `asterisk -rx` itself can each take seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last string
	for {
		out, err := e.ast.CLI(ctx, "pjsip show contacts")
		if err == nil && testenv.ContactUsable(out, trunkName) {
			return
		}
		if err != nil {
			out = "CLI: " + err.Error()
		}
		last = out
		select {
		case <-ctx.Done():
			t.Fatalf("trunk %s never became reachable (SIPp answering OPTIONS?):\n%s", trunkName, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dial opens a signalling connection as user with the given caller IDs and grants.
func (e *trunkEnv) dial(t *testing.T, ctx context.Context, user string, callerIDs []string, grants ...string) *signal.Conn {
	t.Helper()
	cl := auth.Claims{Name: user, Dial: grants, CallerIDs: callerIDs}
	cl.Subject = user
	tok, err := e.pb.Server.Signer().Mint(cl, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := signal.Dial(ctx, e.pb.URL, tok, signal.DialOptions{TLSConfig: e.pb.TLS})
	if err != nil {
		t.Fatalf("signal dial as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitNoCalls waits until Patchbay has torn every call down (a browser learns of the end before teardown).
func (e *trunkEnv) waitNoCalls(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.pb.Server.ActiveCalls() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls still active after 10 s", e.pb.Server.ActiveCalls())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *trunkEnv) assertClean(t *testing.T) {
	t.Helper()
	(&browserCallEnv{ast: e.ast, pb: e.pb, ari: e.ari}).assertClean(t)
}

// numberOf returns the user part of a From/PAI header value: "name" <sip:+4420...@host>;tag=x → +4420...
func numberOf(h string) string {
	_, rest, ok := strings.Cut(h, "sip:")
	if !ok {
		return ""
	}
	user, _, _ := strings.Cut(rest, "@")
	return user
}

func TestTrunkBrowserCallsPSTNWithCallerID(t *testing.T) {
	e := newTrunkEnv(t, testenv.SIPpOptions{RTPEcho: true}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const callerID = "+442071230001"
	conn := e.dial(t, ctx, "alice", []string{callerID}, "pstn")
	rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "+14155550100", ToneHz: 1000, Duration: 3 * time.Second})
	if err != nil {
		t.Fatalf("call the PSTN number: %v", err)
	}
	t.Logf("answer after %v, sent %d received %d, heard %+v", rep.AnswerAfter, rep.Sent, rep.Received, rep.Heard)
	// SIPp echoes the RTP it gets: hearing our own tone proves audio both ways through the trunk.
	if !rep.Heard.Detected(10) {
		t.Errorf("did not hear the 1000 Hz tone echoed by the carrier: %+v", rep.Heard)
	}
	for _, typ := range []string{signal.TypeRinging, signal.TypeAnswered} {
		if _, ok := rep.Event(typ); !ok {
			t.Errorf("no %q event; events %+v", typ, rep.Events)
		}
	}
	inv, err := e.sipp.WaitInvites(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv) != 1 {
		t.Fatalf("carrier got %d INVITEs, want 1", len(inv))
	}
	m := inv[0]
	t.Logf("INVITE: %s / From: %s / PAI: %s", m.Start, m.Header("From"), m.Header("P-Asserted-Identity"))
	if !strings.Contains(m.Start, "sip:+14155550100@") {
		t.Errorf("request URI %q is not the E.164 number", m.Start)
	}
	if got := numberOf(m.Header("From")); got != callerID {
		t.Errorf("From carries %q, want the token's caller ID %s", m.Header("From"), callerID)
	}
	if got := numberOf(m.Header("P-Asserted-Identity")); got != callerID {
		t.Errorf("P-Asserted-Identity is %q, want %s", m.Header("P-Asserted-Identity"), callerID)
	}
	e.assertClean(t)
}

func TestTrunkTwentyConcurrentCallsEachWithItsCallerID(t *testing.T) {
	e := newTrunkEnv(t, testenv.SIPpOptions{RTPEcho: true}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const n = 20
	want := map[string]bool{}
	var wg sync.WaitGroup
	errs := make([]error, n)
	reps := make([]*synth.Report, n)
	for i := range n {
		id := fmt.Sprintf("+4420712300%02d", i)
		want[id] = true
		conn := e.dial(t, ctx, fmt.Sprintf("user%02d", i), []string{id}, "pstn")
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i], errs[i] = e.eng.Call(ctx, conn, synth.CallOptions{To: fmt.Sprintf("+1415555%04d", 100+i), ToneHz: 1000, Duration: 4 * time.Second})
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("call %d: %v", i, errs[i])
			continue
		}
		if !reps[i].Heard.Detected(10) {
			t.Errorf("call %d: no echo from the carrier: %+v", i, reps[i].Heard)
		}
	}
	inv, err := e.sipp.WaitInvites(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, m := range inv {
		from, pai := numberOf(m.Header("From")), numberOf(m.Header("P-Asserted-Identity"))
		if from != pai {
			t.Errorf("INVITE %s: From %s and PAI %s differ", m.Start, from, pai)
		}
		got[from] = true
	}
	for id := range want {
		if !got[id] {
			t.Errorf("no INVITE with caller ID %s; got %v", id, got)
		}
	}
	if len(got) != n {
		t.Errorf("%d distinct caller IDs reached the carrier, want %d", len(got), n)
	}
	e.assertClean(t)
}

// hostileSDP is a syntactically fine offer: refusals must come from the number, before any SDP work.
const hostileSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n" +
	"a=rtpmap:0 PCMU/8000\r\na=mid:0\r\na=sendrecv\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\n"

func TestTrunkRefusesInjectionAndTollFraudBeforeARI(t *testing.T) {
	e := newTrunkEnv(t, testenv.SIPpOptions{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := e.dial(t, ctx, "mallory", []string{"+442071230009"}, "*")
	for i, tc := range []struct{ to, want string }{
		{"100&PJSIP/" + trunkName + "/900", wire.CodeInvalidNumber},
		{"+14155550100&PJSIP/" + trunkName + "/+19005550100", wire.CodeInvalidNumber},
		{"*", wire.CodeInvalidNumber},
		{"#", wire.CodeInvalidNumber},
		{"*67+14155550100", wire.CodeInvalidNumber},
		{"+1415555#0100", wire.CodeInvalidNumber},
		{"+44ABC4567890", wire.CodeInvalidNumber},
		{"+" + strings.Repeat("1", 40), wire.CodeInvalidNumber},
		{"+1415555010012345", wire.CodeInvalidNumber},
		{"${EXTEN}", wire.CodeInvalidNumber},
		{"+14155550100@internal", wire.CodeInvalidNumber},
		{"+19005550100", wire.CodeForbiddenDestination},
		{"0019005550100", wire.CodeForbiddenDestination},
		{"+447012345678", wire.CodeForbiddenDestination},
		{"+88212345678", wire.CodeForbiddenDestination},
		{"+870123456789", wire.CodeForbiddenDestination},
	} {
		id := fmt.Sprintf("fraud-%d", i)
		if err := conn.Send(ctx, signal.Message{Type: signal.TypeCall, CallID: id, To: tc.to, SDP: hostileSDP}); err != nil {
			t.Fatalf("%q: send: %v", tc.to, err)
		}
		m := recvType(t, ctx, conn, signal.TypeError)
		if m.Error != tc.want {
			t.Errorf("%q: error %q (%s), want %q", tc.to, m.Error, m.Message, tc.want)
		}
	}
	// A token without caller IDs cannot call out at all: the caller ID is never the browser's to choose.
	noID := e.dial(t, ctx, "bob", nil, "pstn")
	if err := noID.Send(ctx, signal.Message{Type: signal.TypeCall, CallID: "noid", To: "+14155550100", SDP: hostileSDP}); err != nil {
		t.Fatal(err)
	}
	if m := recvType(t, ctx, noID, signal.TypeError); m.Error != wire.CodeForbiddenCallerID {
		t.Errorf("call without caller ID: %q (%s), want %s", m.Error, m.Message, wire.CodeForbiddenCallerID)
	}
	e.assertClean(t) // no channel or bridge was ever made
	e.sipp.Stop()    // flush its trace
	inv, err := e.sipp.ReceivedInvites()
	if err != nil {
		t.Fatal(err)
	}
	if len(inv) != 0 {
		t.Errorf("the carrier received %d INVITEs for refused numbers; first: %s", len(inv), inv[0].Start)
	}
}

func TestTrunkLimitsTrip(t *testing.T) {
	e := newTrunkEnv(t, testenv.SIPpOptions{RTPEcho: true}, func(c *config.Config) {
		c.Limits.PerToken = config.LimitSet{CallsPerMinute: 2, Burst: 2, MaxConcurrent: 1}
		c.Limits.MaxCallDuration = 2 * time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := e.dial(t, ctx, "carol", []string{"+442071230010"}, "pstn")
	second := e.dial(t, ctx, "carol", []string{"+442071230010"}, "pstn") // same user, another tab

	type result struct {
		rep *synth.Report
		err error
	}
	first := make(chan result, 1)
	start := time.Now()
	go func() {
		rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "+14155550100", Duration: 10 * time.Second})
		first <- result{rep, err}
	}()
	if _, err := e.sipp.WaitInvites(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Concurrency: the user's second call while the first is up.
	_, err := e.eng.Call(ctx, second, synth.CallOptions{To: "+14155550101", Duration: time.Second})
	if code := signal.ErrorCode(err); code != wire.CodeTooManyCalls {
		t.Errorf("concurrent call: %v, want %s", err, wire.CodeTooManyCalls)
	}
	// Duration: the first call is ended at 2 s although the browser wanted 10 s.
	r := <-first
	took := time.Since(start)
	if code := signal.ErrorCode(r.err); code != wire.CodeMaxDuration {
		t.Errorf("first call ended with %v, want %s", r.err, wire.CodeMaxDuration)
	}
	if took > 6*time.Second {
		t.Errorf("first call lasted %v; max_call_duration is 2s", took)
	}
	e.waitNoCalls(t)
	// Rate: 2 per minute with a burst of 2; the first call used one token, the refused one none.
	if _, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "+14155550102", Duration: 500 * time.Millisecond}); err != nil && signal.ErrorCode(err) != wire.CodeMaxDuration {
		t.Errorf("third call within the rate: %v", err)
	}
	e.waitNoCalls(t)
	_, err = e.eng.Call(ctx, conn, synth.CallOptions{To: "+14155550103", Duration: time.Second})
	if code := signal.ErrorCode(err); code != wire.CodeCallRateLimited {
		t.Errorf("fourth call in a minute: %v, want %s", err, wire.CodeCallRateLimited)
	}
	e.assertClean(t)
}

// apiDo sends an API request with key and decodes the JSON answer into out (if not nil).
func apiDo(t *testing.T, pb *testenv.Patchbay, method, path, key string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, pb.BaseURL+"/api/v1"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: pb.TLS}, Timeout: 10 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	t.Logf("%s %s → %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	return resp.StatusCode
}

func TestAPICallRingsSoftphoneIntoNewRoomAndTicketIsSingleUse(t *testing.T) {
	const key = "crm-key-0123456789abcdef0123"
	rd := testenv.StartRedis(t)
	e := newTrunkEnv(t, testenv.SIPpOptions{}, func(c *config.Config) {
		c.Auth.APIKeys = map[string]config.Secret{"crm": key}
		c.API.CallerIDs = map[string][]string{"crm": {"+442071230100"}}
		c.API.Dial = map[string][]string{"crm": {"ext", "pstn"}}
		c.Redis.Addr = rd.Addr()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	phone := testenv.StartBaresip(t, testenv.BaresipOptions{Name: "101", Registrar: fmt.Sprintf("127.0.0.1:%d", e.ast.SIPPort),
		User: "101", Password: e.ast.Phone(t, "101").Password, AutoAnswer: true})
	if err := phone.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}

	// Refusals first: nothing may be dialled for them.
	var apiErr struct{ Error, Message string }
	for _, tc := range []struct {
		body   map[string]any
		status int
		code   string
	}{
		{map[string]any{"to": "100&PJSIP/" + trunkName + "/900", "connect": map[string]any{"create_room": true}}, 400, wire.CodeInvalidNumber},
		{map[string]any{"to": "+19005550100", "connect": map[string]any{"create_room": true}}, 403, wire.CodeForbiddenDestination},
		{map[string]any{"to": "+14155550100", "caller_id": "+15555550000", "connect": map[string]any{"create_room": true}}, 403, wire.CodeForbiddenCallerID},
		{map[string]any{"to": "101", "connect": map[string]any{}}, 400, "bad_request"},
	} {
		apiErr.Error = ""
		if st := apiDo(t, e.pb, "POST", "/calls", key, tc.body, &apiErr); st != tc.status || apiErr.Error != tc.code {
			t.Errorf("%v: %d %s (%s), want %d %s", tc.body, st, apiErr.Error, apiErr.Message, tc.status, tc.code)
		}
	}
	if st := apiDo(t, e.pb, "POST", "/calls", "wrong-key-wrong-key-wrong", map[string]any{"to": "101"}, nil); st != 401 {
		t.Errorf("wrong key: %d", st)
	}

	var res struct {
		ID, State, Room, Ticket string
	}
	if st := apiDo(t, e.pb, "POST", "/calls", key, map[string]any{"to": "101", "connect": map[string]any{"create_room": true}}, &res); st != 201 {
		t.Fatalf("POST /calls: %d", st)
	}
	if res.ID == "" || res.Room == "" || !strings.HasPrefix(res.Ticket, "pbt_") {
		t.Fatalf("POST /calls returned %+v", res)
	}
	if _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatalf("softphone never answered: %v", err)
	}
	var got struct{ State, Room string }
	deadline := time.Now().Add(10 * time.Second)
	for got.State != "answered" && time.Now().Before(deadline) {
		apiDo(t, e.pb, "GET", "/calls/"+res.ID, key, nil, &got)
		time.Sleep(200 * time.Millisecond)
	}
	if got.State != "answered" || got.Room != res.Room {
		t.Fatalf("GET /calls/%s: %+v, want answered in room %s", res.ID, got, res.Room)
	}
	parts, err := e.pb.Server.Rooms().Participants(res.Room)
	if err != nil || len(parts) != 1 || parts[0].Kind != "phone" {
		t.Fatalf("room %s participants %+v (%v), want the phone", res.Room, parts, err)
	}

	// A browser joins with the ticket, once.
	browser := e.dial(t, ctx, "dave", nil)
	joined := make(chan error, 1)
	go func() {
		_, err := e.eng.Join(ctx, browser, synth.JoinOptions{Ticket: res.Ticket}, synth.CallOptions{Duration: 3 * time.Second})
		joined <- err
	}()
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if parts, _ = e.pb.Server.Rooms().Participants(res.Room); len(parts) == 2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(parts) != 2 {
		t.Errorf("browser with the ticket is not in the room: %+v", parts)
	}
	again := e.dial(t, ctx, "eve", nil)
	_, err = e.eng.Join(ctx, again, synth.JoinOptions{Ticket: res.Ticket}, synth.CallOptions{Duration: time.Second})
	if err == nil || signal.ErrorCode(err) != wire.CodeInvalidTicket {
		t.Errorf("second use of the ticket: %v, want %s", err, wire.CodeInvalidTicket)
	} else {
		t.Logf("second use of the ticket refused: %v", err)
	}
	if err := <-joined; err != nil {
		t.Errorf("browser with ticket: %v", err)
	}

	if st := apiDo(t, e.pb, "DELETE", "/calls/"+res.ID, key, nil, nil); st != 202 {
		t.Errorf("DELETE: %d", st)
	}
	deadline = time.Now().Add(10 * time.Second)
	var end struct{ State, Cause string }
	for end.State != "ended" && time.Now().Before(deadline) {
		apiDo(t, e.pb, "GET", "/calls/"+res.ID, key, nil, &end)
		time.Sleep(200 * time.Millisecond)
	}
	if end.State != "ended" {
		t.Errorf("call not ended after DELETE: %+v", end)
	}
	if st := apiDo(t, e.pb, "GET", "/calls/"+res.ID, "other-key-that-is-not-valid", nil, nil); st != 401 {
		t.Errorf("GET with a wrong key: %d", st)
	}
}

func TestSoftphoneCallsPSTNThroughPatchbay(t *testing.T) {
	callerIDs := map[string]string{"101": "+442071239101", "103": "+442071239103"}
	e := newTrunkEnv(t, testenv.SIPpOptions{RTPEcho: true}, func(c *config.Config) {
		for ph := range callerIDs {
			c.Asterisk.Phones = append(c.Asterisk.Phones, config.Phone{Name: ph, Password: config.Secret("unused-in-patchbay-0"), Transport: "udp"})
		}
		c.Dialplan.PhoneCallerIDs = callerIDs
	})
	tone := filepath.Join(t.TempDir(), "1000.wav")
	if err := audio.WriteWAV(tone, audio.Sine(1000, 8000, 60*time.Second, 0.3), 8000); err != nil {
		t.Fatal(err)
	}
	invites := 0
	for _, tc := range []struct {
		name, phone, transport string
		port                   int
		srtp                   bool
	}{
		{"udp", "101", "udp", e.ast.SIPPort, false},
		{"tls-srtp", "103", "tls", e.ast.SIPTLSPort, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			registrar := fmt.Sprintf("127.0.0.1:%d", tc.port)
			phone := testenv.StartBaresip(t, testenv.BaresipOptions{Name: tc.phone, Registrar: registrar, User: tc.phone,
				Password: e.ast.Phone(t, tc.phone).Password, Transport: tc.transport, SRTP: tc.srtp, PlayWAV: tone})
			if err := phone.WaitRegistered(ctx); err != nil {
				t.Fatal(err)
			}
			uri := func(num string) string {
				u := "sip:" + num + "@" + registrar
				if tc.transport != "udp" {
					u += ";transport=" + tc.transport
				}
				return u
			}
			// Refused first: a premium-rate number gets a clear cause (21, 403 Forbidden) and never reaches the carrier.
			if err := phone.Dial(ctx, uri("+19005550100")); err != nil {
				t.Fatal(err)
			}
			ev, err := phone.WaitEvent(ctx, "CALL_CLOSED")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(ev.Param, "403") {
				t.Errorf("refused premium-rate call closed with %q, want 403 Forbidden", ev.Param)
			}
			if err := phone.Dial(ctx, uri("+14155550100")); err != nil {
				t.Fatal(err)
			}
			if _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
				t.Fatalf("outside call never connected: %v", err)
			}
			invites++
			inv, err := e.sipp.WaitInvites(ctx, invites)
			if err != nil {
				t.Fatal(err)
			}
			last := inv[len(inv)-1]
			want := callerIDs[tc.phone]
			if len(inv) != invites || numberOf(last.Header("From")) != want || numberOf(last.Header("P-Asserted-Identity")) != want {
				t.Errorf("carrier INVITEs %d; From %q PAI %q, want %s", len(inv), last.Header("From"), last.Header("P-Asserted-Identity"), want)
			}
			time.Sleep(3 * time.Second)
			if err := phone.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
				t.Fatal(err)
			}
			// The carrier echoes: the phone hears its own tone back through Asterisk and the trunk.
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			defer rcancel()
			pcm, rate, err := phone.Recording(rctx)
			if err != nil {
				out, _ := exec.Command("ls", "-la", phone.Dir, filepath.Join(phone.Dir, "recordings")).CombinedOutput()
				t.Logf("%s", out)
				t.Fatal(err)
			}
			if rep := audio.Detect(pcm, rate, 1000); !rep.Detected(20) {
				t.Errorf("phone did not hear its tone echoed by the carrier: %+v (%s)", rep, phone.RecordingPath())
			}
			e.assertClean(t)
		})
	}
}

func TestTrunkDIDsReachBrowserUserAndExtension(t *testing.T) {
	e := newTrunkEnv(t, testenv.SIPpOptions{}, func(c *config.Config) {
		c.Dialplan.DIDs = map[string]string{"+442071230500": "user:frank", "442071230600": "ext:600"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	target := fmt.Sprintf("127.0.0.1:%d", e.ast.SIPPort)

	// DID → browser user: frank's browser rings with the carrier's caller and answers.
	conn := e.dial(t, ctx, "frank", nil)
	got := make(chan error, 1)
	var rep *synth.Report
	go func() {
		var err error
		rep, err = e.eng.Receive(ctx, conn, synth.CallOptions{Duration: -1})
		got <- err
	}()
	if err := testenv.RunSIPpUAC(ctx, t, testenv.SIPpCall{Target: target, Service: "+442071230500", Hold: 2 * time.Second}); err != nil {
		t.Fatalf("DID for a browser user: %v", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("browser frank: %v", err)
	}
	if rep == nil || !rep.Incoming || rep.ConnectedAfter == 0 {
		t.Errorf("frank's browser did not take the DID call: %+v", rep)
	}
	e.waitNoCalls(t)

	// DID → extension: the echo test answers.
	if err := testenv.RunSIPpUAC(ctx, t, testenv.SIPpCall{Target: target, Service: "442071230600", Hold: time.Second}); err != nil {
		t.Fatalf("DID for extension 600: %v", err)
	}
	e.assertClean(t)
}

// webhookSink receives Patchbay's webhooks and checks their signatures.
type webhookSink struct {
	mu     sync.Mutex
	events []webhook.Event
	bad    int
}

func (w *webhookSink) types(callID string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, ev := range w.events {
		if ev.CallID == callID {
			out = append(out, ev.Type)
		}
	}
	return out
}

func TestAPICallToPSTNRingsBrowserUserWithProgressAndWebhooks(t *testing.T) {
	const key = "crm-key-0123456789abcdef0123"
	secret := strings.Repeat("w", 40)
	sink := &webhookSink{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sink.mu.Lock()
		defer sink.mu.Unlock()
		if err := webhook.Verify([]byte(secret), r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			sink.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev webhook.Event
		if err := json.Unmarshal(body, &ev); err == nil {
			sink.events = append(sink.events, ev)
		}
	}))
	defer hook.Close()
	e := newTrunkEnv(t, testenv.SIPpOptions{RTPEcho: true, RingFor: 500 * time.Millisecond}, func(c *config.Config) {
		c.Auth.APIKeys = map[string]config.Secret{"crm": key}
		c.API.CallerIDs = map[string][]string{"crm": {"+442071230100", "+442071230101"}}
		c.API.Dial = map[string][]string{"crm": {"pstn"}}
		c.Webhook.URL = hook.URL
		c.Webhook.Secret = config.Secret(secret)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	answerer := e.dial(t, ctx, "gina", nil)
	watcher := e.dial(t, ctx, "gina", nil) // a second tab that only watches

	// A key without the pstn grant for extensions, a caller ID not allowed: refused before anything is dialled.
	var apiErr struct{ Error string }
	if st := apiDo(t, e.pb, "POST", "/calls", key, map[string]any{"to": "600", "connect": map[string]any{"user": "gina"}}, &apiErr); st != 403 || apiErr.Error != wire.CodeForbiddenDestination {
		t.Errorf("extension without grant: %d %s", st, apiErr.Error)
	}

	got := make(chan error, 1)
	var rep *synth.Report
	go func() {
		var err error
		rep, err = e.eng.Receive(ctx, answerer, synth.CallOptions{ToneHz: 1000, Duration: 3 * time.Second})
		got <- err
	}()
	var res struct{ ID, CallerID string }
	if st := apiDo(t, e.pb, "POST", "/calls", key, map[string]any{"to": "+14155550199", "caller_id": "+442071230101",
		"connect": map[string]any{"user": "gina"}}, &res); st != 201 {
		t.Fatalf("POST /calls: %d", st)
	}
	if err := <-got; err != nil {
		t.Fatalf("gina's browser: %v", err)
	}
	if !rep.Heard.Detected(10) {
		t.Errorf("browser did not hear its tone echoed by the carrier: %+v", rep.Heard)
	}
	// The watching tab saw the progress of the API call, then the incoming call.
	var seen []string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !slices.Contains(seen, "progress:ended") {
		rctx, rcancel := context.WithTimeout(ctx, time.Until(deadline))
		m, err := watcher.Recv(rctx)
		rcancel()
		if err != nil {
			break
		}
		if m.Type == signal.TypeProgress {
			seen = append(seen, "progress:"+m.Event)
			if m.CallID != res.ID {
				t.Errorf("progress for call %s, want %s", m.CallID, res.ID)
			}
		} else {
			seen = append(seen, m.Type)
		}
	}
	t.Logf("watching tab saw %v", seen)
	for _, want := range []string{"progress:ringing", "progress:answered", signal.TypeIncoming, "progress:ended"} {
		if !slices.Contains(seen, want) {
			t.Errorf("watching tab did not see %s: %v", want, seen)
		}
	}
	inv, err := e.sipp.WaitInvites(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if from, pai := numberOf(inv[0].Header("From")), numberOf(inv[0].Header("P-Asserted-Identity")); from != "+442071230101" || pai != from {
		t.Errorf("carrier saw From %s PAI %s, want the requested allowed caller ID +442071230101", from, pai)
	}
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !slices.Contains(sink.types(res.ID), webhook.EventEnded) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := sink.types(res.ID); !slices.Equal(got, []string{webhook.EventRinging, webhook.EventAnswered, webhook.EventEnded}) {
		t.Errorf("webhooks for %s: %v, want ringing, answered, ended", res.ID, got)
	}
	if sink.bad > 0 {
		t.Errorf("%d webhooks had a bad signature", sink.bad)
	}
	e.waitNoCalls(t)
	e.assertClean(t)
}
