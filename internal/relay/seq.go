package relay

import "time"

// seqMap keeps the browser-bound stream continuous while its sources change:
// Asterisk's SSRC may change, and Inject interleaves its own packets. Each
// switch re-bases sequence numbers right after the last one sent and
// advances the timestamp by the wall time elapsed, so the browser sees one
// stream with honest timing.
type seqMap struct {
	started   bool
	src       uint32 // current upstream SSRC
	injecting bool   // last packet came from Inject
	seqOff    uint16
	tsOff     uint32
	lastSeq   uint16
	lastTS    uint32
	lastLen   int
	lastAt    time.Time
}

const samplesPerSecond = 8000 // G.711

func (m *seqMap) nextTS(now time.Time) uint32 {
	adv := uint32(now.Sub(m.lastAt) * samplesPerSecond / time.Second)
	if adv < uint32(m.lastLen) {
		adv = uint32(m.lastLen)
	}
	return m.lastTS + adv
}

// forward maps an upstream packet to outgoing sequence number, timestamp and
// marker.
func (m *seqMap) forward(h header, now time.Time) (uint16, uint32, bool) {
	marker := h.marker
	switch {
	case !m.started:
		m.started = true
		m.src = h.ssrc
	case m.injecting || h.ssrc != m.src:
		m.seqOff = m.lastSeq + 1 - h.seq
		m.tsOff = m.nextTS(now) - h.ts
		m.src = h.ssrc
		m.injecting = false
		marker = true
	}
	m.lastSeq = h.seq + m.seqOff
	m.lastTS = h.ts + m.tsOff
	m.lastLen = h.end - h.start
	m.lastAt = now
	return m.lastSeq, m.lastTS, marker
}

// inject allocates the next sequence number and timestamp for a payload of
// n samples that did not come from upstream.
func (m *seqMap) inject(n int, now time.Time) (uint16, uint32, bool) {
	marker := false
	if !m.started {
		m.started = true
		marker = true
	} else {
		m.lastSeq++
		m.lastTS = m.nextTS(now)
		marker = !m.injecting
	}
	m.injecting = true
	m.lastLen = n
	m.lastAt = now
	return m.lastSeq, m.lastTS, marker
}
