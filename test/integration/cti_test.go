//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// The contact-center tests (issue 15): one Asterisk with two phones (101 plays 1000 Hz, 102 plays 700 Hz), a SIPp
// carrier that echoes, and Patchbay recording on request. Browsers are synthetic callers (tools/synth) playing 440 Hz
// (the agent) or 300 Hz (a supervisor); what each party heard is checked window by window with tools/audio.

const (
	ctiKey      = "crm-key-0123456789abcdef0123"
	ctiCallerID = "+442071230077" // the agent's caller ID toward the carrier
	agentHz     = 440.0
	supHz       = 300.0
	phone101Hz  = 1000.0
	phone102Hz  = 700.0
)

// mohHz are the notes of the music on hold Patchbay renders (asterisk-configs).
var mohHz = asteriskconfigs.HoldTuneHz[:3]

type ctiEnv struct {
	*pstnEnv
	phones map[string]*testenv.Baresip
	recDir string
}

func newCTIEnv(t *testing.T) *ctiEnv {
	t.Helper()
	recDir := t.TempDir()
	e := &ctiEnv{recDir: recDir, phones: map[string]*testenv.Baresip{}}
	e.pstnEnv = newPSTNEnv(t, []pstnCarrier{{name: "alpha", ip: "127.0.0.2", sipp: testenv.SIPpOptions{RTPEcho: true}}}, func(c *config.Config) {
		c.Recording.Mode = config.RecordingOnRequest
		c.Recording.Dir = recDir
		c.Auth.APIKeys = map[string]config.Secret{"crm": ctiKey}
		c.Users = map[string]string{"7001": "alice"}
		c.Limits.PerToken = config.LimitSet{}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	for name, hz := range map[string]float64{"101": phone101Hz, "102": phone102Hz} {
		wav := filepath.Join(dir, name+".wav")
		if err := audio.WriteWAV(wav, audio.Sine(hz, 8000, 10*time.Minute, 0.3), 8000); err != nil {
			t.Fatal(err)
		}
		p := testenv.StartBaresip(t, testenv.BaresipOptions{Name: name, Registrar: fmt.Sprintf("127.0.0.1:%d", e.ast.SIPPort),
			User: name, Password: e.ast.Phone(t, name).Password, PlayWAV: wav, AutoAnswer: true})
		e.phones[name] = p
	}
	for _, p := range e.phones {
		if err := p.WaitRegistered(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// conn signs a browser in as user with role, caller IDs and dial grants.
func (e *ctiEnv) conn(t *testing.T, ctx context.Context, user, role string, callerIDs []string, grants ...string) *signal.Conn {
	t.Helper()
	cl := auth.Claims{Name: user, Role: role, Dial: grants, CallerIDs: callerIDs}
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

// phoneHeard waits for the phone's call to close and returns what it heard, with when its call was established.
func (e *ctiEnv) phoneHeard(t *testing.T, ctx context.Context, name string) []int16 {
	t.Helper()
	p := e.phones[name]
	if _, err := p.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	s, rate, err := p.Recording(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rate != 8000 {
		s = resample8k(s, rate)
	}
	return s
}

// resample8k decimates a recording to 8 kHz (baresip records at the codec's rate, 8 kHz for G.711, but be safe).
func resample8k(s []int16, rate int) []int16 {
	if rate%8000 != 0 {
		return s
	}
	k := rate / 8000
	out := make([]int16, 0, len(s)/k)
	for i := 0; i < len(s); i += k {
		out = append(out, s[i])
	}
	return out
}

// call runs a synthetic browser call in the background; the result arrives on the returned channel.
type callResult struct {
	rep *synth.Report
	err error
}

func (e *ctiEnv) callAsync(ctx context.Context, sig synth.Signaller, o synth.CallOptions) (connected <-chan string, done <-chan callResult) {
	conn := make(chan string, 1)
	res := make(chan callResult, 1)
	o.OnConnected = func(id string) { conn <- id }
	o.TimeAlign = true
	if o.RecordMax == 0 {
		o.RecordMax = 30 * time.Second
	}
	go func() {
		rep, err := e.eng.Call(ctx, sig, o)
		res <- callResult{rep, err}
	}()
	return conn, res
}

// phase is a span of a call, as offsets from when a party started hearing it.
type phase struct {
	name     string
	from, to time.Duration
}

// heard summarises what a party heard in a phase: the fraction of windows with sound, and per frequency the
// fraction of voiced windows in which it held at least minShare of the energy.
func heard(s []int16, p phase, minShare float64, freqs ...float64) (voicedFrac float64, present []float64) {
	ws := audio.SpanWindows(s, 8000, p.from, p.to, freqs...)
	if len(ws) == 0 {
		return 0, make([]float64, len(freqs))
	}
	voiced := 0
	for _, w := range ws {
		if w.Voiced() {
			voiced++
		}
	}
	for i := range freqs {
		_, f := audio.Presence(ws, i, minShare)
		present = append(present, f)
	}
	return float64(voiced) / float64(len(ws)), present
}

// mohShare is the share of a phase's voiced windows in which the hold tune's notes carry most of the energy: music
// on hold, not silence and not a party's tone.
func mohShare(s []int16, p phase) (voicedFrac, music float64) {
	ws := audio.SpanWindows(s, 8000, p.from, p.to, mohHz...)
	voiced, n := 0, 0
	for _, w := range ws {
		if !w.Voiced() {
			continue
		}
		voiced++
		sum := 0.0
		for _, sh := range w.Shares {
			sum += sh
		}
		if sum >= 0.5 {
			n++
		}
	}
	if len(ws) == 0 || voiced == 0 {
		return 0, 0
	}
	return float64(voiced) / float64(len(ws)), float64(n) / float64(voiced)
}

func eventsOf(rep *synth.Report, types ...string) []synth.Event {
	var out []synth.Event
	for _, ev := range rep.Events {
		for _, t := range types {
			if ev.Type == t {
				out = append(out, ev)
			}
		}
	}
	return out
}

func describeEvents(evs []synth.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%s/%s@%.1fs ", ev.Type, ev.By, ev.At.Seconds())
	}
	return b.String()
}

func pct(f float64) string { return fmt.Sprintf("%.0f%%", math.Round(f*100)) }

// sigMux lets several synthetic calls share one signalling connection (an attended transfer's two calls): each
// call's view receives its own call_id's messages.
type sigMux struct {
	c    *signal.Conn
	mu   sync.Mutex
	subs map[string]chan signal.Message
}

func newSigMux(ctx context.Context, c *signal.Conn) *sigMux {
	m := &sigMux{c: c, subs: map[string]chan signal.Message{}}
	go func() { // ends when the connection closes or ctx ends
		for {
			msg, err := c.Recv(ctx)
			if err != nil {
				return
			}
			m.mu.Lock()
			ch := m.subs[msg.CallID]
			m.mu.Unlock()
			if ch != nil {
				select {
				case ch <- msg:
				default:
				}
			}
		}
	}()
	return m
}

type muxView struct {
	m  *sigMux
	ch chan signal.Message
}

func (m *sigMux) For(callID string) synth.Signaller {
	ch := make(chan signal.Message, 256)
	m.mu.Lock()
	m.subs[callID] = ch
	m.mu.Unlock()
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

// TestCTICalls: hold and resume both ways, transfers (blind to a phone and to an outside number, attended complete
// and cancel, a phone's REFER), a recording of both parties, and supervision (whisper, barge), each on the real
// stack and checked by what each party heard.
func TestCTICalls(t *testing.T) {
	testenv.Sensitive(t)
	e := newCTIEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	t.Run("hold and resume both ways", func(t *testing.T) { ctiHold(t, ctx, e) })
	t.Run("blind transfer of a phone to another phone", func(t *testing.T) { ctiBlindToPhone(t, ctx, e) })
	t.Run("blind transfer to an outside number", func(t *testing.T) { ctiBlindToPSTN(t, ctx, e) })
	t.Run("attended transfer completed", func(t *testing.T) { ctiAttended(t, ctx, e, true) })
	t.Run("attended transfer cancelled", func(t *testing.T) { ctiAttended(t, ctx, e, false) })
	t.Run("a phone transfers the browser", func(t *testing.T) { ctiPhoneREFER(t, ctx, e) })
	t.Run("recording holds both parties", func(t *testing.T) { ctiRecording(t, ctx, e) })
	t.Run("supervisor whispers then barges", func(t *testing.T) { ctiSupervise(t, ctx, e) })
}

// liveCallOf asks the console, as a supervisor, for the live call of user.
func (e *ctiEnv) liveCallOf(t *testing.T, ctx context.Context, sup *signal.Conn, user string) signal.LiveCall {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := sup.Send(ctx, signal.Message{Type: signal.TypeConsole}); err != nil {
			t.Fatal(err)
		}
		m := recvType(t, ctx, sup, signal.TypeConsole)
		for _, c := range m.Calls {
			if c.User == user && !c.Answered.IsZero() {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live call of %s on the console: %+v", user, m.Calls)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// apiRaw does an API request and returns the status and the raw body.
func apiRaw(t *testing.T, pb *testenv.Patchbay, method, path, key string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, pb.BaseURL+"/api/v1"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: pb.TLS}, Timeout: 10 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

type recordingMeta struct {
	ID        string `json:"id"`
	CallID    string `json:"call_id"`
	State     string `json:"state"`
	Format    string `json:"format"`
	StartedBy string `json:"started_by"`
	Bytes     int64  `json:"bytes"`
	Parties   []struct{ Role, Kind, ID string }
}

func ctiRecording(t *testing.T, ctx context.Context, e *ctiEnv) {
	sup := e.conn(t, ctx, "sam", "supervisor", nil)
	conn := e.conn(t, ctx, "alice", "agent", nil, "ext")
	connected, done := e.callAsync(ctx, conn, synth.CallOptions{CallID: "rec-1", To: "101", ToneHz: agentHz, ExpectHz: phone101Hz, Duration: 5 * time.Second})
	waitConnected(t, connected, done)
	live := e.liveCallOf(t, ctx, sup, "alice")
	var started struct{ Recording string }
	if st := apiDo(t, e.pb, "POST", "/calls/"+live.ID+"/recording", ctiKey, nil, &started); st != 201 || started.Recording == "" {
		t.Fatalf("start recording: %d %+v", st, started)
	}
	if st, _, _ := apiRaw(t, e.pb, "POST", "/calls/"+live.ID+"/recording", ""); st != 401 {
		t.Errorf("start recording without a key: %d, want 401", st)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("browser call: %v", r.err)
	}
	if ev := eventsOf(r.rep, signal.TypeRecording); len(ev) < 1 {
		t.Errorf("the browser was not told it is recorded: %+v", r.rep.Events)
	}
	e.phoneHeard(t, ctx, "101")
	var meta recordingMeta
	deadline := time.Now().Add(15 * time.Second)
	for {
		meta = recordingMeta{}
		apiDo(t, e.pb, "GET", "/recordings/"+started.Recording, ctiKey, nil, &meta)
		if meta.State == "complete" || meta.State == "failed" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if meta.State != "complete" || meta.CallID != live.ID || meta.Format != "wav" || len(meta.Parties) != 2 || meta.StartedBy != "api:crm" {
		t.Fatalf("recording sidecar %+v; want complete, call %s, two parties, started by api:crm", meta, live.ID)
	}
	var list struct{ Recordings []recordingMeta }
	apiDo(t, e.pb, "GET", "/recordings", ctiKey, nil, &list)
	if len(list.Recordings) == 0 || list.Recordings[0].ID != meta.ID {
		t.Errorf("GET /recordings does not list %s first: %+v", meta.ID, list.Recordings)
	}
	if st, _, _ := apiRaw(t, e.pb, "GET", "/recordings", ""); st != 401 {
		t.Errorf("list without a key: %d, want 401", st)
	}
	if st, _, _ := apiRaw(t, e.pb, "GET", "/recordings/"+meta.ID+"/file", "not-the-key-0123456789abcdef"); st != 401 {
		t.Errorf("download with a wrong key: %d, want 401", st)
	}
	st, body, hdr := apiRaw(t, e.pb, "GET", "/recordings/"+meta.ID+"/file", ctiKey)
	if st != 200 || hdr.Get("Content-Type") != "audio/wav" || int64(len(body)) != meta.Bytes {
		t.Fatalf("download: %d %s, %d bytes (sidecar says %d)", st, hdr.Get("Content-Type"), len(body), meta.Bytes)
	}
	f := filepath.Join(t.TempDir(), "rec.wav")
	if err := os.WriteFile(f, body, 0o600); err != nil {
		t.Fatal(err)
	}
	pcm, rate, err := audio.ReadWAV(f)
	if err != nil {
		t.Fatal(err)
	}
	if rate != 8000 {
		pcm = resample8k(pcm, rate)
	}
	p := phase{name: "recording", from: 300 * time.Millisecond, to: time.Duration(len(pcm))*time.Second/8000 - 300*time.Millisecond}
	v, h := heard(pcm, p, 0.2, agentHz, phone101Hz)
	t.Logf("recording %s: %.1f s, voiced %s, agent's 440 Hz in %s, phone's 1000 Hz in %s", meta.ID, float64(len(pcm))/8000, pct(v), pct(h[0]), pct(h[1]))
	if len(pcm) < 8000*2 || h[0] < 0.7 || h[1] < 0.7 {
		t.Errorf("the recording does not hold both parties: %.1f s, 440 Hz %s, 1000 Hz %s", float64(len(pcm))/8000, pct(h[0]), pct(h[1]))
		for i, w := range audio.Windows(pcm, 8000, agentHz, phone101Hz) {
			t.Logf("window %d: rms %.0f, 440 Hz %.2f, 1000 Hz %.2f", i, w.RMS, w.Shares[0], w.Shares[1])
		}
	}
	if st, _, _ := apiRaw(t, e.pb, "DELETE", "/recordings/"+meta.ID, ctiKey); st != 204 {
		t.Errorf("delete: %d", st)
	}
	if st, _, _ := apiRaw(t, e.pb, "GET", "/recordings/"+meta.ID+"/file", ctiKey); st != 404 {
		t.Errorf("download after delete: %d, want 404", st)
	}
	e.assertClean(t)
}

// ctiSupervise: the agent talks to 101; a supervisor whispers (the agent hears it, 101 does not), then barges
// (both hear it). The supervisor hears both parties throughout.
func ctiSupervise(t *testing.T, ctx context.Context, e *ctiEnv) {
	sup := e.conn(t, ctx, "sam", "supervisor", nil)
	conn := e.conn(t, ctx, "alice", "agent", nil, "ext")
	connected, done := e.callAsync(ctx, conn, synth.CallOptions{CallID: "sv-1", To: "101", ToneHz: agentHz, ExpectHz: phone101Hz, Duration: 10 * time.Second})
	waitConnected(t, connected, done)
	start101 := e.established(t, ctx, "101")
	live := e.liveCallOf(t, ctx, sup, "alice")

	supConnected := make(chan string, 1)
	supDone := make(chan callResult, 1)
	go func() {
		rep, err := e.eng.Offer(ctx, sup, synth.CallOptions{CallID: "sup-1", ToneHz: supHz, ExpectHz: agentHz, Duration: 6 * time.Second,
			TimeAlign: true, RecordMax: 20 * time.Second, OnConnected: func(id string) { supConnected <- id }},
			func(id, sdp string) signal.Message {
				return signal.Message{Type: signal.TypeSupervise, CallID: id, Target: live.ID, Mode: signal.ModeWhisper, SDP: sdp}
			})
		supDone <- callResult{rep, err}
	}()
	waitConnected(t, supConnected, supDone)
	whisper := time.Now()
	time.Sleep(3 * time.Second)
	if err := sup.Send(ctx, signal.Message{Type: signal.TypeSupervise, CallID: "sup-1", Mode: signal.ModeBarge}); err != nil {
		t.Fatal(err)
	}
	barge := time.Now()
	rs := <-supDone
	if rs.err != nil {
		t.Fatalf("supervisor: %v", rs.err)
	}
	ended := time.Now()
	r := <-done
	if r.err != nil {
		t.Fatalf("agent: %v", r.err)
	}
	const margin = 700 * time.Millisecond
	agentStart := r.rep.Start.Add(r.rep.FirstPacketAfter)
	a := r.rep.Audio
	for _, p := range []phase{{"whisper", whisper.Sub(agentStart) + margin, barge.Sub(agentStart) - 300*time.Millisecond},
		{"barge", barge.Sub(agentStart) + margin, ended.Sub(agentStart) - 300*time.Millisecond}} {
		_, h := heard(a, p, 0.15, supHz, phone101Hz)
		t.Logf("agent during %s: supervisor's 300 Hz in %s, phone in %s", p.name, pct(h[0]), pct(h[1]))
		if h[0] < 0.6 || h[1] < 0.6 {
			t.Errorf("agent during %s: want the supervisor and the customer (300 Hz %s, 1000 Hz %s)", p.name, pct(h[0]), pct(h[1]))
		}
	}
	sp := e.phoneHeard(t, ctx, "101")
	pw := phase{"whisper", whisper.Sub(start101) + margin, barge.Sub(start101) - 300*time.Millisecond}
	_, hw := heard(sp, pw, 0.1, supHz, agentHz)
	pb := phase{"barge", barge.Sub(start101) + margin, ended.Sub(start101) - 300*time.Millisecond}
	_, hb := heard(sp, pb, 0.15, supHz, agentHz)
	t.Logf("customer during whisper: supervisor in %s, agent in %s; during barge: supervisor in %s, agent in %s", pct(hw[0]), pct(hw[1]), pct(hb[0]), pct(hb[1]))
	if hw[0] > 0.05 || hw[1] < 0.7 {
		t.Errorf("customer during whisper: heard the supervisor in %s (want none), the agent in %s", pct(hw[0]), pct(hw[1]))
	}
	if hb[0] < 0.6 {
		t.Errorf("customer during barge: heard the supervisor in %s only", pct(hb[0]))
	}
	sa := rs.rep.Audio
	ps := phase{"supervising", margin, time.Duration(len(sa))*time.Second/8000 - 300*time.Millisecond}
	_, hs := heard(sa, ps, 0.15, agentHz, phone101Hz)
	t.Logf("supervisor heard the agent in %s, the customer in %s", pct(hs[0]), pct(hs[1]))
	if hs[0] < 0.6 || hs[1] < 0.6 {
		t.Errorf("the supervisor does not hear both parties (agent %s, customer %s)", pct(hs[0]), pct(hs[1]))
	}
	e.assertClean(t)
}

// waitConnected waits for a synthetic call to be up and returns its call_id.
func waitConnected(t *testing.T, connected <-chan string, done <-chan callResult) string {
	t.Helper()
	select {
	case id := <-connected:
		return id
	case r := <-done:
		t.Fatalf("call ended before it connected: %v", r.err)
	}
	return ""
}

// twoPhonesTalk hangs a up and checks that phones a and b heard each other from joined on (each phone's recording
// starts when its call was established: startA, startB).
func (e *ctiEnv) twoPhonesTalk(t *testing.T, ctx context.Context, a, b string, hzA, hzB float64, startA, startB, joined time.Time) {
	t.Helper()
	if _, err := e.phones[a].Command(ctx, "hangup", ""); err != nil {
		t.Errorf("hang up %s: %v", a, err)
	}
	sa, sb := e.phoneHeard(t, ctx, a), e.phoneHeard(t, ctx, b)
	const margin = time.Second
	pa := phase{name: a + " after the transfer", from: max(joined.Sub(startA), 0) + margin, to: time.Duration(len(sa))*time.Second/8000 - 500*time.Millisecond}
	pb := phase{name: b + " after the transfer", from: max(joined.Sub(startB), 0) + margin, to: time.Duration(len(sb))*time.Second/8000 - 500*time.Millisecond}
	va, ha := heard(sa, pa, 0.5, hzB)
	vb, hb := heard(sb, pb, 0.5, hzA)
	t.Logf("%s heard %v Hz in %s (voiced %s); %s heard %v Hz in %s (voiced %s)", a, hzB, pct(ha[0]), pct(va), b, hzA, pct(hb[0]), pct(vb))
	if ha[0] < 0.7 || hb[0] < 0.7 {
		t.Errorf("phones %s and %s did not hear each other after the transfer", a, b)
	}
}

// established waits for the phone's call and says when it began (its recording starts then).
func (e *ctiEnv) established(t *testing.T, ctx context.Context, name string) time.Time {
	t.Helper()
	if _, err := e.phones[name].WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

func ctiBlindToPhone(t *testing.T, ctx context.Context, e *ctiEnv) {
	conn := e.conn(t, ctx, "alice", "agent", nil, "ext")
	connected, done := e.callAsync(ctx, conn, synth.CallOptions{CallID: "bt-1", To: "101", ToneHz: agentHz, ExpectHz: phone101Hz, Duration: time.Minute})
	id := waitConnected(t, connected, done)
	start101 := e.established(t, ctx, "101")
	time.Sleep(1500 * time.Millisecond)
	if err := conn.Send(ctx, signal.Message{Type: signal.TypeTransfer, CallID: id, To: "102"}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("browser call: %v", r.err)
	}
	if ev := eventsOf(r.rep, signal.TypeTransferred); len(ev) != 1 || ev[0].By != signal.ByYou || ev[0].To != "102" || r.rep.HungUpBy != "remote" {
		t.Errorf("browser: transferred %+v, hung up by %s; want transferred to 102 by you, then the server's hangup", ev, r.rep.HungUpBy)
	}
	start102 := e.established(t, ctx, "102")
	time.Sleep(3 * time.Second)
	e.twoPhonesTalk(t, ctx, "101", "102", phone101Hz, phone102Hz, start101, start102, start102)
	e.assertClean(t)
}

func ctiBlindToPSTN(t *testing.T, ctx context.Context, e *ctiEnv) {
	before := len(invitesSoFar(t, e.sipp["alpha"]))
	conn := e.conn(t, ctx, "alice", "agent", []string{ctiCallerID}, "ext", "pstn")
	connected, done := e.callAsync(ctx, conn, synth.CallOptions{CallID: "bt-2", To: "101", ToneHz: agentHz, ExpectHz: phone101Hz, Duration: time.Minute})
	id := waitConnected(t, connected, done)
	e.established(t, ctx, "101")
	time.Sleep(1500 * time.Millisecond)
	if err := conn.Send(ctx, signal.Message{Type: signal.TypeTransfer, CallID: id, To: "+442079460555"}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("browser call: %v", r.err)
	}
	if ev := eventsOf(r.rep, signal.TypeTransferred); len(ev) != 1 || ev[0].To != "+442079460555" {
		t.Errorf("browser: transferred %+v; want to +442079460555", ev)
	}
	inv, err := e.sipp["alpha"].WaitInvites(ctx, before+1)
	if err != nil {
		t.Fatal(err)
	}
	m := inv[len(inv)-1]
	from, pai := numberOf(m.Header("From")), numberOf(m.Header("P-Asserted-Identity"))
	t.Logf("carrier INVITE %s: From %s, PAI %s", requestUser(m), from, pai)
	if requestUser(m) != "+442079460555" || from != ctiCallerID || pai != ctiCallerID {
		t.Errorf("carrier saw INVITE for %s from %s (PAI %s); want +442079460555 presenting the agent's %s", requestUser(m), from, pai, ctiCallerID)
	}
	time.Sleep(5 * time.Second)
	// The carrier echoes: 101 hears its own tone back through the trunk.
	if _, err := e.phones["101"].Command(ctx, "hangup", ""); err != nil {
		t.Error(err)
	}
	s := e.phoneHeard(t, ctx, "101")
	// The last 2 s before the hang-up (5 s after the carrier's INVITE): baresip's recording holds only what
	// arrived, so on a loaded host it runs behind the wall clock and an offset from start101 may fall past its end;
	// and what went missing in a stall shifts the tail back in time, toward the music on hold before the answer
	// (once seen with 3 s here).
	end := time.Duration(len(s)) * time.Second / 8000
	p := phase{name: "through the carrier", from: end - 2*time.Second, to: end - 300*time.Millisecond}
	v, h := heard(s, p, 0.5, phone101Hz)
	t.Logf("101 %s: voiced %s, its own 1000 Hz echoed in %s", p.name, pct(v), pct(h[0]))
	if h[0] < 0.7 {
		t.Errorf("101 did not hear the carrier's echo after the transfer (voiced %s, 1000 Hz %s)", pct(v), pct(h[0]))
	}
	e.assertClean(t)
}

// invitesSoFar reads the carrier's trace without stopping it.
func invitesSoFar(t *testing.T, s *testenv.SIPp) []testenv.SIPMessage {
	t.Helper()
	inv, err := s.ReceivedInvites()
	if err != nil {
		return nil
	}
	return inv
}

// ctiAttended: the agent calls 101, holds it, calls 102 (the consult call), then joins them (complete) or hangs up
// the consult call and resumes (cancel).
func ctiAttended(t *testing.T, ctx context.Context, e *ctiEnv, complete bool) {
	conn := e.conn(t, ctx, "alice", "agent", nil, "ext")
	mux := newSigMux(ctx, conn)
	tag := map[bool]string{true: "c", false: "x"}[complete]
	firstID, consultID := "at-1"+tag, "at-2"+tag
	ctx1, hangup1 := context.WithCancel(ctx) // cancelling it hangs the first call up from the browser
	defer hangup1()
	c1, d1 := e.callAsync(ctx1, mux.For(firstID), synth.CallOptions{CallID: firstID, To: "101", ToneHz: agentHz, ExpectHz: phone101Hz, Duration: time.Minute})
	waitConnected(t, c1, d1)
	start101 := e.established(t, ctx, "101")
	time.Sleep(time.Second)
	if err := conn.Send(ctx, signal.Message{Type: signal.TypeHold, CallID: firstID}); err != nil {
		t.Fatal(err)
	}
	consultDur := 3 * time.Second
	if complete {
		consultDur = time.Minute
	}
	c2, d2 := e.callAsync(ctx, mux.For(consultID), synth.CallOptions{CallID: consultID, To: "102", ToneHz: agentHz, ExpectHz: phone102Hz, Duration: consultDur})
	waitConnected(t, c2, d2)
	start102 := e.established(t, ctx, "102")
	time.Sleep(1500 * time.Millisecond)
	if !complete {
		r2 := <-d2 // the consult call ends by itself (hung up by the agent)
		if r2.err != nil || !r2.rep.Heard.Detected(5) {
			t.Errorf("consult call: %v, heard %+v", r2.err, r2.rep.Heard)
		}
		e.phoneHeard(t, ctx, "102")
		if err := conn.Send(ctx, signal.Message{Type: signal.TypeResume, CallID: firstID}); err != nil {
			t.Fatal(err)
		}
		resumed := time.Now()
		time.Sleep(2500 * time.Millisecond)
		hangup1()
		r1 := <-d1
		s := e.phoneHeard(t, ctx, "101")
		b := r1.rep.Audio
		pb := phase{name: "after resuming", from: resumed.Sub(r1.rep.Start.Add(r1.rep.FirstPacketAfter)) + 700*time.Millisecond}
		pb.to = time.Duration(len(b))*time.Second/8000 - 300*time.Millisecond
		_, hb := heard(b, pb, 0.5, phone101Hz)
		t.Logf("browser %s: 101's tone in %s", pb.name, pct(hb[0]))
		if hb[0] < 0.7 {
			t.Errorf("browser did not hear 101 again after cancelling the consult call (%s)", pct(hb[0]))
		}
		pp := phase{name: "after resuming", from: time.Duration(len(s))*time.Second/8000 - 2*time.Second, to: time.Duration(len(s))*time.Second/8000 - 300*time.Millisecond}
		_, hp := heard(s, pp, 0.5, agentHz)
		t.Logf("101 %s: the agent in %s", pp.name, pct(hp[0]))
		if hp[0] < 0.7 {
			t.Errorf("101 did not hear the agent again after the cancel (%s)", pct(hp[0]))
		}
		e.assertClean(t)
		return
	}
	if err := conn.Send(ctx, signal.Message{Type: signal.TypeTransfer, CallID: firstID, Target: consultID}); err != nil {
		t.Fatal(err)
	}
	r1, r2 := <-d1, <-d2
	for _, r := range []callResult{r1, r2} {
		if r.err != nil {
			t.Errorf("browser call: %v", r.err)
			continue
		}
		if ev := eventsOf(r.rep, signal.TypeTransferred); len(ev) != 1 || r.rep.HungUpBy != "remote" {
			t.Errorf("browser call %s: transferred %+v, hung up by %s", r.rep.CallID, ev, r.rep.HungUpBy)
		}
	}
	joined := time.Now()
	time.Sleep(3 * time.Second)
	e.twoPhonesTalk(t, ctx, "101", "102", phone101Hz, phone102Hz, start101, start102, joined)
	e.assertClean(t)
}

// ctiPhoneREFER: 101 calls the browser user alice, then transfers her (blind REFER) to 102; her audio goes on
// with 102.
func ctiPhoneREFER(t *testing.T, ctx context.Context, e *ctiEnv) {
	conn := e.conn(t, ctx, "alice", "agent", nil)
	conn2 := make(chan string, 1)
	done := make(chan callResult, 1)
	go func() {
		rep, err := e.eng.Receive(ctx, conn, synth.CallOptions{ToneHz: agentHz, ExpectHz: phone102Hz, Duration: 9 * time.Second,
			TimeAlign: true, RecordMax: 20 * time.Second, OnConnected: func(id string) { conn2 <- id }})
		done <- callResult{rep, err}
	}()
	if err := e.phones["101"].Dial(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, conn2, done)
	time.Sleep(2 * time.Second)
	if _, err := e.phones["101"].Command(ctx, "transfer", "102"); err != nil {
		t.Fatal(err)
	}
	referred := time.Now()
	r := <-done
	if r.err != nil {
		t.Fatalf("browser: %v", r.err)
	}
	ev := eventsOf(r.rep, signal.TypeTransferred)
	if len(ev) != 1 || ev[0].By != signal.ByFar || ev[0].To != "102" {
		t.Errorf("browser: transferred %+v; want by far to 102", ev)
	}
	b := r.rep.Audio
	p := phase{name: "after the REFER", from: referred.Sub(r.rep.Start.Add(r.rep.FirstPacketAfter)) + 1500*time.Millisecond}
	p.to = time.Duration(len(b))*time.Second/8000 - 300*time.Millisecond
	v, h := heard(b, p, 0.5, phone102Hz)
	t.Logf("browser %s: voiced %s, 102's 700 Hz in %s", p.name, pct(v), pct(h[0]))
	if h[0] < 0.7 {
		t.Errorf("browser did not hear 102 after 101 transferred it (voiced %s, 700 Hz %s)", pct(v), pct(h[0]))
	}
	e.phoneHeard(t, ctx, "101")
	s := e.phoneHeard(t, ctx, "102")
	pp := phase{name: "talking to the browser", from: 700 * time.Millisecond, to: time.Duration(len(s))*time.Second/8000 - 500*time.Millisecond}
	_, hp := heard(s, pp, 0.5, agentHz)
	t.Logf("102 %s: the browser's 440 Hz in %s", pp.name, pct(hp[0]))
	if hp[0] < 0.7 {
		t.Errorf("102 did not hear the browser (%s)", pct(hp[0]))
	}
	e.assertClean(t)
}

func ctiHold(t *testing.T, ctx context.Context, e *ctiEnv) {
	conn := e.conn(t, ctx, "alice", "agent", nil, "ext")
	connected, done := e.callAsync(ctx, conn, synth.CallOptions{CallID: "hold-1", To: "101", ToneHz: agentHz, ExpectHz: phone101Hz, Duration: 15 * time.Second})
	var id string
	select {
	case id = <-connected:
	case r := <-done:
		t.Fatalf("call ended before it connected: %v", r.err)
	}
	if _, err := e.phones["101"].WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	phoneStart := time.Now()
	marks := map[string]time.Time{}
	step := func(name string, wait time.Duration, act func()) {
		time.Sleep(wait)
		marks[name] = time.Now()
		act()
	}
	send := func(typ string) func() {
		return func() {
			if err := conn.Send(ctx, signal.Message{Type: typ, CallID: id}); err != nil {
				t.Errorf("send %s: %v", typ, err)
			}
		}
	}
	phone := func(cmd string) func() {
		return func() {
			if _, err := e.phones["101"].Command(ctx, cmd, ""); err != nil {
				t.Errorf("phone %s: %v", cmd, err)
			}
		}
	}
	step("hold", 2500*time.Millisecond, send(signal.TypeHold))
	step("resume", 3*time.Second, send(signal.TypeResume))
	step("phone hold", 2500*time.Millisecond, phone("hold"))
	step("phone resume", 3*time.Second, phone("resume"))
	r := <-done
	if r.err != nil {
		t.Fatalf("browser call: %v", r.err)
	}
	rep := r.rep
	t.Logf("browser events: %s", describeEvents(eventsOf(rep, signal.TypeHeld, signal.TypeResumed)))
	want := []string{"held/you", "resumed/you", "held/far", "resumed/far"}
	var got []string
	for _, ev := range eventsOf(rep, signal.TypeHeld, signal.TypeResumed) {
		got = append(got, ev.Type+"/"+ev.By)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("browser got %v; want %v", got, want)
	}

	// Offsets into each party's audio, with margins around every switch.
	const margin = 700 * time.Millisecond
	browserStart := rep.Start.Add(rep.FirstPacketAfter)
	span := func(origin time.Time, name, from, to string) phase {
		p := phase{name: name, to: 30 * time.Second}
		if from != "" {
			p.from = marks[from].Sub(origin) + margin
		}
		if to != "" {
			p.to = marks[to].Sub(origin) - 300*time.Millisecond
		}
		return p
	}

	phoneAudio := e.phoneHeard(t, ctx, "101")
	// The phone: the agent before, music on hold while held, the agent again after.
	for _, p := range []phase{span(phoneStart, "before hold", "", "hold"), span(phoneStart, "after resume", "resume", "phone hold")} {
		v, pr := heard(phoneAudio, p, 0.5, agentHz)
		t.Logf("phone %s: voiced %s, agent's 440 Hz in %s", p.name, pct(v), pct(pr[0]))
		if v < 0.8 || pr[0] < 0.8 {
			t.Errorf("phone %s: did not hear the agent (voiced %s, 440 Hz %s)", p.name, pct(v), pct(pr[0]))
		}
	}
	p := span(phoneStart, "held by the browser", "hold", "resume")
	v, music := mohShare(phoneAudio, p)
	_, agent := heard(phoneAudio, p, 0.2, agentHz)
	t.Logf("phone %s: voiced %s, music on hold in %s, agent in %s", p.name, pct(v), pct(music), pct(agent[0]))
	if v < 0.8 || music < 0.7 || agent[0] > 0.1 {
		t.Errorf("phone %s: want music on hold, not silence or the agent (voiced %s, music %s, agent %s)", p.name, pct(v), pct(music), pct(agent[0]))
	}

	// The browser: the phone before, silence while it holds, music while the phone holds it, the phone after.
	b := rep.Audio
	for _, p := range []phase{span(browserStart, "before hold", "", "hold"), span(browserStart, "after resume", "resume", "phone hold"),
		span(browserStart, "after the phone resumed", "phone resume", "")} {
		p.to = min(p.to, time.Duration(len(b))*time.Second/8000-300*time.Millisecond)
		v, pr := heard(b, p, 0.5, phone101Hz)
		t.Logf("browser %s: voiced %s, phone's 1000 Hz in %s", p.name, pct(v), pct(pr[0]))
		if v < 0.8 || pr[0] < 0.8 {
			t.Errorf("browser %s: did not hear the phone (voiced %s, 1000 Hz %s)", p.name, pct(v), pct(pr[0]))
		}
	}
	p = span(browserStart, "holding the phone", "hold", "resume")
	v, _ = heard(b, p, 0.5, phone101Hz)
	t.Logf("browser %s: voiced %s", p.name, pct(v))
	if v > 0.2 {
		t.Errorf("browser %s: heard the held party (voiced %s); the hold mutes it", p.name, pct(v))
	}
	p = span(browserStart, "held by the phone", "phone hold", "phone resume")
	v, music = mohShare(b, p)
	t.Logf("browser %s: voiced %s, music on hold in %s", p.name, pct(v), pct(music))
	if v < 0.8 || music < 0.6 {
		t.Errorf("browser %s: want music on hold (voiced %s, music %s)", p.name, pct(v), pct(music))
	}
	e.assertClean(t)
}
