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
