package audio

import (
	"math"
	"time"
)

// Sine returns d of a sine tone at freqHz, sampled at rate, with peak amplitude amp (0..1 of full scale).
func Sine(freqHz float64, rate int, d time.Duration, amp float64) []int16 {
	n := int(int64(rate) * int64(d) / int64(time.Second))
	out := make([]int16, n)
	peak := amp * 32767
	for i := range out {
		out[i] = int16(peak * math.Sin(2*math.Pi*freqHz*float64(i)/float64(rate)))
	}
	return out
}

// Report says how much of a signal carried a tone.
type Report struct {
	Windows  int     // 100 ms windows examined
	Voiced   int     // windows with more than silence in them
	Matching int     // voiced windows whose energy is mostly at the target frequency
	Fraction float64 // Matching / Voiced (0 when nothing was voiced)
}

// Detected reports whether the tone was present in most voiced windows and in at least minVoiced of them.
func (r Report) Detected(minVoiced int) bool {
	return r.Voiced >= minVoiced && r.Fraction >= 0.8
}

const (
	windowDur = 100 * time.Millisecond
	// A window whose RMS is under this (about -50 dBFS) counts as silence.
	silenceRMS = 100.0
	// The share of a window's energy that must sit at the target frequency for it to match.
	matchShare = 0.5
)

// Detect looks for a tone at freq in s (sampled at rate) over 100 ms windows, with a Goertzel filter per window.
func Detect(s []int16, rate int, freq float64) Report {
	win := int(int64(rate) * int64(windowDur) / int64(time.Second))
	var r Report
	if win == 0 {
		return r
	}
	for start := 0; start+win <= len(s); start += win {
		w := s[start : start+win]
		r.Windows++
		var energy float64
		for _, v := range w {
			energy += float64(v) * float64(v)
		}
		if math.Sqrt(energy/float64(len(w))) < silenceRMS {
			continue
		}
		r.Voiced++
		if goertzelShare(w, rate, freq, energy) >= matchShare {
			r.Matching++
		}
	}
	if r.Voiced > 0 {
		r.Fraction = float64(r.Matching) / float64(r.Voiced)
	}
	return r
}

// goertzelShare is the fraction of the window's energy at freq. For a pure tone it approaches 1.
func goertzelShare(w []int16, rate int, freq, energy float64) float64 {
	n := float64(len(w))
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2 float64
	for _, v := range w {
		s0 := float64(v) + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	// A sine of amplitude A over N samples gives power (A·N/2)², and carries energy A²·N/2.
	share := 2 * power / (n * energy)
	if share > 1 {
		share = 1
	}
	return share
}

// Window is one 100 ms window of a signal: its RMS level and the share of its energy at each frequency asked for
// (Windows), in the order asked.
type Window struct {
	RMS    float64
	Shares []float64
}

// Voiced reports whether the window holds more than silence.
func (w Window) Voiced() bool { return w.RMS >= silenceRMS }

// Windows cuts s into 100 ms windows and measures each: its level, and the share of its energy at each of freqs.
// Unlike Detect it tells mixtures apart: two tones at equal level each hold about half the energy.
func Windows(s []int16, rate int, freqs ...float64) []Window {
	win := int(int64(rate) * int64(windowDur) / int64(time.Second))
	if win == 0 {
		return nil
	}
	var out []Window
	for start := 0; start+win <= len(s); start += win {
		w := s[start : start+win]
		var energy float64
		for _, v := range w {
			energy += float64(v) * float64(v)
		}
		x := Window{RMS: math.Sqrt(energy / float64(len(w))), Shares: make([]float64, len(freqs))}
		if energy > 0 {
			for i, f := range freqs {
				x.Shares[i] = goertzelShare(w, rate, f, energy)
			}
		}
		out = append(out, x)
	}
	return out
}

// Presence summarises windows for the frequency at index i: how many windows were voiced, and in what fraction of
// them that frequency held at least minShare of the energy.
func Presence(ws []Window, i int, minShare float64) (voiced int, frac float64) {
	n := 0
	for _, w := range ws {
		if !w.Voiced() {
			continue
		}
		voiced++
		if i < len(w.Shares) && w.Shares[i] >= minShare {
			n++
		}
	}
	if voiced > 0 {
		frac = float64(n) / float64(voiced)
	}
	return voiced, frac
}

// SpanWindows returns the windows of s from offset from to offset to (clipped), for a phase of a call.
func SpanWindows(s []int16, rate int, from, to time.Duration, freqs ...float64) []Window {
	a := int(int64(rate) * int64(from) / int64(time.Second))
	b := int(int64(rate) * int64(to) / int64(time.Second))
	a, b = max(0, min(a, len(s))), max(0, min(b, len(s)))
	if a >= b {
		return nil
	}
	return Windows(s[a:b], rate, freqs...)
}

// Continuity says in how many of a recording's 100 ms windows a tone was heard: unlike Detect and Presence, a
// silent window counts against it, so audio lost on the way (a gap the receiver did not conceal) shows.
type Continuity struct {
	Windows int     // 100 ms windows examined
	Heard   int     // windows voiced and holding at least minShare of their energy at the tone
	Silent  int     // windows under the silence level
	Percent float64 // 100 · Heard / Windows (0 when there are no windows)
}

// ToneContinuity measures Continuity for freq in s (sampled at rate). minShare is the share of a window's energy
// the tone must hold: about 0.5 when it is heard alone, lower when mixed with other tones at similar levels
// (two tones at equal level hold about half each).
func ToneContinuity(s []int16, rate int, freq, minShare float64) Continuity {
	var c Continuity
	for _, w := range Windows(s, rate, freq) {
		c.Windows++
		switch {
		case !w.Voiced():
			c.Silent++
		case w.Shares[0] >= minShare:
			c.Heard++
		}
	}
	if c.Windows > 0 {
		c.Percent = 100 * float64(c.Heard) / float64(c.Windows)
	}
	return c
}
