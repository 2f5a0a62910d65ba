//go:build integration

package integration

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/wire"
)

// HD voice (issue 14). One Asterisk and one Patchbay per test; the synthetic caller speaks Opus with gopus.

// opusEnv is an Asterisk and a Patchbay that writes call records, a synthetic caller, and an ARI client of its
// own that sees what is left behind.
type opusEnv struct {
	ast     *testenv.Asterisk
	pb      *testenv.Patchbay
	eng     *synth.Engine
	ari     *ari.Client
	records string
}

func newOpusEnv(t *testing.T) *opusEnv {
	t.Helper()
	e := &opusEnv{records: filepath.Join(t.TempDir(), "calls.jsonl")}
	e.ast = testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	e.pb = testenv.StartPatchbay(t, e.ast, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Calls.Records.File = e.records
		c.Media.PublicIPs = []string{"127.0.0.1"}
		c.Rooms.Grace = time.Second
	}})
	var err error
	if e.eng, err = synth.NewEngine(synth.EngineOptions{LoopbackOnly: true}); err != nil {
		t.Fatal(err)
	}
	if e.ari, err = ari.New(ari.Config{URL: e.ast.ARIURL(), Username: e.ast.ARIUser, Password: e.ast.ARIPassword, Application: "inspector"}); err != nil {
		t.Fatal(err)
	}
	return e
}

// records reads the call records written so far.
func (e *opusEnv) waitRecord(t *testing.T, match func(cdr.Record) bool) cdr.Record {
	t.Helper()
	o := &obsEnv{records: e.records}
	deadline := time.Now().Add(15 * time.Second)
	for n := 1; ; {
		for _, r := range o.waitRecords(t, n) {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no matching call record")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// assertClean fails unless Asterisk has no channels or bridges and Patchbay no calls within 5 s.
func (e *opusEnv) assertClean(t *testing.T, what string) {
	t.Helper()
	ce := &pageEnv{ari: e.ari, pb: e.pb}
	ce.assertClean(t, what)
}

// TestOpusSyntheticCalls: what the codec choice does with offers a browser may make, with the synthetic caller.
//   - Opus alone to the echo extension 600: accepted, carried in Opus, transcoded by Asterisk to the narrowband
//     extension, and recorded as such (flag transcoded, codec opus/48000); the 1 kHz tone comes back.
//   - Opus then PCMU to a phone (baresip on 101): the answer picks PCMU, which the phone hears untouched.
//   - Opus then PCMU from one browser user to another, whose tab answers and sends back every frame it hears:
//     both legs run Opus, and the caller's own Opus frames come back bit for bit, so nothing transcoded on the
//     way through Asterisk, twice.
func TestOpusSyntheticCalls(t *testing.T) {
	testenv.Sensitive(t)
	e := newOpusEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	t.Run("opus only to 600 is transcoded", func(t *testing.T) {
		conn := e.pb.Dial(t, ctx, "alice", "ext")
		rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "600", Codecs: []media.Codec{media.Opus}, ToneHz: 1000, Duration: 5 * time.Second})
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		if rep.Law != media.Opus {
			t.Fatalf("browser leg ran %s, want opus", rep.Law)
		}
		t.Logf("heard back: %+v (%d samples at %d Hz), echo RTT %+v", rep.Heard, len(rep.Audio), rep.AudioRate, rep.RTT)
		// 20 of ~45 windows: a starved host makes Asterisk's media queue jump now and then, and the relay cuts it back
		// (internal/relay/ws.go), which takes up to a few hundred ms of the echo.
		if !rep.Heard.Detected(20) {
			t.Errorf("the echo of the 1 kHz tone was not heard: %+v", rep.Heard)
		}
		r := e.waitRecord(t, func(r cdr.Record) bool { return r.To == "600" })
		if r.Codec != "opus/48000" || !r.Has(wire.QualityTranscoded) {
			t.Errorf("record: codec %q flags %v, want opus/48000 and %s", r.Codec, r.Flags, wire.QualityTranscoded)
		}
		e.assertClean(t, "after the Opus echo call")
	})

	t.Run("opus and PCMU to a phone picks PCMU", func(t *testing.T) {
		tone440 := filepath.Join(t.TempDir(), "440.wav")
		if err := audio.WriteWAV(tone440, audio.Sine(440, 8000, 60*time.Second, 0.3), 8000); err != nil {
			t.Fatal(err)
		}
		phone := testenv.StartBaresip(t, testenv.BaresipOptions{User: "101", Password: e.ast.Phone(t, "101").Password,
			PlayWAV: tone440, AutoAnswer: true, Transport: "udp", Registrar: fmt.Sprintf("127.0.0.1:%d", e.ast.SIPPort)})
		if err := phone.WaitRegistered(ctx); err != nil {
			t.Fatal(err)
		}
		conn := e.pb.Dial(t, ctx, "alice", "ext")
		rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "101", Codecs: []media.Codec{media.Opus, media.PCMU},
			ToneHz: 1000, ExpectHz: 440, Duration: 6 * time.Second})
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		if rep.Law != media.PCMU {
			t.Fatalf("browser leg ran %s, want PCMU", rep.Law)
		}
		if !rep.Heard.Detected(20) {
			t.Errorf("the phone's 440 Hz was not heard: %+v", rep.Heard)
		}
		r := e.waitRecord(t, func(r cdr.Record) bool { return r.To == "101" })
		if r.Codec != "PCMU/8000" || r.Has(wire.QualityTranscoded) {
			t.Errorf("record: codec %q flags %v, want PCMU/8000 untranscoded", r.Codec, r.Flags)
		}
		e.assertClean(t, "after the call to the phone")
	})

	t.Run("browser to browser in Opus, bit for bit", func(t *testing.T) {
		bob := e.pb.Dial(t, ctx, "bob-jones") // a dash, which the dialplan would drop from an extension
		alice := e.pb.Dial(t, ctx, "alice", "user")
		var wg sync.WaitGroup
		var bobRep *synth.Report
		var bobErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			bobRep, bobErr = e.eng.Receive(ctx, bob, synth.CallOptions{Echo: true, Duration: -1})
		}()
		// Mid-call, every channel on the way runs Opus with no translation path.
		var formats []string
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(2500 * time.Millisecond)
			formats = e.channelFormats(t, ctx)
		}()
		rep, err := e.eng.Call(ctx, alice, synth.CallOptions{To: "bob-jones", Codecs: []media.Codec{media.Opus, media.PCMU},
			ToneHz: 1000, Duration: 4 * time.Second})
		wg.Wait()
		if err != nil {
			t.Fatalf("alice's call: %v", err)
		}
		if bobErr != nil {
			t.Fatalf("bob's side: %v", bobErr)
		}
		if rep.Law != media.Opus || bobRep.Law != media.Opus {
			t.Fatalf("legs ran %s and %s, want opus both", rep.Law, bobRep.Law)
		}
		t.Logf("alice: sent %d, received %d, echoed frames %d, RTT %+v; heard %+v", rep.Sent, rep.Received, len(rep.RTTs), rep.RTT, rep.Heard)
		for _, f := range formats {
			if strings.Contains(f, "Transcode: Yes") || (strings.Contains(f, "NativeFormats") && !strings.Contains(f, "(opus)")) {
				t.Errorf("mid-call: %s", f)
			}
		}
		if len(formats) < 4*5 { // the caller's and callee's media channels and the Local pair
			t.Errorf("mid-call: only %v", formats)
		}
		if len(rep.RTTs) < int(rep.Sent)/2 {
			t.Errorf("only %d of %d Opus frames came back bit for bit: something transcoded", len(rep.RTTs), rep.Sent)
		}
		if !rep.Heard.Detected(20) {
			t.Errorf("alice did not hear her 1 kHz tone back: %+v", rep.Heard)
		}
		ra := e.waitRecord(t, func(r cdr.Record) bool { return r.To == "bob-jones" && r.Direction == "browser_out" })
		rb := e.waitRecord(t, func(r cdr.Record) bool { return r.User == "bob-jones" && r.Direction == "phone_in" })
		for _, r := range []cdr.Record{ra, rb} {
			if r.Codec != "opus/48000" || r.Has(wire.QualityTranscoded) {
				t.Errorf("record %s: codec %q flags %v, want opus/48000 untranscoded", r.Direction, r.Codec, r.Flags)
			}
		}
		e.assertClean(t, "after the browser to browser call")
	})
}

// channelFormats lists "channel: NativeFormats/ReadFormat/WriteFormat/…Transcode" lines of every channel in
// Asterisk, from `core show channel`.
func (e *opusEnv) channelFormats(t *testing.T, ctx context.Context) []string {
	out, err := e.ast.CLI(ctx, "core show channels concise")
	if err != nil {
		t.Errorf("core show channels: %v", err)
		return nil
	}
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(line, "!")
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		o, _ := e.ast.CLI(ctx, "core show channel "+name)
		for _, l := range strings.Split(o, "\n") {
			l = strings.TrimSpace(l)
			if strings.Contains(l, "Format") || strings.Contains(l, "Transcode") {
				lines = append(lines, name+": "+l)
			}
		}
	}
	return lines
}

// TestOpusBrowsersHearWideband, in Chromium and then Firefox ESR (the same browser on every end), proving wideband end to end with a 6 kHz tone, which
// G.711 (a 4 kHz band) cannot carry at all.
//   - Browser ⇄ browser: alice (fake microphone: 6 kHz) calls the user bob (1 kHz); bob's page answers by itself
//     and hears 6 kHz, alice hears 1 kHz. Both call panels say Opus.
//   - A room of three browsers and a phone: alice (6 kHz), bob and carol (1 kHz; carol
//     mutes), and baresip on 101 (silent) dialling the room's number. bob and carol each hear alice's 6 kHz; the
//     phone hears the room's speech band, bob's 1 kHz, with no 6 kHz folded in, and its own leg is G.711 with no
//     Opus anywhere on its channel in Asterisk (`core show channel`).
func TestOpusBrowsersHearWideband(t *testing.T) {
	testenv.Heavy(t)
	e := newOpusEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()
	dir := t.TempDir()
	mic := func(hz float64) string { return micFile(t, dir, hz) }
	// One browser at a time: six browsers and a mixing room at once starve a 2-core host's audio.
	for i, name := range testenv.BrowserNames {
		t.Run(name, func(t *testing.T) {
			room, number := "hd-room-"+name, fmt.Sprint(8123+i)
			hi := testenv.StartBrowser(t, name, testenv.BrowserOptions{Name: name + "-alice-6k", FakeMicWAV: mic(6000), FakeToneHz: 6000, TrustCA: e.pb.CACert})
			// A browser each: Firefox starves the audio capture of a window behind another of its own.
			lo := func(who string) testenv.Tab {
				b := testenv.StartBrowser(t, name, testenv.BrowserOptions{Name: name + "-" + who + "-1k", FakeMicWAV: mic(1000), FakeToneHz: 1000, TrustCA: e.pb.CACert})
				return b.NewTab(t, who)
			}
			alice, bob, carol := hi.NewTab(t, "alice"), lo("bob"), lo("carol")
			defer checkConsole(t, alice, bob, carol)
			opusBrowsersHearWideband(t, ctx, e, room, number, alice, bob, carol)
		})
	}
}

func opusBrowsersHearWideband(t *testing.T, ctx context.Context, e *opusEnv, room, number string, alice, bob, carol testenv.Tab) {

	// listen records what a page plays for 3 s, and checks that each tone of want stands out clearly in it (at
	// least -30 dBFS and 20 dB over its neighbours ±10 %) and each of not is absent (under -40 dBFS). G.711 samples
	// at 8 kHz and cannot carry anything above 4 kHz: a 6 kHz tone through it would be absent, not just quieter.
	// Levels rather than shares of the energy: on a loaded host a cut or two in 3 s spreads energy everywhere.
	// minProm and maxAbsent are the thresholds above; the room loosens them (see there).
	minProm, maxAbsent := 20.0, -40.0
	listen := func(p testenv.Tab, want, not []float64) {
		t.Helper()
		ra, err := p.RecordRemoteAudio(ctx, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, voiced := synth.ToneShareAt(ra.Samples, ra.Rate, 1000)
		var got []string
		for _, hz := range want {
			lvl, prom := toneProminence(ra.Samples, ra.Rate, hz)
			got = append(got, fmt.Sprintf("%v Hz %.1f dBFS (+%.1f dB)", hz, lvl, prom))
			if lvl < -30 || prom < minProm {
				t.Errorf("%s did not hear %v Hz clearly: %.1f dBFS, %.1f dB over its neighbours", p.TabName(), hz, lvl, prom)
			}
		}
		for _, hz := range not {
			lvl, _ := toneProminence(ra.Samples, ra.Rate, hz)
			got = append(got, fmt.Sprintf("%v Hz %.1f dBFS", hz, lvl))
			if lvl > maxAbsent {
				t.Errorf("%s heard %v Hz, which it should not: %.1f dBFS", p.TabName(), hz, lvl)
			}
		}
		t.Logf("%s heard (WebAudio, %d Hz, %d voiced windows): %s; analyser peak %.0f Hz (playing in step after %v, %v of the capture's start dropped)",
			p.TabName(), ra.Rate, voiced, strings.Join(got, ", "), ra.PeakHz, ra.Waited.Round(time.Millisecond), ra.SkippedLead.Round(time.Millisecond))
		if voiced < 10 {
			t.Errorf("%s heard almost nothing: %d voiced windows of 30", p.TabName(), voiced)
		}
	}

	t.Run("browser to browser", func(t *testing.T) {
		if err := bob.OpenPatchbay(ctx, e.pb, e.pb.Token(t, "bob"), url.Values{"autoanswer": {"1"}}); err != nil {
			t.Fatal(err)
		}
		if err := alice.OpenPatchbay(ctx, e.pb, e.pb.Token(t, "alice", "user"), nil); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := alice.Eval(ctx, `window.patchbayApp.call("bob")`, nil); err != nil {
			t.Fatal(err)
		}
		for _, p := range []testenv.Tab{alice, bob} {
			if err := p.WaitFor(ctx, "call answered in Opus", `window.patchbayState.callState === "answered" && window.patchbayState.codec === "opus/48000"`, 20*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("answered on both pages, Opus, %v after dialling", time.Since(start).Round(time.Millisecond))
		if path, err := alice.Screenshot(ctx, "opus-call-panel"); err == nil {
			t.Logf("call panel: %s", path)
		}
		var panel string
		if err := alice.Eval(ctx, `document.getElementById("call-codec").textContent`, &panel); err != nil || panel != "Codec: Opus (HD)" {
			t.Errorf("call panel shows %q (%v), want Codec: Opus (HD)", panel, err)
		}
		listen(bob, []float64{6000}, []float64{1000})
		listen(alice, []float64{1000}, []float64{6000})
		if err := alice.Eval(ctx, `window.patchbayApp.hangup()`, nil); err != nil {
			t.Fatal(err)
		}
		if err := bob.WaitFor(ctx, "hangup reaches bob", `window.patchbayState.callState === "ended"`, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		e.assertClean(t, "after the browser to browser call")
	})

	t.Run("room of three browsers and a phone", func(t *testing.T) {
		if _, err := e.pb.Server.Rooms().Create(ctx, rooms.CreateOptions{ID: room, Name: "HD"}); err != nil {
			t.Fatal(err)
		}
		if err := e.pb.Server.Numbers().Map(ctx, number, room, 0); err != nil {
			t.Fatal(err)
		}
		for _, p := range []testenv.Tab{alice, bob, carol} {
			c := auth.Claims{Name: p.TabName(), Room: room, Role: rooms.RoleParticipant}
			c.Subject = p.TabName()
			tok, err := e.pb.Server.Signer().Mint(c, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.OpenPatchbay(ctx, e.pb, tok, url.Values{"room": {room}, "video": {"0"}}); err != nil {
				t.Fatal(err)
			}
		}
		phone := testenv.StartBaresip(t, testenv.BaresipOptions{User: "101", Password: e.ast.Phone(t, "101").Password,
			AutoAnswer: true, Transport: "udp", Registrar: fmt.Sprintf("127.0.0.1:%d", e.ast.SIPPort)})
		if err := phone.WaitRegistered(ctx); err != nil {
			t.Fatal(err)
		}
		if err := phone.Dial(ctx, fmt.Sprintf("sip:%s@127.0.0.1:%d;transport=udp", number, e.ast.SIPPort)); err != nil {
			t.Fatal(err)
		}
		for _, p := range []testenv.Tab{alice, bob, carol} {
			if err := p.WaitFor(ctx, "four in the room, in Opus", `window.patchbayState.roomState === "joined" && `+
				`window.patchbayState.participants.length === 4 && window.patchbayState.roomCodec === "opus/48000"`, 20*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		// Mid-call, the phone's channel: G.711 on the wire, and no Opus on its way in or out (only the decoding
		// to and from the mix's linear audio that every member of a mixed room has).
		var phoneLines []string
		all := e.channelFormats(t, ctx)
		for _, l := range all {
			if strings.HasPrefix(l, "PJSIP/101-") {
				phoneLines = append(phoneLines, l)
			}
		}
		if len(phoneLines) == 0 {
			t.Logf("channels: %v", all)
		}
		t.Logf("the phone's channel mid-call:\n%s", strings.Join(phoneLines, "\n"))
		native := false
		for _, l := range phoneLines {
			if strings.Contains(l, "NativeFormats: (ulaw)") {
				native = true
			}
			if strings.Contains(strings.ToLower(l), "opus") {
				t.Errorf("the phone's leg touches Opus: %s", l)
			}
		}
		if !native {
			t.Errorf("the phone's leg is not G.711 µ-law: %v", phoneLines)
		}
		// carol mutes: bob's and her identical 1 kHz tones, from one fake microphone, would add up with whatever
		// phase their paths give them, cancelling at worst. The mix is then alice's 6 kHz and bob's 1 kHz.
		if err := carol.Eval(ctx, `window.patchbayApp.roomMute(true)`, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		// Looser in the room: when Asterisk's media WebSocket misses its 20 ms reads under CPU load, softmix sends
		// a member the shared mix for that frame, her own voice included (alice's 6 kHz came back at up to -34 dBFS
		// on a starved host), and cuts in a member's stream lower its tone's prominence. Wideband is still proven:
		// 6 kHz must be heard, and the phone below must not hear it.
		minProm, maxAbsent = 15, -30
		listen(bob, []float64{6000}, nil)
		listen(carol, []float64{6000, 1000}, nil)
		listen(alice, []float64{1000}, []float64{6000})
		// The phone leaves first, so its recording ends with the room still in it.
		if err := phone.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []testenv.Tab{alice, bob, carol} {
			if err := p.Eval(ctx, `window.patchbayApp.leave()`, nil); err != nil {
				t.Fatal(err)
			}
		}
		pcm, rate, err := phone.Recording(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pcm = lastSeconds(pcm, 2*time.Second)
		_, voiced := synth.ToneShareAt(pcm, rate, 1000)
		lvl, prom := toneProminence(pcm, rate, 1000)
		alias, _ := toneProminence(pcm, rate, 2000) // where 6 kHz would fold to at 8 kHz without the resampler's filter
		t.Logf("phone heard (%d Hz, %d voiced windows of its last 2 s): 1 kHz at %.1f dBFS (+%.1f dB), 2 kHz (6 kHz's alias) at %.1f dBFS",
			rate, voiced, lvl, prom, alias)
		if voiced < 10 || lvl < -30 || prom < 20 || alias > -45 {
			t.Errorf("the phone should hear the room's 1 kHz, narrowband and without the 6 kHz folded in")
		}
		e.assertClean(t, "after the room")
	})
}

// toneProminence is the level of the tone at hz in dBFS and how far it stands over the level at hz ±10 %.
func toneProminence(pcm []int16, rate int, hz float64) (level, over float64) {
	level = toneLevel(pcm, rate, hz)
	return level, level - max(toneLevel(pcm, rate, hz*0.9), toneLevel(pcm, rate, hz*1.1))
}

// toneLevel is the level of the component at hz in pcm, in dBFS (a full-scale sine is 0): Goertzel over 100 ms
// windows, power averaged.
func toneLevel(pcm []int16, rate int, hz float64) float64 {
	win := rate / 10
	coeff := 2 * math.Cos(2*math.Pi*hz/float64(rate))
	var sum float64
	n := 0
	for start := 0; start+win <= len(pcm); start += win {
		var s1, s2 float64
		for _, v := range pcm[start : start+win] {
			s0 := float64(v)/32768 + coeff*s1 - s2
			s2, s1 = s1, s0
		}
		power := s1*s1 + s2*s2 - coeff*s1*s2
		amp := 2 * math.Sqrt(max(power, 0)) / float64(win) // the sine's amplitude
		sum += amp * amp
		n++
	}
	if n == 0 || sum == 0 {
		return -200
	}
	return 10 * math.Log10(sum/float64(n))
}

// micFile writes a fake microphone for Chromium (--use-file-for-fake-audio-capture): a 48 kHz sine of hz, 10 s of
// whole cycles so that Chromium loops the file without a click.
func micFile(t *testing.T, dir string, hz float64) string {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("mic-%d.wav", int(hz)))
	if err := audio.WriteWAV(p, audio.Sine(hz, 48000, 10*time.Second, 0.3), 48000); err != nil {
		t.Fatal(err)
	}
	return p
}
