package audio

import (
	"math"
	"path/filepath"
	"testing"
	"time"
)

func TestG711RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		enc    func(int16) byte
		dec    func(byte) int16
		maxErr float64 // relative error allowed for |s| > 1000
	}{
		{"mulaw", MulawEncode, MulawDecode, 0.07},
		{"alaw", AlawEncode, AlawDecode, 0.07},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for s := -32768; s <= 32767; s += 7 {
				got := tc.dec(tc.enc(int16(s)))
				if math.Abs(float64(s)) > 1000 {
					if rel := math.Abs(float64(got)-float64(s)) / math.Abs(float64(s)); rel > tc.maxErr {
						t.Fatalf("%d → %d: relative error %.3f", s, got, rel)
					}
				}
			}
			// Every code word decodes to a value that encodes back to itself (bar the two zeros).
			for b := range 256 {
				v := tc.dec(byte(b))
				if back := tc.enc(v); tc.dec(back) != v {
					t.Fatalf("code %#x → %d → %#x", b, v, back)
				}
			}
		})
	}
}

func TestKnownCodes(t *testing.T) {
	// Silence is 0xFF in μ-law and 0xD5 in A-law: what Asterisk and browsers send when quiet.
	if MulawEncode(0) != 0xFF {
		t.Errorf("μ-law silence = %#x, want 0xff", MulawEncode(0))
	}
	if AlawEncode(0) != 0xD5 {
		t.Errorf("A-law silence = %#x, want 0xd5", AlawEncode(0))
	}
}

func TestDetect(t *testing.T) {
	tone := Sine(1000, 8000, 2*time.Second, 0.3)
	// Through μ-law, as on a call.
	coded := DecodeMulaw(nil, EncodeMulaw(nil, tone))
	for _, tc := range []struct {
		freq float64
		want bool
	}{{1000, true}, {440, false}} {
		r := Detect(coded, 8000, tc.freq)
		if r.Detected(10) != tc.want {
			t.Errorf("Detect(%v Hz) = %+v, want detected=%v", tc.freq, r, tc.want)
		}
	}
	if r := Detect(make([]int16, 16000), 8000, 1000); r.Voiced != 0 {
		t.Errorf("silence voiced: %+v", r)
	}
}

func TestWAVRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.wav")
	in := Sine(440, 16000, 300*time.Millisecond, 0.5)
	if err := WriteWAV(p, in, 16000); err != nil {
		t.Fatal(err)
	}
	out, rate, err := ReadWAV(p)
	if err != nil {
		t.Fatal(err)
	}
	if rate != 16000 || len(out) != len(in) || out[123] != in[123] {
		t.Fatalf("got rate %d len %d", rate, len(out))
	}
	if _, _, err := ReadWAV(filepath.Join(t.TempDir(), "missing.wav")); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestToneContinuity(t *testing.T) {
	const rate = 8000
	tone := Sine(1000, rate, 2*time.Second, 0.3) // 20 windows
	gappy := append([]int16(nil), tone...)
	for i := 300 * rate / 1000; i < 600*rate/1000; i++ { // 300 ms of silence: windows 3, 4, 5
		gappy[i] = 0
	}
	mixed := Sine(1000, rate, time.Second, 0.2)
	for i, v := range Sine(440, rate, time.Second, 0.2) {
		mixed[i] += v
	}
	for _, tc := range []struct {
		name                  string
		s                     []int16
		freq, share           float64
		windows, heard, quiet int
	}{
		{"steady tone", tone, 1000, 0.5, 20, 20, 0},
		{"300 ms gap", gappy, 1000, 0.5, 20, 17, 3},
		{"other tone", tone, 440, 0.5, 20, 0, 0},
		{"mixed, low share", mixed, 1000, 0.3, 10, 10, 0},
		{"mixed, alone share", mixed, 1000, 0.8, 10, 0, 0},
		{"empty", nil, 1000, 0.5, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ToneContinuity(tc.s, rate, tc.freq, tc.share)
			if c.Windows != tc.windows || c.Heard != tc.heard || c.Silent != tc.quiet {
				t.Fatalf("got %+v, want %d windows, %d heard, %d silent", c, tc.windows, tc.heard, tc.quiet)
			}
			if tc.windows > 0 && math.Abs(c.Percent-100*float64(tc.heard)/float64(tc.windows)) > 1e-9 {
				t.Fatalf("percent %v", c.Percent)
			}
		})
	}
}
