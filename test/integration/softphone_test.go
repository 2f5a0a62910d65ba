//go:build integration

package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
)

// TestSoftphones registers baresip softphones with the rendered configs and checks that a call
// between two of them carries audio both ways: 1000 Hz from the caller, 440 Hz from the callee.
func TestSoftphones(t *testing.T) {
	ast := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	dir := t.TempDir()
	const rate = 8000
	// Longer than any call here: baresip hangs up when its source WAV ends.
	tone1000 := filepath.Join(dir, "1000.wav")
	tone440 := filepath.Join(dir, "440.wav")
	for path, f := range map[string]float64{tone1000: 1000, tone440: 440} {
		if err := audio.WriteWAV(path, audio.Sine(f, rate, 60*time.Second, 0.3), rate); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name             string
		caller, callee   string
		transport        string
		port             int
		srtp             bool
		wantMediaEncrypt string
	}{
		{"udp", "101", "102", "udp", ast.SIPPort, false, "no"},
		{"tls-srtp", "103", "104", "tls", ast.SIPTLSPort, true, "sdes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			registrar := fmt.Sprintf("127.0.0.1:%d", tc.port)
			start := func(user, wav string, auto bool) *testenv.Baresip {
				return testenv.StartBaresip(t, testenv.BaresipOptions{
					Name: user, Registrar: registrar, User: user, Password: ast.Phone(t, user).Password,
					Transport: tc.transport, SRTP: tc.srtp, PlayWAV: wav, AutoAnswer: auto,
				})
			}
			caller := start(tc.caller, tone1000, false)
			callee := start(tc.callee, tone440, true)
			regStart := time.Now()
			for _, b := range []*testenv.Baresip{caller, callee} {
				if err := b.WaitRegistered(ctx); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("both registered over %s in %v", tc.transport, time.Since(regStart).Round(time.Millisecond))

			out, err := ast.CLI(ctx, "pjsip show contacts")
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range []string{tc.caller, tc.callee} {
				if !strings.Contains(out, "Contact:  "+u+"/sip:"+u) {
					t.Errorf("no contact for %s in Asterisk:\n%s", u, out)
				}
			}
			out, err = ast.CLI(ctx, "pjsip show endpoint "+tc.caller)
			if err != nil {
				t.Fatal(err)
			}
			if !astContainsSetting(out, "media_encryption", tc.wantMediaEncrypt) {
				t.Errorf("endpoint %s: media_encryption is not %s", tc.caller, tc.wantMediaEncrypt)
			}

			dialStart := time.Now()
			if err := caller.Dial(ctx, tc.callee); err != nil {
				t.Fatal(err)
			}
			for _, b := range []*testenv.Baresip{caller, callee} {
				if _, err := b.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("dial → established on both sides in %v", time.Since(dialStart).Round(time.Millisecond))
			// With SRTP both ends insist on it (srtp-mand; media_encryption=sdes, not optimistic),
			// so an established call with audio proves SDES-SRTP end to end.
			// 5 s of talk against a 2 s (20-window) threshold: under a loaded suite the first second of audio
			// can arrive late, which is not what this test is about.
			time.Sleep(5 * time.Second)
			if err := caller.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			for _, b := range []*testenv.Baresip{caller, callee} {
				if _, err := b.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
					t.Fatal(err)
				}
			}
			check := func(b *testenv.Baresip, want, other float64) {
				s, r, err := b.Recording(ctx)
				if err != nil {
					t.Fatal(err)
				}
				path := b.RecordingPath()
				rep := audio.Detect(s, r, want)
				wrong := audio.Detect(s, r, other)
				t.Logf("%s heard (%.1f s recorded): %d Hz in %d/%d voiced windows (fraction %.2f); %d Hz fraction %.2f",
					b.Name, float64(len(s))/float64(r), int(want), rep.Matching, rep.Voiced, rep.Fraction, int(other), wrong.Fraction)
				// baresip records the decode path as its player pulls frames, and its player here is ALSA's null
				// device, whose pacing under a loaded suite decides how much is recorded (0.8–5 s of a 5 s call
				// were seen). What this test proves is the direction and the tone, so 5 clean windows suffice.
				if !rep.Detected(5) {
					t.Errorf("%s did not hear %d Hz: %+v (%s)", b.Name, int(want), rep, path)
				}
				if wrong.Fraction > 0.2 {
					t.Errorf("%s heard its own %d Hz tone: %+v", b.Name, int(other), wrong)
				}
			}
			check(caller, 440, 1000)
			check(callee, 1000, 440)
		})
	}
}

// astContainsSetting reports whether `pjsip show endpoint` output has "name : value".
func astContainsSetting(out, name, value string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == name && f[1] == ":" && f[2] == value {
			return true
		}
	}
	return false
}
