//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ari"
	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/dialplan/dialplantest"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// pstnCarrier is one SIPp carrier and the trunk that reaches it.
type pstnCarrier struct {
	name, ip    string
	sipp        testenv.SIPpOptions
	codecs      []string
	maxChannels int
}

// pstnEnv is one Asterisk with a trunk per carrier, Patchbay routing to them, and a synthetic browser engine.
type pstnEnv struct {
	ast  *testenv.Asterisk
	pb   *testenv.Patchbay
	sipp map[string]*testenv.SIPp
	eng  *synth.Engine
	ari  *ari.Client
}

func newPSTNEnv(t *testing.T, carriers []pstnCarrier, edit func(*config.Config)) *pstnEnv {
	t.Helper()
	e := &pstnEnv{sipp: map[string]*testenv.SIPp{}}
	for _, c := range carriers {
		o := c.sipp
		o.IP = c.ip
		e.sipp[c.name] = testenv.StartSIPp(t, o)
	}
	e.ast = testenv.StartAsterisk(t, testenv.AsteriskOptions{Params: func(p *asteriskconfigs.Params) {
		for _, c := range carriers {
			p.Trunks = append(p.Trunks, asteriskconfigs.Trunk{Name: c.name, Host: e.sipp[c.name].Addr(), Match: []string{c.ip}, Codecs: c.codecs})
		}
	}})
	e.pb = testenv.StartPatchbay(t, e.ast, testenv.PatchbayOptions{Config: func(cfg *config.Config) {
		for _, c := range carriers {
			cfg.Asterisk.Trunks = append(cfg.Asterisk.Trunks, config.Trunk{Name: c.name, Host: e.sipp[c.name].Addr(),
				Match: []string{c.ip}, Codecs: c.codecs, MaxChannels: c.maxChannels})
		}
		if edit != nil {
			edit(cfg)
		}
	}})
	var err error
	if e.eng, err = synth.NewEngine(synth.EngineOptions{LoopbackOnly: true}); err != nil {
		t.Fatal(err)
	}
	if e.ari, err = ari.New(ari.Config{URL: e.ast.ARIURL(), Username: e.ast.ARIUser, Password: e.ast.ARIPassword, Application: "inspector"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, c := range carriers {
		astWaitFor(ctx, t, "trunk "+c.name+" reachable", func() (bool, string) {
			out, _ := e.ast.CLI(ctx, "pjsip show contacts")
			return testenv.ContactUsable(out, c.name), out
		})
	}
	return e
}

// dial opens a signalling connection as user with the given caller IDs and grants.
func (e *pstnEnv) dial(t *testing.T, ctx context.Context, user string, callerIDs []string, grants ...string) *signal.Conn {
	t.Helper()
	return (&trunkEnv{pb: e.pb}).dial(t, ctx, user, callerIDs, grants...)
}

func (e *pstnEnv) assertClean(t *testing.T) {
	t.Helper()
	(&browserCallEnv{ast: e.ast, pb: e.pb, ari: e.ari}).assertClean(t)
}

// callsProcessed is Asterisk's count of channels it ever made ("N calls processed"): unchanged across a step,
// it proves the step created no ARI resource that might have been gone again before anyone looked.
func (e *pstnEnv) callsProcessed(t *testing.T, ctx context.Context) int {
	t.Helper()
	out, err := e.ast.CLI(ctx, "core show channels count")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(\d+) calls? processed`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no 'calls processed' in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// invitesAfterStop stops a carrier (flushing SIPp's trace) and returns the INVITEs it received.
func invitesAfterStop(t *testing.T, s *testenv.SIPp) []testenv.SIPMessage {
	t.Helper()
	s.Stop()
	inv, err := s.ReceivedInvites()
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// requestUser is the user part of an INVITE's Request-URI: "INVITE sip:+4420…@host SIP/2.0" → +4420….
func requestUser(m testenv.SIPMessage) string {
	return numberOf(strings.Fields(m.Start + " x")[1])
}

var (
	patchbayBinOnce sync.Once
	patchbayBin     string
	patchbayBinErr  error
)

// buildPatchbay builds the real binary once per test run, so `patchbay route` is checked as admins run it.
func buildPatchbay(t *testing.T) string {
	t.Helper()
	patchbayBinOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		dir, err := os.MkdirTemp("", "patchbay-bin-")
		if err != nil {
			patchbayBinErr = err
			return
		}
		patchbayBin = filepath.Join(dir, "patchbay")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goBin, "build", "-o", patchbayBin, "github.com/patchbay/patchbay/cmd/patchbay").CombinedOutput()
		if err != nil {
			patchbayBinErr = fmt.Errorf("go build ./cmd/patchbay: %w\n%s", err, out)
		}
	})
	if patchbayBinErr != nil {
		t.Fatal(patchbayBinErr)
	}
	return patchbayBin
}

// routeVerdict is what `patchbay route --json` prints.
type routeVerdict struct {
	Decision, Kind, Number, E164, Class, Country, Trunk, Route, Endpoint, Code, Message string
	Trunks                                                                              []string
	CallerID                                                                            string `json:"caller_id"`
}

// routeJSON runs `patchbay route --json` with the config file and extra flags.
func routeJSON(t *testing.T, bin, cfgFile, number string, flags ...string) routeVerdict {
	t.Helper()
	args := append([]string{"route", "--json", "--config", cfgFile}, flags...)
	args = append(args, "--", number)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PATCHBAY_CONFIG=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("patchbay route %q: %v\n%s", number, err, stderr.String())
	}
	var v routeVerdict
	if err := json.Unmarshal(stdout.Bytes(), &v); err != nil {
		t.Fatalf("patchbay route %q printed no JSON verdict (%v): %s", number, err, stdout.String())
	}
	return v
}

// writeMinimalConfig writes a config file with only the secrets every config needs: everything else default.
func writeMinimalConfig(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "patchbay.yaml")
	text := "ari:\n  password: ari-password-0123456789\nauth:\n  token_secret: " + strings.Repeat("k", 40) + "\ncerts:\n  dir: " + t.TempDir() + "\n"
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPSTNRouteCommandOnDefaultConfig runs every tricky number (the six bypasses of the old prefix list first)
// through the real `patchbay route --json` on the default configuration.
func TestPSTNRouteCommandOnDefaultConfig(t *testing.T) {
	bin := buildPatchbay(t)
	cfgFile := writeMinimalConfig(t)
	if n := len(dialplantest.TrickyNumbers); n < 40 {
		t.Fatalf("only %d tricky numbers", n)
	}
	start := time.Now()
	for i, tc := range dialplantest.TrickyNumbers {
		v := routeJSON(t, bin, cfgFile, tc.In)
		wantDecision := "allow"
		if tc.Code != "" {
			wantDecision = "refuse"
		}
		if v.Decision != wantDecision || v.Code != tc.Code || v.E164 != tc.E164 || v.Class != tc.Class || v.Country != tc.Country {
			t.Errorf("%s: route %q = %+v; want %s %s (%s %s %s)", tc.Name, tc.In, v, wantDecision, tc.Code, tc.E164, tc.Class, tc.Country)
		}
		if wantDecision == "allow" && (v.Trunk != "carrier" || !slices.Equal(v.Trunks, []string{"carrier"}) || v.Endpoint != "PJSIP/"+tc.E164+"@carrier") {
			t.Errorf("%s: allowed without the default trunk: %+v", tc.Name, v)
		}
		if wantDecision == "refuse" && (v.Trunk != "" || len(v.Trunks) > 0 || v.Message == "") {
			t.Errorf("%s: refusal %+v names a trunk or gives no reason", tc.Name, v)
		}
		if i < 6 && (tc.Code != wire.CodeForbiddenDestination || !strings.HasSuffix(v.Message, "are not allowed")) {
			t.Errorf("bypass %d %q: %+v; want forbidden_destination naming the class", i+1, tc.In, v)
		}
	}
	t.Logf("%d numbers through `patchbay route --json` in %v", len(dialplantest.TrickyNumbers), time.Since(start).Round(time.Millisecond))
	if v := routeJSON(t, bin, cfgFile, "+4409065551234"); v.Message != "premium-rate numbers are not allowed" {
		t.Errorf("premium refusal message %q", v.Message)
	}
	// Grants as a token's: allowed by the rules, refused by the grants.
	if v := routeJSON(t, bin, cfgFile, "+442079460000", "--grants", "ext"); v.Decision != "refuse" || v.Code != wire.CodeForbiddenDestination || v.Trunk != "carrier" {
		t.Errorf("--grants ext: %+v", v)
	}
}

// TestPSTNRouteCommandWithTokenAndRoutes checks --token (grants and caller IDs from a real token) and routes
// from a config file with two trunks.
func TestPSTNRouteCommandWithTokenAndRoutes(t *testing.T) {
	bin := buildPatchbay(t)
	secret := strings.Repeat("k", 40)
	f := filepath.Join(t.TempDir(), "patchbay.yaml")
	text := `ari: {password: ari-password-0123456789}
auth: {token_secret: ` + secret + `}
certs: {dir: ` + t.TempDir() + `}
asterisk:
  trunks:
    - {name: uk, host: 127.0.0.2, codecs: [alaw], max_channels: 10}
    - {name: us, host: 127.0.0.3, port: 5070}
dialplan:
  pstn:
    allow_countries: [GB, US, CA]
    routes:
      - {countries: [GB], trunks: [uk, us]}
      - {countries: [US, CA], trunks: [us, uk]}
`
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := auth.NewSigner([]byte(secret), "patchbay")
	if err != nil {
		t.Fatal(err)
	}
	cl := auth.Claims{Dial: []string{"pstn"}, CallerIDs: []string{"+442071230001", "+442071230002"}}
	cl.Subject = "alice"
	tok, err := signer.Mint(cl, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		number   string
		flags    []string
		decision string
		trunks   []string
		code     string
		callerID string
	}{
		{"+442079460000", nil, "allow", []string{"uk", "us"}, "", ""},
		{"+14155550100", nil, "allow", []string{"us", "uk"}, "", ""},
		{"+33123456789", nil, "refuse", nil, wire.CodeForbiddenDestination, ""},
		{"+442079460000", []string{"--token", tok}, "allow", []string{"uk", "us"}, "", "+442071230001"},
		{"+442079460000", []string{"--token", tok, "--caller-id", "+442071230002"}, "allow", []string{"uk", "us"}, "", "+442071230002"},
		{"+442079460000", []string{"--token", tok, "--caller-id", "+15555550000"}, "refuse", []string{"uk", "us"}, wire.CodeForbiddenCallerID, ""},
	} {
		v := routeJSON(t, bin, f, tc.number, tc.flags...)
		if v.Decision != tc.decision || !slices.Equal(v.Trunks, tc.trunks) || v.Code != tc.code || v.CallerID != tc.callerID {
			t.Errorf("route %s %v = %+v; want %s via %v (%s), caller ID %q", tc.number, tc.flags[:min(len(tc.flags), 1)], v, tc.decision, tc.trunks, tc.code, tc.callerID)
		}
	}
}

// TestPSTNRefusedCallsNeverReachTheCarrier places refused numbers as real calls, from a synthetic browser and
// through POST /api/v1/calls: each is refused naming its class, Asterisk makes no channel at all, and the
// carrier's trace holds no INVITE but the one allowed call placed last.
func TestPSTNRefusedCallsNeverReachTheCarrier(t *testing.T) {
	const key = "crm-key-0123456789abcdef0123"
	e := newPSTNEnv(t, []pstnCarrier{{name: "alpha", ip: "127.0.0.2", sipp: testenv.SIPpOptions{RTPEcho: true}}}, func(c *config.Config) {
		c.Auth.APIKeys = map[string]config.Secret{"crm": key}
		c.API.CallerIDs = map[string][]string{"crm": {"+442071230100"}}
		c.API.Dial = map[string][]string{"crm": {"pstn"}}
		c.Limits.PerToken = config.LimitSet{}
		c.Limits.PerAPIKey = config.LimitSet{}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	before := e.callsProcessed(t, ctx)
	conn := e.dial(t, ctx, "mallory", []string{"+442071230009"}, "pstn")
	for _, tc := range []struct{ to, words string }{
		{"+4409065551234", "premium-rate"},
		{"+44-0-906-555-1234", "premium-rate"},
		{"+4909001234567", "premium-rate"},
		{"+330899123456", "premium-rate"},
		{"00440906555123", "not valid"},
		{"+1-0-900-555-0100", "not valid"},
		{"+447012345678", "personal"},
		{"+491371234567", "shared-cost"},
		{"tel:+44-906-555-1234", "premium-rate"},
		{"＋４４９０６５５５１２３４", "premium-rate"},
	} {
		_, err := e.eng.Call(ctx, conn, synth.CallOptions{To: tc.to, Duration: time.Second})
		var se *signal.Error
		if !errors.As(err, &se) || se.Code != wire.CodeForbiddenDestination || !strings.Contains(se.Message, tc.words) {
			t.Errorf("browser call to %q: %v; want %s naming %q", tc.to, err, wire.CodeForbiddenDestination, tc.words)
		}
	}
	var apiErr struct{ Error, Message string }
	for _, to := range []string{"+4409065551234", "+4909001234567", "+330899123456", "00440906555123", "+1-0-900-555-0100", "+44 (0) 906 555 1234"} {
		apiErr.Error, apiErr.Message = "", ""
		st := apiDo(t, e.pb, "POST", "/calls", key, map[string]any{"to": to, "connect": map[string]any{"user": "alice"}}, &apiErr)
		if st != 403 || apiErr.Error != wire.CodeForbiddenDestination || !strings.Contains(apiErr.Message, "not allowed") {
			t.Errorf("API call to %q: %d %s (%s); want 403 %s", to, st, apiErr.Error, apiErr.Message, wire.CodeForbiddenDestination)
		}
	}
	if after := e.callsProcessed(t, ctx); after != before {
		t.Errorf("Asterisk processed %d channels for refused calls; want none", after-before)
	}
	e.assertClean(t)
	// The one allowed call: the trace works, and it is the only INVITE the carrier ever saw.
	rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "+44-0-20-7946-0000", Duration: 2 * time.Second})
	if err != nil {
		t.Fatalf("allowed call: %v", err)
	}
	if !rep.Heard.Detected(5) {
		t.Errorf("allowed call: no echo from the carrier: %+v", rep.Heard)
	}
	(&trunkEnv{pb: e.pb}).waitNoCalls(t)
	inv := invitesAfterStop(t, e.sipp["alpha"])
	if len(inv) != 1 || requestUser(inv[0]) != "+442079460000" {
		var got []string
		for _, m := range inv {
			got = append(got, m.Start)
		}
		t.Errorf("carrier received INVITEs %q; want only the allowed +442079460000", got)
	}
}

// TestPSTNRoutesByCountryReachTheRightCarrier: two carriers on 127.0.0.2 and 127.0.0.3, routes by country; each
// call reaches the carrier its country's route names first, with audio both ways.
func TestPSTNRoutesByCountryReachTheRightCarrier(t *testing.T) {
	e := newPSTNEnv(t, []pstnCarrier{
		{name: "alpha", ip: "127.0.0.2", sipp: testenv.SIPpOptions{RTPEcho: true}},
		{name: "beta", ip: "127.0.0.3", sipp: testenv.SIPpOptions{RTPEcho: true}},
	}, func(c *config.Config) {
		c.Dialplan.PSTN.Routes = []config.Route{
			{Countries: []string{"GB", "IE"}, Trunks: []string{"alpha", "beta"}},
			{Countries: []string{"US", "CA"}, Trunks: []string{"beta", "alpha"}},
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := e.dial(t, ctx, "alice", []string{"+442071230001"}, "pstn")
	for _, to := range []string{"+442079460000", "+14155550100", "+35312345678"} {
		rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: to, Duration: 2 * time.Second})
		if err != nil {
			t.Fatalf("call %s: %v", to, err)
		}
		if !rep.Heard.Detected(5) {
			t.Errorf("call %s: no echo: %+v", to, rep.Heard)
		}
	}
	(&trunkEnv{pb: e.pb}).waitNoCalls(t)
	want := map[string][]string{"alpha": {"+442079460000", "+35312345678"}, "beta": {"+14155550100"}}
	for name, numbers := range want {
		var got []string
		for _, m := range invitesAfterStop(t, e.sipp[name]) {
			got = append(got, requestUser(m))
		}
		if !slices.Equal(got, numbers) {
			t.Errorf("carrier %s got INVITEs for %v; want %v", name, got, numbers)
		}
	}
	e.assertClean(t)
}

// TestPSTNPCMAEndToEndBitExact: a carrier that offers PCMA only, a browser that offers PCMA. The browser's
// 1000 Hz tone reaches the carrier and the carrier's 440 Hz tone reaches the browser byte for byte, and no
// channel in Asterisk transcodes.
func TestPSTNPCMAEndToEndBitExact(t *testing.T) {
	const amp = 0.3
	tone440 := alawTone(440, amp)
	rtp := testenv.StartCarrierRTP(t, "127.0.0.3", 8, tone440)
	e := newPSTNEnv(t, []pstnCarrier{{name: "eu", ip: "127.0.0.3",
		sipp: testenv.SIPpOptions{Scenario: testenv.CarrierPCMAUAS, MediaPort: rtp.Port}}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := e.dial(t, ctx, "alice", []string{"+33123456780"}, "pstn")

	type result struct {
		rep *synth.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "+33-1-23-45-67-89", Law: media.PCMA, ToneHz: 1000,
			Amplitude: amp, ExpectHz: 440, Duration: 5 * time.Second})
		done <- result{rep, err}
	}()
	// While the call is up: every channel carries alaw natively, and none transcodes.
	upCtx, upCancel := context.WithCancel(ctx)
	var r result
	go func() {
		r = <-done
		upCancel()
	}()
	formats := channelFormatsWhileUp(t, upCtx, e.ast, 2)
	<-upCtx.Done()
	if r.err != nil {
		t.Fatalf("PCMA call: %v", r.err)
	}
	for name, f := range formats {
		t.Logf("%s: native %s, read %s, write %s, transcode read %s / write %s", name, f["NativeFormats"], f["ReadFormat"],
			f["WriteFormat"], f["ReadTranscode"], f["WriteTranscode"])
		for _, k := range []string{"NativeFormats", "ReadFormat", "WriteFormat"} {
			if !strings.Contains(f[k], "alaw") || strings.Contains(f[k], "ulaw") || strings.Contains(f[k], "slin") {
				t.Errorf("%s %s = %q; want alaw only", name, k, f[k])
			}
		}
		for _, k := range []string{"ReadTranscode", "WriteTranscode"} {
			if !strings.HasPrefix(f[k], "No") {
				t.Errorf("%s %s = %q; want No", name, k, f[k])
			}
		}
	}
	if len(formats) < 2 {
		t.Errorf("saw %d channels during the call; want the trunk leg and the media leg", len(formats))
	}
	rep := r.rep
	if rep.Law != media.PCMA {
		t.Errorf("browser leg ran %s, want PCMA", rep.Law)
	}
	// Carrier → browser: the 440 Hz tone, and every frame the very bytes the carrier sent.
	t.Logf("browser heard %+v (%d packets)", rep.Heard, rep.Received)
	if !rep.Heard.Detected(20) {
		t.Errorf("browser did not hear the carrier's 440 Hz: %+v", rep.Heard)
	}
	heard := audio.EncodeAlaw(nil, rep.Audio)
	if n, exact := exactFrames(heard, tone440, 0); n < 100 || exact < n*9/10 {
		t.Errorf("carrier → browser: %d of %d frames bit-exact; want at least 90%%", exact, n)
	} else {
		t.Logf("carrier → browser: %d of %d frames bit-exact", exact, n)
	}
	// Browser → carrier: PCMA only, the 1000 Hz tone, bit-exact but for the synth's frame stamp.
	var sent []byte
	for _, p := range rtp.Received() {
		if p.PT != 8 {
			t.Fatalf("carrier received payload type %d; want 8 (PCMA) only", p.PT)
		}
		sent = append(sent, p.Payload...)
	}
	pcm := audio.DecodeAlaw(nil, sent)
	if d := audio.Detect(pcm, 8000, 1000); !d.Detected(20) {
		t.Errorf("carrier did not hear the browser's 1000 Hz: %+v", d)
	} else {
		t.Logf("carrier heard %+v", d)
	}
	tone1000 := alawTone(1000, amp)
	if n, exact := exactFrames(sent, tone1000, synthStampBytes); n < 100 || exact < n*9/10 {
		t.Errorf("browser → carrier: %d of %d frames bit-exact; want at least 90%%", exact, n)
	} else {
		t.Logf("browser → carrier: %d of %d frames bit-exact", exact, n)
	}
	inv := invitesAfterStop(t, e.sipp["eu"])
	if len(inv) != 1 || !strings.Contains(inv[0].Body, "PCMA/8000") {
		t.Errorf("INVITE to the carrier does not offer PCMA: %+v", inv)
	}
	e.assertClean(t)
}

// synthStampBytes is how many leading bytes of each frame the synthetic caller marks with a frame counter
// (tools/synth stampBits): only their lowest bit differs from the tone.
const synthStampBytes = 24

// alawTone is one second of a sine at hz, A-law encoded: what the synthetic caller and CarrierRTP send.
func alawTone(hz, amp float64) []byte {
	return audio.EncodeAlaw(nil, audio.Sine(hz, 8000, time.Second, amp))
}

// exactFrames cuts stream into 20 ms frames and counts those equal to a frame of the one-second tone (from skip
// on; the bytes before carry the sender's stamp).
func exactFrames(stream, tone []byte, skip int) (frames, exact int) {
	for off := 0; off+160 <= len(stream); off += 160 {
		f := stream[off+skip : off+160]
		frames++
		for o := 0; o+160 <= len(tone); o += 160 {
			if bytes.Equal(f, tone[o+skip:o+160]) {
				exact++
				break
			}
		}
	}
	return frames, exact
}

// channelFormatsWhileUp waits until at least n channels are Up and returns, per channel, the format lines of
// `core show channel`; nothing if ctx ends first (the call ended: its result says why).
func channelFormatsWhileUp(t *testing.T, ctx context.Context, ast *testenv.Asterisk, n int) map[string]map[string]string {
	t.Helper()
	var names []string
	for {
		out, _ := ast.CLI(ctx, "core show channels concise")
		names = names[:0]
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Split(l, "!")
			if len(f) > 4 && f[4] == "Up" {
				names = append(names, f[0])
			}
		}
		if len(names) >= n {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	time.Sleep(500 * time.Millisecond) // media flowing both ways before the formats are read
	out := map[string]map[string]string{}
	for _, name := range names {
		text, err := ast.CLI(ctx, "core show channel "+name)
		if err != nil {
			t.Fatal(err)
		}
		f := map[string]string{}
		for _, l := range strings.Split(text, "\n") {
			k, v, ok := strings.Cut(l, ":")
			if ok {
				f[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		out[name] = f
	}
	return out
}

// TestPSTNPhonesAndIVRReachTheBrowser: a TLS+SRTP phone (103) and a TCP phone (105) register and call a browser
// user with audio both ways; an IVR's SendDTMF (extension 604) reaches the browser as dtmf messages.
func TestPSTNPhonesAndIVRReachTheBrowser(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	tone1000 := filepath.Join(t.TempDir(), "1000.wav")
	if err := audio.WriteWAV(tone1000, audio.Sine(1000, 8000, 60*time.Second, 0.3), 8000); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	for _, tc := range []struct {
		name, phone, transport string
		port                   int
		srtp                   bool
	}{
		{"tls-srtp phone 103", "103", "tls", a.SIPTLSPort, true},
		{"tcp phone 105", "105", "tcp", a.SIPPort, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			phone := testenv.StartBaresip(t, testenv.BaresipOptions{
				Name: tc.phone, Registrar: fmt.Sprintf("127.0.0.1:%d", tc.port), User: tc.phone,
				Password: a.Phone(t, tc.phone).Password, Transport: tc.transport, SRTP: tc.srtp, PlayWAV: tone1000,
			})
			if err := phone.WaitRegistered(ctx); err != nil {
				t.Fatal(err)
			}
			out, err := a.CLI(ctx, "pjsip show aor "+tc.phone)
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`(?mi)^\s*contact\s*:\s*sip:` + tc.phone + `\S*transport=` + tc.transport).MatchString(out) {
				t.Errorf("phone %s has no %s contact:\n%s", tc.phone, tc.transport, out)
			}
			browser := pb.Dial(t, ctx, "alice")
			done := make(chan struct {
				rep *synth.Report
				err error
			}, 1)
			go func() {
				rep, err := eng.Receive(ctx, browser, synth.CallOptions{ToneHz: 440, ExpectHz: 1000, Duration: 4 * time.Second})
				done <- struct {
					rep *synth.Report
					err error
				}{rep, err}
			}()
			if err := phone.Dial(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			if tc.srtp {
				// The phone insists on SRTP (srtp-mand) and so does its endpoint (sdes, not optimistic): the
				// call's channel must say so while it is up.
				astWaitFor(ctx, t, "phone channel up", func() (bool, string) {
					o, _ := a.CLI(ctx, "core show channels concise")
					return strings.Contains(o, "PJSIP/"+tc.phone+"-"), o
				})
				ep, _ := a.CLI(ctx, "pjsip show endpoint "+tc.phone)
				if !astContainsSetting(ep, "media_encryption", "sdes") || !astContainsSetting(ep, "media_encryption_optimistic", "false") {
					t.Errorf("endpoint %s does not require SDES-SRTP", tc.phone)
				}
			}
			r := <-done
			if r.err != nil {
				t.Fatalf("browser answering %s: %v", tc.phone, r.err)
			}
			if _, ok := r.rep.Event(signal.TypeIncoming); !ok {
				t.Errorf("no incoming event: %+v", r.rep.Events)
			}
			t.Logf("browser heard phone %s: %+v", tc.phone, r.rep.Heard)
			if !r.rep.Heard.Detected(10) {
				t.Errorf("browser did not hear phone %s's 1000 Hz: %+v", tc.phone, r.rep.Heard)
			}
			if _, err := phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
				t.Fatal(err)
			}
			s, rate, err := phone.Recording(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep := audio.Detect(s, rate, 440); !rep.Detected(5) {
				t.Errorf("phone %s did not hear the browser's 440 Hz: %+v (%s)", tc.phone, rep, phone.RecordingPath())
			}
			browser.Close()
			waitNoCalls(t, pb)
		})
	}

	t.Run("IVR SendDTMF reaches the browser", func(t *testing.T) {
		conn := pb.Dial(t, ctx, "alice", "ext")
		rep, err := eng.Call(ctx, conn, synth.CallOptions{To: "604", Duration: 4 * time.Second})
		if err != nil {
			t.Fatalf("call the IVR: %v", err)
		}
		var digits string
		for _, ev := range rep.Events {
			if ev.Type == signal.TypeDTMF {
				digits += ev.Digits
			}
		}
		if digits != "1234#" {
			t.Errorf("browser received DTMF %q from SendDTMF(1234#); events %+v", digits, rep.Events)
		}
		waitNoCalls(t, pb)
	})
}

// ---------------------------------------------------------------------------------------------------------------
// Failover and channel limits: written against the contract in the PSTN report. The two tests marked "needs call
// control" fail until call control tries d.Trunks in order; each says what it needs.

// TestTrunkFailoverTo2ndTrunk: carrier alpha refuses with 503, carrier gamma never answers; beta answers. A call
// routed alpha → beta reaches beta; one routed gamma → beta reaches beta within failover_timeout.
//
// needs call control: try d.Trunks in order; pass the call on when Router.Failover(TrunkOutcome) says so
// (503/CONGESTION/CHANUNAVAIL by default) or when the trunk has not rung within Router.FailoverTimeout().
func TestTrunkFailoverTo2ndTrunk(t *testing.T) {
	e := newPSTNEnv(t, []pstnCarrier{
		{name: "alpha", ip: "127.0.0.2", sipp: testenv.SIPpOptions{Scenario: testenv.Carrier503}},
		{name: "beta", ip: "127.0.0.3", sipp: testenv.SIPpOptions{RTPEcho: true}},
		{name: "gamma", ip: "127.0.0.4", sipp: testenv.SIPpOptions{Scenario: testenv.CarrierSilent}},
	}, func(c *config.Config) {
		c.Dialplan.PSTN.FailoverTimeout = 2 * time.Second
		c.Dialplan.PSTN.Routes = []config.Route{
			{Countries: []string{"GB"}, Trunks: []string{"alpha", "beta"}},
			{Countries: []string{"US"}, Trunks: []string{"gamma", "beta"}},
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn := e.dial(t, ctx, "alice", []string{"+442071230001"}, "pstn")
	for _, tc := range []struct {
		to, first string
		within    time.Duration
	}{
		{"+442079460000", "alpha", 3 * time.Second},
		{"+14155550100", "gamma", 2*time.Second + 3*time.Second},
	} {
		// Media runs long enough for the silent trunk's failover timer and a couple of seconds of echo after it.
		rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: tc.to, Duration: tc.within + 2*time.Second})
		if err != nil {
			t.Errorf("call %s (first trunk %s): %v", tc.to, tc.first, err)
			continue
		}
		ans, ok := rep.Event(signal.TypeAnswered)
		if !ok || ans.At > tc.within {
			t.Errorf("call %s: answered %v (at %v); want by %v through beta", tc.to, ok, ans.At, tc.within)
		}
		if !rep.Heard.Detected(5) {
			t.Errorf("call %s: no echo from beta: %+v", tc.to, rep.Heard)
		}
	}
	(&trunkEnv{pb: e.pb}).waitNoCalls(t)
	for name, want := range map[string][]string{"alpha": {"+442079460000"}, "gamma": {"+14155550100"}, "beta": {"+442079460000", "+14155550100"}} {
		var got []string
		for _, m := range invitesAfterStop(t, e.sipp[name]) {
			got = append(got, requestUser(m))
		}
		if !slices.Equal(got, want) {
			t.Errorf("carrier %s got INVITEs for %v; want %v", name, got, want)
		}
	}
}

// TestTrunkAtChannelLimitPassesNextCallOn: trunk alpha has max_channels 1; a second call while the first is up
// goes to beta.
//
// needs call control: count calls per trunk (limits.Channels.Acquire(trunk, Trunk.MaxChannels)) and skip a full
// trunk (TrunkOutcome{AtLimit: true}) for the next in d.Trunks; release the channel when the trunk leg ends.
func TestTrunkAtChannelLimitPassesNextCallOn(t *testing.T) {
	e := newPSTNEnv(t, []pstnCarrier{
		{name: "alpha", ip: "127.0.0.2", sipp: testenv.SIPpOptions{RTPEcho: true}, maxChannels: 1},
		{name: "beta", ip: "127.0.0.3", sipp: testenv.SIPpOptions{RTPEcho: true}},
	}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := e.dial(t, ctx, "alice", []string{"+442071230001"}, "pstn")
	second := e.dial(t, ctx, "bob", []string{"+442071230002"}, "pstn")
	done := make(chan error, 1)
	go func() {
		_, err := e.eng.Call(ctx, first, synth.CallOptions{To: "+442079460001", Duration: 5 * time.Second})
		done <- err
	}()
	if _, err := e.sipp["alpha"].WaitInvites(ctx, 1); err != nil {
		t.Fatal(err)
	}
	rep, err := e.eng.Call(ctx, second, synth.CallOptions{To: "+442079460002", Duration: 2 * time.Second})
	if err != nil {
		t.Errorf("second call while alpha is full: %v", err)
	} else if !rep.Heard.Detected(5) {
		t.Errorf("second call: no echo: %+v", rep.Heard)
	}
	if err := <-done; err != nil {
		t.Errorf("first call: %v", err)
	}
	(&trunkEnv{pb: e.pb}).waitNoCalls(t)
	for name, want := range map[string][]string{"alpha": {"+442079460001"}, "beta": {"+442079460002"}} {
		var got []string
		for _, m := range invitesAfterStop(t, e.sipp[name]) {
			got = append(got, requestUser(m))
		}
		if !slices.Equal(got, want) {
			t.Errorf("carrier %s got INVITEs for %v; want %v", name, got, want)
		}
	}
}

// TestTrunkBrowserChoosesCallerID: a token allows three caller IDs; each call asks for one in "caller_id" and the
// carrier sees it in From and P-Asserted-Identity; a caller ID outside the list is refused before Asterisk. (The
// signalling decoder keeps caller_id on a call; call control picks among the token's caller IDs.)
func TestTrunkBrowserChoosesCallerID(t *testing.T) {
	e := newPSTNEnv(t, []pstnCarrier{{name: "alpha", ip: "127.0.0.2", sipp: testenv.SIPpOptions{RTPEcho: true}}}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ids := []string{"+442071230001", "+442071230002", "+442071230003"}
	conn := e.dial(t, ctx, "alice", ids, "pstn")
	order := []string{ids[1], ids[2], ids[0]}
	for i, id := range order {
		if _, err := e.eng.Call(ctx, conn, synth.CallOptions{To: fmt.Sprintf("+44207946000%d", i), CallerID: id, Duration: time.Second}); err != nil {
			t.Errorf("call presenting %s: %v", id, err)
		}
	}
	before := e.callsProcessed(t, ctx)
	_, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "+442079460009", CallerID: "+15555550000", Duration: time.Second})
	if code := signal.ErrorCode(err); code != wire.CodeForbiddenCallerID {
		t.Errorf("caller ID outside the token's list: %v; want %s", err, wire.CodeForbiddenCallerID)
	}
	if after := e.callsProcessed(t, ctx); after != before {
		t.Errorf("the refused caller ID made %d channels", after-before)
	}
	(&trunkEnv{pb: e.pb}).waitNoCalls(t)
	inv := invitesAfterStop(t, e.sipp["alpha"])
	if len(inv) != len(order) {
		t.Fatalf("carrier got %d INVITEs; want %d", len(inv), len(order))
	}
	for i, m := range inv {
		from, pai := numberOf(m.Header("From")), numberOf(m.Header("P-Asserted-Identity"))
		if from != order[i] || pai != order[i] {
			t.Errorf("call %d: From %s, PAI %s; want the chosen %s in both", i, from, pai, order[i])
		}
	}
}
