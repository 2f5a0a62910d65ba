//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ari"
	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

const roomAPIKey = "room-test-key-0123456789abcdef"

// roomEnv is Asterisk (with a trunk identified by 127.0.0.2), optionally Redis, Patchbay with an API key, a
// synthetic-browser engine and an inspecting ARI client.
type roomEnv struct {
	ast   *testenv.Asterisk
	pb    *testenv.Patchbay
	redis *testenv.Redis
	eng   *synth.Engine
	ari   *ari.Client
	http  *http.Client
	dir   string
}

func newRoomEnv(t *testing.T, withRedis bool) *roomEnv {
	t.Helper()
	e := &roomEnv{dir: t.TempDir()}
	if withRedis {
		e.redis = testenv.StartRedis(t)
	}
	e.ast = testenv.StartAsterisk(t, testenv.AsteriskOptions{Params: func(p *asteriskconfigs.Params) {
		// The fake carrier is a baresip on 127.0.0.2 that only calls in; nothing registers or is called out.
		p.Trunk = asteriskconfigs.Trunk{Name: "carrier", Host: "127.0.0.2:5060", Match: []string{"127.0.0.2"}}
	}})
	e.pb = testenv.StartPatchbay(t, e.ast, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Auth.APIKeys = map[string]config.Secret{"test": roomAPIKey}
		c.Rooms.Grace = 2 * time.Second
		if e.redis != nil {
			c.Redis.Addr = e.redis.Addr()
		}
	}})
	var err error
	if e.eng, err = synth.NewEngine(synth.EngineOptions{LoopbackOnly: true}); err != nil {
		t.Fatal(err)
	}
	if e.ari, err = ari.New(ari.Config{URL: e.ast.ARIURL(), Username: e.ast.ARIUser, Password: e.ast.ARIPassword, Application: "inspector"}); err != nil {
		t.Fatal(err)
	}
	e.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: e.pb.TLS}}
	return e
}

// api calls the REST API and checks the status; the JSON reply is decoded into out when given.
func (e *roomEnv) api(t *testing.T, method, path string, body any, want int, out any) []byte {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.pb.BaseURL+"/api/v1"+path, rd)
	req.Header.Set("Authorization", "Bearer "+roomAPIKey)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return data
}

type apiRoom struct {
	ID, Backend  string
	Participants int
}

type apiParticipant struct {
	ID, Kind, Name, Role string
	CallerID             string `json:"caller_id"`
	Muted, Talking       bool
}

func (e *roomEnv) createRoom(t *testing.T, body map[string]any) apiRoom {
	t.Helper()
	var r apiRoom
	e.api(t, "POST", "/rooms", body, http.StatusCreated, &r)
	return r
}

func (e *roomEnv) participants(t *testing.T, room string) []apiParticipant {
	t.Helper()
	var out struct{ Participants []apiParticipant }
	e.api(t, "GET", "/rooms/"+room+"/participants", nil, http.StatusOK, &out)
	return out.Participants
}

// token mints a room token through the API.
func (e *roomEnv) token(t *testing.T, room, user string) string {
	t.Helper()
	var out struct{ Token string }
	e.api(t, "POST", "/rooms/"+room+"/tokens", map[string]any{"user": user, "name": strings.ToUpper(user[:1]) + user[1:]}, http.StatusCreated, &out)
	return out.Token
}

func (e *roomEnv) dial(t *testing.T, ctx context.Context, token string) *signal.Conn {
	t.Helper()
	c, err := signal.Dial(ctx, e.pb.URL, token, signal.DialOptions{TLSConfig: e.pb.TLS})
	if err != nil {
		t.Fatalf("signal dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wav writes a 60 s tone for baresip (it hangs up when its WAV ends).
func (e *roomEnv) wav(t *testing.T, hz float64) string {
	t.Helper()
	p := filepath.Join(e.dir, fmt.Sprintf("%d.wav", int(hz)))
	if err := audio.WriteWAV(p, audio.Sine(hz, 8000, 60*time.Second, 0.25), 8000); err != nil {
		t.Fatal(err)
	}
	return p
}

// carrier is a baresip on 127.0.0.2, which Asterisk identifies as the trunk: its calls land in from-trunk.
func (e *roomEnv) carrier(t *testing.T, name string, hz float64) *testenv.Baresip {
	t.Helper()
	return testenv.StartBaresip(t, testenv.BaresipOptions{Name: name, User: "carrier", Password: "unused",
		Registrar: fmt.Sprintf("127.0.0.1:%d", e.ast.SIPPort), LocalAddr: "127.0.0.2", NoRegister: true, PlayWAV: e.wav(t, hz)})
}

func (e *roomEnv) callDID(t *testing.T, ctx context.Context, b *testenv.Baresip, did string) {
	t.Helper()
	if err := b.Dial(ctx, fmt.Sprintf("sip:%s@127.0.0.1:%d;transport=udp", did, e.ast.SIPPort)); err != nil {
		t.Fatal(err)
	}
}

// assertClean fails if Asterisk still has channels or bridges, or Patchbay calls, a few seconds on.
func (e *roomEnv) assertClean(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var chans []ari.Channel
	var bridges []ari.Bridge
	deadline := time.Now().Add(8 * time.Second)
	for {
		var err error
		if chans, err = e.ari.Channels().List(ctx); err != nil {
			t.Fatalf("list channels: %v", err)
		}
		if bridges, err = e.ari.Bridges().List(ctx); err != nil {
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
	var names, bids []string
	for _, c := range chans {
		names = append(names, c.Name)
	}
	for _, b := range bridges {
		bids = append(bids, b.ID)
	}
	t.Fatalf("left behind: channels %v, bridges %v, %d active calls", names, bids, e.pb.Server.ActiveCalls())
}

// heardShares logs and checks what a synthetic browser heard: every tone in want (mixed with the others, so at
// least minShare each), and not the tones in notWant.
func heardShares(t *testing.T, who string, pcm []int16, want []float64, notWant []float64) {
	t.Helper()
	const minShare = 0.2
	var parts []string
	for _, hz := range want {
		s, voiced := synth.ToneShare(pcm, hz)
		parts = append(parts, fmt.Sprintf("%dHz=%.2f", int(hz), s))
		if voiced < 10 || s < minShare {
			t.Errorf("%s: did not hear %d Hz (share %.2f over %d voiced windows)", who, int(hz), s, voiced)
		}
	}
	for _, hz := range notWant {
		s, _ := synth.ToneShare(pcm, hz)
		parts = append(parts, fmt.Sprintf("not %dHz=%.2f", int(hz), s))
		if s > 0.05 {
			t.Errorf("%s: heard %d Hz (share %.2f), which it must not", who, int(hz), s)
		}
	}
	t.Logf("%s heard: %s (%d samples)", who, strings.Join(parts, " "), len(pcm))
}

type joinResult struct {
	rep *synth.Report
	err error
}

// joinAll runs one synthetic browser per tone in room concurrently and returns their reports in order.
func (e *roomEnv) joinAll(t *testing.T, ctx context.Context, room string, tones []float64, d time.Duration) []joinResult {
	t.Helper()
	out := make([]joinResult, len(tones))
	var wg sync.WaitGroup
	for i, hz := range tones {
		conn := e.dial(t, ctx, e.token(t, room, fmt.Sprintf("user%d", i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := e.eng.Join(ctx, conn, synth.JoinOptions{Room: room}, synth.CallOptions{ToneHz: hz, Amplitude: 0.2, Duration: d})
			out[i] = joinResult{rep, err}
		}()
	}
	wg.Wait()
	return out
}

// lastSeconds keeps the last d of 8 kHz audio.
func lastSeconds(pcm []int16, d time.Duration) []int16 {
	n := int(d / time.Millisecond * 8)
	if len(pcm) <= n {
		return pcm
	}
	return pcm[len(pcm)-n:]
}

func TestRoomThreeBrowsersHearEachOther(t *testing.T) {
	e := newRoomEnv(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rm := e.createRoom(t, map[string]any{"name": "three"})
	if len(rm.ID) != 26 || rm.Backend != "bridge" {
		t.Fatalf("random room: %+v", rm)
	}
	tones := []float64{440, 1000, 1700}
	res := e.joinAll(t, ctx, rm.ID, tones, 4*time.Second)
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("browser %d: %v", i, r.err)
		}
		var others []float64
		for j, hz := range tones {
			if j != i {
				others = append(others, hz)
			}
		}
		// Judge the last 2 s, when all three are surely in the room.
		heardShares(t, fmt.Sprintf("browser %d (%d Hz)", i, int(tones[i])), lastSeconds(r.rep.Audio, 2*time.Second), others, []float64{tones[i]})
		joined, ok := r.rep.Event(signal.TypeJoined)
		if !ok || joined.Room != rm.ID || joined.Participant == nil || !joined.Participant.You || joined.Participant.Kind != "browser" {
			t.Errorf("browser %d: joined event %+v", i, joined)
		}
		// Each browser learns of both others: listed in its joined message if they were in first, or announced
		// as they join. Which browser gets in first is up to the scheduler: they join at once.
		known := map[string]bool{}
		if ok {
			for _, p := range joined.Participants {
				if !p.You {
					known[p.ID] = true
				}
			}
		}
		for _, ev := range r.rep.Events {
			if ev.Type == signal.TypeRoom && ev.RoomEvent == signal.RoomEventJoined && ev.Participant != nil && !ev.Participant.You {
				known[ev.Participant.ID] = true
			}
		}
		if len(known) != len(tones)-1 {
			t.Errorf("browser %d learnt of %d other participants (%v), want %d: %+v", i, len(known), known, len(tones)-1, r.rep.Events)
		}
	}
	// Empty room ends after its grace (2 s here) and its bridge goes.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) && e.pb.Server.Rooms().Exists(rm.ID) {
		time.Sleep(100 * time.Millisecond)
	}
	if e.pb.Server.Rooms().Exists(rm.ID) {
		t.Errorf("empty room %s still exists after its grace period", rm.ID)
	}
	e.assertClean(t)
}

// waitParticipants polls the API until room has n participants and returns them.
func (e *roomEnv) waitParticipants(t *testing.T, room string, n int) []apiParticipant {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps := e.participants(t, room)
		if len(ps) == n {
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("room %s: %d participants, want %d: %+v", room, len(ps), n, ps)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// expectTreatment dials did from the carrier and expects the refusal: early media, then the given SIP status.
func (e *roomEnv) expectTreatment(t *testing.T, ctx context.Context, b *testenv.Baresip, did, status string) {
	t.Helper()
	start := time.Now()
	e.callDID(t, ctx, b, did)
	ev, err := b.WaitEvent(ctx, "CALL_CLOSED")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("call to %s closed after %v: %q", did, time.Since(start).Round(time.Millisecond), ev.Param)
	if !strings.Contains(ev.Param, status) {
		t.Errorf("call to %s: closed with %q, want %s", did, ev.Param, status)
	}
	if time.Since(start) < time.Second {
		t.Errorf("call to %s refused after %v: the treatment (announcement or congestion tone) did not play", did, time.Since(start))
	}
	// Never a silent hang: the caller heard the announcement (or the congestion tone) as early media.
	pcm, rate, err := b.Recording(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep := audio.Detect(pcm, rate, 425); rep.Voiced < 10 {
		t.Errorf("call to %s: the caller heard silence before the %s (%d voiced windows)", did, status, rep.Voiced)
	}
}

// joinInBackground runs one synthetic browser in room for d and returns a channel with its result.
func (e *roomEnv) joinInBackground(t *testing.T, ctx context.Context, room, user string, hz float64, d time.Duration) <-chan joinResult {
	t.Helper()
	conn := e.dial(t, ctx, e.token(t, room, user))
	done := make(chan joinResult, 1)
	go func() {
		rep, err := e.eng.Join(ctx, conn, synth.JoinOptions{Room: room},
			synth.CallOptions{ToneHz: hz, Amplitude: 0.2, Duration: d, RecordMax: d + 5*time.Second})
		done <- joinResult{rep, err}
	}()
	return done
}

func TestRoomDIDCallerJoinsThenUnmappedAndExpired(t *testing.T) {
	e := newRoomEnv(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	rm := e.createRoom(t, map[string]any{"id": "support-1", "grace_seconds": 600})
	const did = "+442079460000"
	e.api(t, "PUT", "/numbers/"+did, map[string]any{"room": rm.ID}, http.StatusOK, nil)

	browser := e.joinInBackground(t, ctx, rm.ID, "alice", 440, 6*time.Second)
	e.waitParticipants(t, rm.ID, 1)
	carrier := e.carrier(t, "carrier", 1000)
	e.callDID(t, ctx, carrier, did)
	if _, err := carrier.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	ps := e.waitParticipants(t, rm.ID, 2)
	if ps[1].Kind != "phone" || ps[1].CallerID == "" {
		t.Errorf("phone participant: %+v", ps[1])
	}
	r := <-browser
	if r.err != nil {
		t.Fatalf("browser: %v", r.err)
	}
	heardShares(t, "browser", lastSeconds(r.rep.Audio, 3*time.Second), []float64{1000}, []float64{440})
	var sawPhone bool
	for _, ev := range r.rep.Events {
		if ev.Type == signal.TypeRoom && ev.RoomEvent == signal.RoomEventJoined && ev.Participant != nil && ev.Participant.Kind == "phone" {
			sawPhone = true
		}
	}
	if !sawPhone {
		t.Errorf("browser got no event for the phone joining: %+v", r.rep.Events)
	}
	if err := carrier.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := carrier.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	phoneHeard(t, ctx, carrier, 440, 1000)

	// Unmapped: the next call gets the unallocated treatment (404) and joins nothing.
	e.api(t, "DELETE", "/numbers/"+did, nil, http.StatusNoContent, nil)
	e.api(t, "GET", "/numbers/"+did, nil, http.StatusNotFound, nil)
	e.expectTreatment(t, ctx, carrier, did, "404")

	// Expired: a mapping with a TTL stops working when it runs out.
	const did2 = "+442079460001"
	e.api(t, "PUT", "/numbers/"+did2, map[string]any{"room": rm.ID, "ttl_seconds": 1}, http.StatusOK, nil)
	var listed struct {
		Numbers []struct{ Number, Room, Expires string }
	}
	e.api(t, "GET", "/numbers", nil, http.StatusOK, &listed)
	if len(listed.Numbers) != 1 || listed.Numbers[0].Number != did2 || listed.Numbers[0].Expires == "" {
		t.Errorf("numbers: %+v", listed)
	}
	time.Sleep(1500 * time.Millisecond)
	e.expectTreatment(t, ctx, carrier, did2, "404")
	if ps := e.participants(t, rm.ID); len(ps) != 0 {
		t.Errorf("refused calls joined the room: %+v", ps)
	}
	e.api(t, "DELETE", "/rooms/"+rm.ID, nil, http.StatusNoContent, nil)
	e.assertClean(t)
}

func TestRoomConfBridgePhoneAndBrowser(t *testing.T) {
	e := newRoomEnv(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rm := e.createRoom(t, map[string]any{"id": "board", "backend": "confbridge", "grace_seconds": 600})
	if rm.Backend != "confbridge" {
		t.Fatalf("room: %+v", rm)
	}
	e.api(t, "PUT", "/numbers/8123", map[string]any{"room": rm.ID}, http.StatusOK, nil)

	phone := testenv.StartBaresip(t, testenv.BaresipOptions{Name: "101", User: "101", Password: e.ast.Phone(t, "101").Password,
		Registrar: fmt.Sprintf("127.0.0.1:%d", e.ast.SIPPort), PlayWAV: e.wav(t, 1000)})
	if err := phone.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	browser := e.joinInBackground(t, ctx, rm.ID, "bob", 440, 7*time.Second)
	e.waitParticipants(t, rm.ID, 1)
	if err := phone.Dial(ctx, "8123"); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	ps := e.waitParticipants(t, rm.ID, 2)
	if ps[1].Kind != "phone" || ps[1].CallerID != "101" {
		t.Errorf("phone participant: %+v", ps[1])
	}
	// Both legs are in Asterisk's conference named after the room.
	var out string
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, _ = e.ast.CLI(ctx, "confbridge list board")
		if strings.Count(out, "Local/s@patchbay-confbridge") == 2 {
			break
		}
	}
	if strings.Count(out, "Local/s@patchbay-confbridge") != 2 {
		t.Errorf("ConfBridge board does not hold both participants' legs:\n%s", out)
	}
	r := <-browser
	if r.err != nil {
		t.Fatalf("browser: %v", r.err)
	}
	heardShares(t, "browser", lastSeconds(r.rep.Audio, 3*time.Second), []float64{1000}, []float64{440})
	if err := phone.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	phoneHeard(t, ctx, phone, 440, 1000)
	e.api(t, "DELETE", "/rooms/"+rm.ID, nil, http.StatusNoContent, nil)
	e.assertClean(t)
}

func TestRoomRedisDownKeepsCallsAndRecovers(t *testing.T) {
	e := newRoomEnv(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	rm := e.createRoom(t, map[string]any{"id": "ops", "grace_seconds": 600})
	const did = "+442079460100"
	e.api(t, "PUT", "/numbers/"+did, map[string]any{"room": rm.ID}, http.StatusOK, nil)

	// 30 s: the browser must still be in the room when the refused call's treatment is over, and that took from
	// 2 s to 25 s across runs (Asterisk's announcement as early media).
	browser := e.joinInBackground(t, ctx, rm.ID, "carol", 440, 30*time.Second)
	e.waitParticipants(t, rm.ID, 1)
	callerA := e.carrier(t, "carrierA", 1000)
	e.callDID(t, ctx, callerA, did)
	if _, err := callerA.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	e.waitParticipants(t, rm.ID, 2)

	e.redis.Stop()
	t.Log("redis stopped")
	start := time.Now()
	body := e.api(t, "GET", "/numbers/"+did, nil, http.StatusServiceUnavailable, nil)
	t.Logf("lookup with Redis down answered in %v: %s", time.Since(start).Round(time.Millisecond), body)
	if !strings.Contains(string(body), "unavailable") || !strings.Contains(string(body), "Redis") {
		t.Errorf("lookup error does not say the store (Redis) is unavailable: %s", body)
	}
	// A new call gets the unavailable treatment (cause 41 → 503), not silence.
	callerB := e.carrier(t, "carrierB", 1700)
	e.expectTreatment(t, ctx, callerB, did, "503")

	// The call already in the room kept its audio through all this.
	r := <-browser
	if r.err != nil {
		t.Fatalf("browser: %v", r.err)
	}
	heardShares(t, "browser (after Redis stopped)", lastSeconds(r.rep.Audio, 3*time.Second), []float64{1000}, []float64{440})
	if err := callerA.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := callerA.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	phoneHeard(t, ctx, callerA, 440, 1000)

	// Redis back (empty: it keeps nothing on disk): mapping and lookups work again without restarting Patchbay.
	e.redis.Start()
	start = time.Now()
	for {
		req, _ := http.NewRequest("PUT", e.pb.BaseURL+"/api/v1/numbers/"+did, strings.NewReader(`{"room":"ops"}`))
		req.Header.Set("Authorization", "Bearer "+roomAPIKey)
		resp, err := e.http.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("number store did not recover within 10 s of Redis coming back (last: %v %v)", resp, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("number store recovered %v after Redis came back", time.Since(start).Round(time.Millisecond))
	e.callDID(t, ctx, callerB, did)
	if _, err := callerB.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	e.waitParticipants(t, rm.ID, 1)
	if err := callerB.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := callerB.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	e.api(t, "DELETE", "/rooms/"+rm.ID, nil, http.StatusNoContent, nil)
	e.assertClean(t)
}

func TestRoomBadInputIsRefusedAndNothingJoins(t *testing.T) {
	e := newRoomEnv(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alpha := e.createRoom(t, map[string]any{"id": "alpha", "grace_seconds": 600})
	e.createRoom(t, map[string]any{"id": "beta", "grace_seconds": 600})
	const sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:0 PCMU/8000\r\n"

	mint := func(room, role string) string {
		c := auth.Claims{Name: "Mallory", Room: room, Role: role}
		c.Subject = "mallory"
		tok, err := e.pb.Server.Signer().Mint(c, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	var agent struct{ Token string }
	e.api(t, "POST", "/agent-tokens", map[string]any{"user": "agent7", "name": "Agent Seven"}, http.StatusCreated, &agent)
	e.api(t, "PUT", "/numbers/8005", map[string]any{"room": "alpha", "ttl_seconds": 1}, http.StatusOK, nil)
	time.Sleep(1200 * time.Millisecond)

	for i, tc := range []struct {
		name, token string
		msg         signal.Message
		want        string
	}{
		{"token for another room", e.token(t, "beta", "mallory"), signal.Message{Room: "alpha"}, wire.CodeForbiddenDestination},
		{"token without room", mint("", ""), signal.Message{Room: "alpha"}, wire.CodeForbiddenDestination},
		{"unknown room", mint("ghost", ""), signal.Message{Room: "ghost"}, wire.CodeUnknownRoom},
		{"room injection", mint("alpha", ""), signal.Message{Room: "alpha&PJSIP/x"}, wire.CodeBadMessage},
		{"number by non-agent", mint("alpha", ""), signal.Message{Number: "8005"}, wire.CodeForbiddenDestination},
		{"number injection", agent.Token, signal.Message{Number: "8001&PJSIP/carrier/900"}, wire.CodeInvalidNumber},
		{"number with dialplan variable", agent.Token, signal.Message{Number: "${EXTEN}"}, wire.CodeInvalidNumber},
		{"expired mapping", agent.Token, signal.Message{Number: "8005"}, wire.CodeUnknownRoom},
		{"unmapped number", agent.Token, signal.Message{Number: "+442079469999"}, wire.CodeUnknownRoom},
		{"unknown ticket", mint("", ""), signal.Message{Ticket: "t-123"}, wire.CodeInvalidTicket},
	} {
		conn := e.dial(t, ctx, tc.token)
		m := tc.msg
		m.Type, m.CallID, m.SDP = signal.TypeJoin, fmt.Sprintf("bad-%d", i), sdp
		if err := conn.Send(ctx, m); err != nil {
			t.Fatalf("%s: send: %v", tc.name, err)
		}
		got := recvType(t, ctx, conn, signal.TypeError)
		t.Logf("%s: %s: %s", tc.name, got.Error, got.Message)
		if got.Error != tc.want || got.Message == "" {
			t.Errorf("%s: error %q (%s), want %q", tc.name, got.Error, got.Message, tc.want)
		}
	}

	// The REST API refuses bad input with clear errors.
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		code         string
	}{
		{"PUT", "/numbers/8001%26PJSIP%2Fx", map[string]any{"room": "alpha"}, 400, "invalid_number"},
		{"PUT", "/numbers/8001", map[string]any{"room": "ghost"}, 404, "not_found"},
		{"PUT", "/numbers/8001", map[string]any{"room": "a;b"}, 400, "bad_request"},
		{"PUT", "/numbers/8001", map[string]any{"room": "alpha", "extra": 1}, 400, "bad_request"},
		{"POST", "/rooms", map[string]any{"id": "x y"}, 400, "bad_request"},
		{"POST", "/rooms", map[string]any{"backend": "sfu"}, 400, "bad_request"},
		{"POST", "/rooms", map[string]any{"id": "alpha"}, 409, "conflict"},
		{"GET", "/rooms/ghost", nil, 404, "not_found"},
		{"DELETE", "/rooms/ghost/participants/p-x", nil, 404, "not_found"},
		{"POST", "/rooms/alpha/participants/p-x/mute", map[string]any{"muted": true}, 404, "not_found"},
		{"POST", "/rooms/alpha/tokens", map[string]any{"user": "Bad User"}, 400, "bad_request"},
		{"POST", "/rooms/alpha/tokens", map[string]any{"user": "bob", "role": "agent"}, 400, "bad_request"},
		{"GET", "/numbers/8005", nil, 404, "not_mapped"},
	} {
		var out struct{ Error, Message string }
		e.api(t, tc.method, tc.path, tc.body, tc.status, &out)
		if out.Error != tc.code || out.Message == "" {
			t.Errorf("%s %s: %+v, want code %s", tc.method, tc.path, out, tc.code)
		}
	}
	req, _ := http.NewRequest("GET", e.pb.BaseURL+"/api/v1/rooms", nil)
	if resp, err := e.http.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no API key: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := e.http.Get(e.pb.BaseURL + "/agent?number=8001%26PJSIP"); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("/agent with a bad number: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, id := range []string{"alpha", "beta"} {
		if ps := e.participants(t, id); len(ps) != 0 {
			t.Errorf("room %s has participants after refused joins: %+v", id, ps)
		}
	}
	e.assertClean(t)

	// The agent lookup itself works: /agent?number= is served, and the join by number lands in the room.
	resp, err := e.http.Get(e.pb.BaseURL + "/agent?number=8001")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/agent: %v %v", resp, err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `name="patchbay-mode" content="agent"`) {
		t.Errorf("/agent page has no agent flag")
	}
	e.api(t, "PUT", "/numbers/8001", map[string]any{"room": alpha.ID}, http.StatusOK, nil)
	conn := e.dial(t, ctx, agent.Token)
	rep, err := e.eng.Join(ctx, conn, synth.JoinOptions{Number: "8001"}, synth.CallOptions{Duration: time.Second})
	if err != nil {
		t.Fatalf("agent join by number: %v", err)
	}
	if j, ok := rep.Event(signal.TypeJoined); !ok || j.Room != alpha.ID || j.Participant == nil || j.Participant.Role != "agent" {
		t.Errorf("agent joined: %+v", j)
	}
	for _, id := range []string{"alpha", "beta"} {
		e.api(t, "DELETE", "/rooms/"+id, nil, http.StatusNoContent, nil)
	}
	e.assertClean(t)
}

func TestRoomMuteKickAndTalkEvents(t *testing.T) {
	e := newRoomEnv(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rm := e.createRoom(t, map[string]any{"id": "modroom", "grace_seconds": 600})
	a := e.joinInBackground(t, ctx, rm.ID, "anna", 440, 7*time.Second)
	e.waitParticipants(t, rm.ID, 1)
	b := e.joinInBackground(t, ctx, rm.ID, "bert", 1000, 20*time.Second)
	ps := e.waitParticipants(t, rm.ID, 2)
	bID := ps[1].ID
	time.Sleep(1500 * time.Millisecond)
	var muted apiParticipant
	e.api(t, "POST", "/rooms/"+rm.ID+"/participants/"+bID+"/mute", map[string]any{"muted": true}, http.StatusOK, &muted)
	if !muted.Muted {
		t.Errorf("mute reply: %+v", muted)
	}
	time.Sleep(2500 * time.Millisecond)
	e.api(t, "DELETE", "/rooms/"+rm.ID+"/participants/"+bID, nil, http.StatusNoContent, nil)
	rb := <-b
	if rb.err != nil || rb.rep.HungUpBy != "remote" {
		t.Errorf("kicked browser: err %v hung up by %q", rb.err, rb.rep.HungUpBy)
	}
	ra := <-a
	if ra.err != nil {
		t.Fatalf("browser a: %v", ra.err)
	}
	// Anna heard Bert for the ~1.5 s before the mute, not for the 2.5 s between mute and kick (a muted
	// participant's audio stops at the bridge: Asterisk then sends Anna silence or nothing).
	heardShares(t, "anna", ra.rep.Audio, []float64{1000}, []float64{440})
	got := audio.Detect(ra.rep.Audio, 8000, 1000)
	t.Logf("anna heard 1000 Hz in %d windows of 100 ms (Bert was unmuted ~15 windows, muted ~25)", got.Matching)
	if got.Matching < 8 || got.Matching > 25 {
		t.Errorf("anna heard bert's 1000 Hz in %d windows: the mute did not take effect", got.Matching)
	}
	var sawMuted, sawLeft, sawTalking bool
	for _, ev := range ra.rep.Events {
		if ev.Type != signal.TypeRoom || ev.Participant == nil || ev.Participant.ID != bID {
			continue
		}
		switch ev.RoomEvent {
		case signal.RoomEventUpdated:
			sawMuted = sawMuted || ev.Participant.Muted
			sawTalking = sawTalking || ev.Participant.Talking
		case signal.RoomEventLeft:
			sawLeft = true
		}
	}
	if !sawMuted || !sawLeft {
		t.Errorf("anna's events about bert: muted %v left %v: %+v", sawMuted, sawLeft, ra.rep.Events)
	}
	if !sawTalking {
		t.Errorf("no talking event for bert (TALK_DETECT): %+v", ra.rep.Events)
	}
	e.api(t, "DELETE", "/rooms/"+rm.ID, nil, http.StatusNoContent, nil)
	e.assertClean(t)
}
