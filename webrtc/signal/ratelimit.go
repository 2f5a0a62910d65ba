package signal

import "time"

// RateLimit is the per-connection token bucket. Messages over the limit are
// dropped with one rate_limited error; a connection that keeps sending while
// limited (MaxDropped drops in a row) is closed.
type RateLimit struct {
	PerSecond  float64 // refill rate; default 20
	Burst      int     // bucket size; default 40 (an ICE trickle burst fits)
	MaxDropped int     // consecutive drops before the connection is closed; default 50
}

func (r RateLimit) withDefaults() RateLimit {
	if r.PerSecond <= 0 {
		r.PerSecond = 20
	}
	if r.Burst <= 0 {
		r.Burst = 40
	}
	if r.MaxDropped <= 0 {
		r.MaxDropped = 50
	}
	return r
}

// bucket is owned by one connection's reader goroutine, so it needs no lock.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(r RateLimit, now time.Time) *bucket {
	return &bucket{rate: r.PerSecond, burst: float64(r.Burst), tokens: float64(r.Burst), last: now}
}

func (b *bucket) allow(now time.Time) bool {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(b.burst, b.tokens+el*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
