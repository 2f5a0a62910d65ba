package relay

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestJitterEstimator(t *testing.T) {
	start := time.Unix(100, 0)
	for _, tc := range []struct {
		name     string
		spread   time.Duration // each packet's delay is uniform in [0, 2·spread]
		min, max time.Duration
	}{
		{"steady", 0, 0, time.Millisecond},
		{"±30 ms", 30 * time.Millisecond, 14 * time.Millisecond, 26 * time.Millisecond}, // E|D| of two uniforms: 2·spread/3
		{"±5 ms", 5 * time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newJitterEstimator(48000)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 3000 {
				delay := time.Duration(rng.Float64() * 2 * float64(tc.spread))
				e.update(uint32(5000+960*i), start.Add(time.Duration(i)*20*time.Millisecond+delay))
			}
			if j := e.get(); j < tc.min || j > tc.max {
				t.Fatalf("jitter %v, want %v–%v", j, tc.min, tc.max)
			}
		})
	}
	// A pause (timestamps and arrival both jump) and a timestamp wrap are not jitter.
	e := newJitterEstimator(8000)
	for i := range 100 {
		at := start.Add(time.Duration(i) * 20 * time.Millisecond)
		if i >= 50 {
			at = at.Add(5 * time.Second)
		}
		e.update(uint32(0xffffff00+160*i), at)
	}
	if j := e.get(); j > time.Millisecond {
		t.Fatalf("jitter %v after a pause and a wrap, want about 0", j)
	}
}

func TestQueueLimit(t *testing.T) {
	for _, tc := range []struct {
		base int
		j    time.Duration
		want int
	}{
		{2, 0, 2},
		{2, 5 * time.Millisecond, 2},
		{2, 20 * time.Millisecond, 4},
		{2, 25 * time.Millisecond, 5},
		{2, 500 * time.Millisecond, maxQueueCap},
		{12, time.Second, 12}, // a configured depth above the cap stands
	} {
		if got := queueLimit(tc.base, tc.j); got != tc.want {
			t.Errorf("queueLimit(%d, %v) = %d, want %d", tc.base, tc.j, got, tc.want)
		}
	}
}
