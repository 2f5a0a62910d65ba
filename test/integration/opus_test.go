//go:build integration

package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/config"
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
	ce := &chromiumEnv{ari: e.ari, pb: e.pb}
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
	e := newOpusEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	t.Run("opus only to 600 is transcoded", func(t *testing.T) {
		conn := e.pb.Dial(t, ctx, "alice", "ext")
		rep, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "600", Codecs: []media.Codec{media.Opus}, ToneHz: 1000, Duration: 3 * time.Second})
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		if rep.Law != media.Opus {
			t.Fatalf("browser leg ran %s, want opus", rep.Law)
		}
		t.Logf("heard back: %+v (%d samples at %d Hz), echo RTT %+v", rep.Heard, len(rep.Audio), rep.AudioRate, rep.RTT)
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
		bob := e.pb.Dial(t, ctx, "bob")
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
		rep, err := e.eng.Call(ctx, alice, synth.CallOptions{To: "bob", Codecs: []media.Codec{media.Opus, media.PCMU},
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
		ra := e.waitRecord(t, func(r cdr.Record) bool { return r.To == "bob" && r.Direction == "browser_out" })
		rb := e.waitRecord(t, func(r cdr.Record) bool { return r.User == "bob" && r.Direction == "phone_in" })
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
