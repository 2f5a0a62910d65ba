//go:build integration

package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// TestPhoneCallsBrowserUser: a softphone dials a browser user by name and by number; every session of that user
// rings, the first to answer gets the call and audio flows both ways; nobody online → busy.
func TestPhoneCallsBrowserUser(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Users = map[string]string{"7001": "alice"}
	}})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	tone1000 := filepath.Join(t.TempDir(), "1000.wav")
	if err := audio.WriteWAV(tone1000, audio.Sine(1000, 8000, 60*time.Second, 0.3), 8000); err != nil {
		t.Fatal(err)
	}
	phone := testenv.StartBaresip(t, testenv.BaresipOptions{
		Name: "101", Registrar: fmt.Sprintf("127.0.0.1:%d", a.SIPPort), User: "101",
		Password: a.Phone(t, "101").Password, Transport: "udp", PlayWAV: tone1000,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := phone.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}

	for _, target := range []string{"alice", "7001"} {
		t.Run("dial "+target, func(t *testing.T) {
			// Two browser sessions of alice: the first answers, the second must hear it was answered elsewhere.
			first := pb.Dial(t, ctx, "alice")
			second := pb.Dial(t, ctx, "alice")
			type result struct {
				rep *synth.Report
				err error
			}
			done := make(chan result, 1)
			go func() {
				rep, err := eng.Receive(ctx, first, synth.CallOptions{ToneHz: 440, ExpectHz: 1000, Duration: 4 * time.Second})
				done <- result{rep, err}
			}()
			if err := phone.Dial(ctx, target); err != nil {
				t.Fatal(err)
			}
			// The second session rings, then is told the call was answered elsewhere.
			in := recvType(t, ctx, second, signal.TypeIncoming)
			if in.From != "101" {
				t.Errorf("incoming from %q, want 101", in.From)
			}
			hup := recvType(t, ctx, second, signal.TypeHangup)
			if hup.Cause != wire.CauseAnsweredElsewhere {
				t.Errorf("second session hangup cause %q, want %s", hup.Cause, wire.CauseAnsweredElsewhere)
			}
			r := <-done
			if r.err != nil {
				t.Fatalf("browser answering: %v", r.err)
			}
			t.Logf("browser heard %+v; first packet after %v", r.rep.Heard, r.rep.FirstPacketAfter)
			if !r.rep.Heard.Detected(10) {
				t.Errorf("browser did not hear the phone's 1000 Hz: %+v", r.rep.Heard)
			}
			if _, err := phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
				t.Fatal(err)
			}
			s, rate, err := phone.Recording(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if rep := audio.Detect(s, rate, 440); !rep.Detected(10) {
				t.Errorf("phone did not hear the browser's 440 Hz: %+v (%s)", rep, phone.RecordingPath())
			}
			first.Close()
			second.Close()
			waitNoCalls(t, pb)
		})
	}

	t.Run("nobody online", func(t *testing.T) {
		if err := phone.Dial(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		ev, err := phone.WaitEvent(ctx, "CALL_CLOSED")
		if err != nil {
			t.Fatal(err)
		}
		// Busy (17) reaches the phone as 486: it knows the user exists but cannot take the call now.
		if !strings.Contains(ev.Param, "486") {
			t.Errorf("call to offline user closed with %q, want 486 Busy Here", ev.Param)
		}
		waitNoCalls(t, pb)
	})
}

func waitNoCalls(t *testing.T, pb *testenv.Patchbay) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for pb.Server.ActiveCalls() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls still active", pb.Server.ActiveCalls())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
