package cdr

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// Sink takes finished records. Put must not block: a sink that does I/O queues and drops (counting) when full.
type Sink interface {
	Put(r Record)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Record)

// Put implements Sink.
func (f SinkFunc) Put(r Record) { f(r) }

// Recorder is the Observer that keeps records: it finishes each ended call's record (ID, instance, derived
// fields), keeps the most recent ones in memory for GET /api/v1/calls and hands each to its sinks (the JSON-lines
// writer, the webhook). The counting methods do nothing: metrics count.
type Recorder struct {
	instance string
	sinks    []Sink
	now      func() time.Time

	mu   sync.Mutex
	ring []Record // circular, oldest at next when full
	next int
	full bool
}

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	// Instance names this Patchbay in every record (e.g. the host name).
	Instance string
	// Keep is how many recent records stay in memory for the API (0: none).
	Keep int
	// Sinks receive every record, in order.
	Sinks []Sink
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewRecorder returns a Recorder.
func NewRecorder(o RecorderOptions) *Recorder {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Recorder{instance: o.Instance, sinks: o.Sinks, now: o.Now, ring: make([]Record, max(o.Keep, 0))}
}

func (*Recorder) CallStarted(string)                   {}
func (*Recorder) CallRefused(string, string)           {}
func (*Recorder) Media(string, MediaDelta, MediaDelta) {}
func (*Recorder) Quality(string, string, string)       {}

// CallEnded finishes r, keeps it and passes it to the sinks.
func (rc *Recorder) CallEnded(r Record) {
	if rc == nil {
		return
	}
	if r.ID == "" {
		r.ID = newID()
	}
	if r.Instance == "" {
		r.Instance = rc.instance
	}
	r.Finish(rc.now())
	if len(rc.ring) > 0 {
		rc.mu.Lock()
		rc.ring[rc.next] = r
		rc.next = (rc.next + 1) % len(rc.ring)
		if rc.next == 0 {
			rc.full = true
		}
		rc.mu.Unlock()
	}
	for _, s := range rc.sinks {
		s.Put(r)
	}
}

// Since returns the kept records that ended at or after t, oldest first, at most limit of them (the newest
// ones; limit ≤ 0 means all).
func (rc *Recorder) Since(t time.Time, limit int) []Record {
	if rc == nil {
		return nil
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []Record
	n := rc.next
	if rc.full {
		n = len(rc.ring)
	}
	start := 0
	if rc.full {
		start = rc.next
	}
	for i := range n {
		r := rc.ring[(start+i)%len(rc.ring)]
		if !r.EndAt.Before(t) {
			out = append(out, r)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// Kept is how many records the ring holds at most.
func (rc *Recorder) Kept() int {
	if rc == nil {
		return 0
	}
	return len(rc.ring)
}

func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "rec-" + hex.EncodeToString(b[:])
}
