package relay

import (
	"sync/atomic"
	"time"
)

// Jitter and the Opus path's queue. chan_websocket plays what it is given one frame per 20 ms tick, so its queue is
// the jitter buffer of a browser's Opus audio into Asterisk, and WS.MaxQueue is its depth: frames beyond it are
// trimmed. Two frames (40 ms) keep the delay low on a good network, but a leg with 30 ms of jitter keeps
// overrunning it: a late frame leaves a tick empty (a hole in the mix), the frames behind it pile up, and the trim
// throws them away (another hole). Measured in TestRoomQualityImpairedLeg (loss 5 %, delay 40 ms ± 30 ms), the
// other participants heard the browser in 93–99 % of 100 ms windows with a fixed two frames (one phase in eight
// under 95 %), 96–99 % with this. So the depth follows the leg's jitter, measured as RFC 3550 §6.4.1 does from the
// browser's RTP timestamps: wide enough for three times the mean jitter (most of a uniform or normal spread), never
// below MaxQueue, never above maxQueueCap. A steady network keeps the two frames and their delay.

// maxQueueCap bounds the depth the jitter may ask for: 200 ms of 20 ms frames.
const maxQueueCap = 10

// jitterEstimator is RFC 3550's interarrival jitter of one RTP stream, in nanoseconds. update runs on the one
// goroutine that receives the stream; get may be called from any.
type jitterEstimator struct {
	clock   int64 // RTP clock rate, Hz
	started bool
	last    int64 // previous packet's transit time, ns
	lastTS  uint32
	j       atomic.Int64
}

func newJitterEstimator(clockRate int) *jitterEstimator {
	return &jitterEstimator{clock: int64(clockRate)}
}

// update takes one packet: its RTP timestamp and when it arrived.
func (e *jitterEstimator) update(ts uint32, at time.Time) {
	// Transit time up to a constant: arrival minus the timestamp in ns, on a timeline unwrapped around lastTS.
	if !e.started {
		e.started, e.lastTS = true, ts
		e.last = at.UnixNano()
		return
	}
	dts := int64(int32(ts - e.lastTS)) // signed: a reordered packet steps back
	e.lastTS = ts
	transit := at.UnixNano() - dts*int64(time.Second)/e.clock
	d := transit - e.last
	e.last = at.UnixNano()
	if d < 0 {
		d = -d
	}
	if d > int64(time.Second) { // a pause or a new talk spurt's timestamps, not jitter
		return
	}
	j := e.j.Load()
	e.j.Store(j + (d-j)/16)
}

// get is the current jitter estimate.
func (e *jitterEstimator) get() time.Duration { return time.Duration(e.j.Load()) }

// queueLimit is how many 20 ms frames Asterisk may hold for a leg whose jitter is j before the relay trims: enough
// for 3·j on top of the one frame being played, at least base and at most maxQueueCap.
func queueLimit(base int, j time.Duration) int {
	n := 1 + int((3*j+20*time.Millisecond-1)/(20*time.Millisecond))
	return min(max(n, base), max(base, maxQueueCap))
}
