package synth

import (
	"sync"
	"time"

	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/webrtc/media"
)

const (
	sampleRate    = 8000
	frameSamples  = 160 // 20 ms of G.711: one byte per sample
	frameInterval = 20 * time.Millisecond
	oneSecond     = time.Second
	// stampBits low bits of the first payload bytes carry the frame counter,
	// so every payload is unique and an echo can be matched to its send time.
	stampBits = 24
	ringSize  = 1024 // send times kept: 20 s of frames
)

func encode(law media.Law, s int16) byte {
	if law == media.PCMA {
		return audio.AlawEncode(s)
	}
	return audio.MulawEncode(s)
}

func decodeInto(dst []int16, law media.Law, payload []byte) []int16 {
	if law == media.PCMA {
		return audio.DecodeAlaw(dst, payload)
	}
	return audio.DecodeMulaw(dst, payload)
}

type toneKey struct {
	law     media.Law
	hz, amp float64
}

// toneCache shares the encoded second of tone between calls of an Engine.
type toneCache struct {
	mu sync.Mutex
	m  map[toneKey][]byte
}

func (c *toneCache) get(law media.Law, hz, amp float64, make func() []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[toneKey][]byte{}
	}
	k := toneKey{law, hz, amp}
	if b, ok := c.m[k]; ok {
		return b
	}
	b := make()
	c.m[k] = b
	return b
}

// stamp writes counter n into the least significant bits of the first
// stampBits bytes: at most one quantisation step of noise per sample.
func stamp(p []byte, n uint32) {
	for i := range stampBits {
		p[i] = p[i]&^1 | byte(n>>i)&1
	}
}

// unstamp reads back what stamp wrote.
func unstamp(p []byte) uint32 {
	var n uint32
	for i := range stampBits {
		n |= uint32(p[i]&1) << i
	}
	return n
}

// hash64 is FNV-1a over the payload, inline so it never allocates.
func hash64(p []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range p {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return h
}

// sendRing remembers the send time of recent frames by payload hash.
type sendRing struct {
	mu    sync.Mutex
	slots [ringSize]struct {
		hash uint64
		at   time.Time
	}
	// lost: send times of frames whose slot came round again before their echo did (lost, or later than the
	// ring's 20 s), the first maxLostKept of them.
	lost []time.Time
}

// maxLostKept bounds the send times a call keeps of frames never echoed.
const maxLostKept = 4096

func (r *sendRing) put(n uint32, p []byte, at time.Time) {
	h := hash64(p)
	r.mu.Lock()
	s := &r.slots[n%ringSize]
	if !s.at.IsZero() && len(r.lost) < maxLostKept {
		r.lost = append(r.lost, s.at)
	}
	s.hash, s.at = h, at
	r.mu.Unlock()
}

// notEchoed returns the send times of the frames not echoed so far: those given up on and those still awaited (in
// flight, or lost), in send order as far as the ring keeps it.
func (r *sendRing) notEchoed() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]time.Time(nil), r.lost...)
	for i := range r.slots {
		if at := r.slots[i].at; !at.IsZero() && len(out) < maxLostKept {
			out = append(out, at)
		}
	}
	return out
}

// awaited counts the frames in the ring still waiting for their echo (in flight, or lost).
func (r *sendRing) awaited() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for i := range r.slots {
		if !r.slots[i].at.IsZero() {
			n++
		}
	}
	return n
}

// match returns the send time of an echoed payload, once.
func (r *sendRing) match(p []byte) (time.Time, bool) {
	if len(p) < stampBits {
		return time.Time{}, false
	}
	h := hash64(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.slots[unstamp(p)%ringSize]
	if s.hash != h || s.at.IsZero() {
		return time.Time{}, false
	}
	at := s.at
	s.at = time.Time{}
	return at, true
}
