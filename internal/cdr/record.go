// Package cdr is what Patchbay remembers about each call: one Record per ended (or refused) call, the Observer
// interface call control reports a call's life to, and the sinks records go to (JSON lines, a signed webhook, an
// in-memory ring behind GET /api/v1/calls). It also holds the one-way-audio detector call control feeds.
//
// It is a leaf: it imports only the standard library and wire, so call control, metrics and the API can all use
// it without pulling each other in.
package cdr

import (
	"slices"
	"time"

	"github.com/patchbay/patchbay/wire"
)

// Call directions: the label every metric and record carries. The set is closed so metric labels stay bounded.
const (
	DirBrowserOut = "browser_out" // a browser calls an extension
	DirPhoneIn    = "phone_in"    // a phone (or a DID) calls a browser user
	DirRoom       = "room"        // a browser in a room
	DirPhoneRoom  = "phone_room"  // a phone in a room
	DirPhonePSTN  = "phone_pstn"  // a softphone's outside call through Patchbay's number rules
	DirAPI        = "api"         // a call placed through POST /api/v1/calls
	DirTransfer   = "transfer"    // a party handed on by a browser's transfer, with its new party
	DirSupervise  = "supervise"   // a supervisor listening, whispering or barging into a call
)

// Directions lists every direction, for tests and for pre-creating metric series.
func Directions() []string {
	return []string{DirBrowserOut, DirPhoneIn, DirRoom, DirPhoneRoom, DirPhonePSTN, DirAPI, DirTransfer, DirSupervise}
}

// ValidDirection reports whether d is one of Directions; anything else is recorded as "other" by metrics.
func ValidDirection(d string) bool { return slices.Contains(Directions(), d) }

// MediaTotals counts one media direction of a call: packets and bytes forwarded, and packets the relay dropped.
type MediaTotals struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Drops   uint64 `json:"drops,omitempty"`
}

// MediaDelta is what one media direction forwarded since the last report (Observer.Media).
type MediaDelta = MediaTotals

// LegQuality is what RTCP receiver reports (and pion's stats) said about the browser leg.
type LegQuality struct {
	// Loss is the fraction of packets lost (0..1) as the browser reported it for what Patchbay sent.
	Loss float64 `json:"loss"`
	// JitterMS is the interarrival jitter in milliseconds.
	JitterMS float64 `json:"jitter_ms"`
	// RTTMS is the round-trip time in milliseconds; 0 when not measured.
	RTTMS float64 `json:"rtt_ms,omitempty"`
}

// Record is one call as it ended: one JSON object per line in the records file, the body of the records
// webhook and an item of GET /api/v1/calls. Field names are an interface: never rename one.
type Record struct {
	// ID is unique per record; CallID is Patchbay's call ID (the "call" field of its log lines); Instance names
	// the Patchbay that handled it.
	ID       string `json:"id"`
	CallID   string `json:"call_id"`
	Instance string `json:"instance,omitempty"`

	Direction string `json:"direction"`
	// From and To are the parties as dialled or presented (number, user or room).
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// User is the browser user (token subject) on the call, if any; Room the room of a room call.
	User string `json:"user,omitempty"`
	Room string `json:"room,omitempty"`
	// CallerID is the caller ID presented to the far end; Trunk the trunk of an outside call; APIKey the key that
	// placed an API call.
	CallerID string `json:"caller_id,omitempty"`
	Trunk    string `json:"trunk,omitempty"`
	APIKey   string `json:"api_key,omitempty"`

	// Times: the offer arrived (or the phone's call entered Patchbay), the answer was sent to the browser, the
	// browser's first media arrived, the far end answered, the call ended.
	OfferAt       time.Time `json:"offer_at,omitzero"`
	AnswerSentAt  time.Time `json:"answer_sent_at,omitzero"`
	FirstMediaAt  time.Time `json:"first_media_at,omitzero"`
	FarAnsweredAt time.Time `json:"far_answered_at,omitzero"`
	EndAt         time.Time `json:"end_at"`

	// Setup latencies from the offer, in milliseconds; absent when the step never happened. Finish fills them
	// from the times above.
	SetupAnswerMS      *float64 `json:"setup_answer_ms,omitempty"`
	SetupFirstMediaMS  *float64 `json:"setup_first_media_ms,omitempty"`
	SetupFarAnsweredMS *float64 `json:"setup_far_answered_ms,omitempty"`
	// DurationS is the talk time: from the far answer (for a browser in a room, the answer sent) to the end.
	DurationS float64 `json:"duration_s"`

	// Cause is the hangup cause (wire.Cause*) and Code its Q.850 number; Finish fills Code.
	Cause string `json:"cause,omitempty"`
	Code  int    `json:"code,omitempty"`
	// Refusal is the wire.Code* a call was refused with before it started; empty for calls that started.
	Refusal string `json:"refusal,omitempty"`

	// Codec is what the browser leg carried (e.g. "PCMU/8000").
	Codec string `json:"codec,omitempty"`
	// ToBrowser and ToAsterisk are the relay's counters for each direction.
	ToBrowser  MediaTotals `json:"to_browser"`
	ToAsterisk MediaTotals `json:"to_asterisk"`
	// Browser is the browser leg's loss, jitter and RTT when RTCP told us; nil when unknown.
	Browser *LegQuality `json:"browser,omitempty"`

	// Flags are quality findings: wire.QualityOneWayAudio, wire.QualityNoAudio, wire.QualityTranscoded.
	Flags []string `json:"flags,omitempty"`
	// OneWay, with the one_way_audio flag, names the silent direction (wire.ToBrowser or wire.ToAsterisk).
	OneWay string `json:"one_way,omitempty"`
}

// Flag adds a quality flag once.
func (r *Record) Flag(f string) {
	if !slices.Contains(r.Flags, f) {
		r.Flags = append(r.Flags, f)
	}
}

// Has reports whether the record carries flag f.
func (r *Record) Has(f string) bool { return slices.Contains(r.Flags, f) }

// Refused reports whether the call was refused before it started.
func (r *Record) Refused() bool { return r.Refusal != "" }

// Finish fills what follows from the rest: Code from Cause, EndAt (now, if unset), the setup latencies, the talk
// time, and the no_audio flag of an answered call whose media never flowed either way. Call it once, just before
// Observer.CallEnded (the Recorder calls it again harmlessly).
func (r *Record) Finish(now time.Time) {
	if r.EndAt.IsZero() {
		r.EndAt = now
	}
	if r.Cause != "" && r.Code == 0 {
		r.Code = wire.CauseCode(r.Cause)
	}
	ms := func(t time.Time) *float64 {
		if t.IsZero() || r.OfferAt.IsZero() || t.Before(r.OfferAt) {
			return nil
		}
		v := float64(t.Sub(r.OfferAt).Microseconds()) / 1000
		return &v
	}
	r.SetupAnswerMS = ms(r.AnswerSentAt)
	r.SetupFirstMediaMS = ms(r.FirstMediaAt)
	r.SetupFarAnsweredMS = ms(r.FarAnsweredAt)
	talkFrom := r.FarAnsweredAt
	if talkFrom.IsZero() && r.Direction == DirRoom {
		talkFrom = r.AnswerSentAt // a browser in a room talks from its answer: there is no far end
	}
	r.DurationS = 0
	if !talkFrom.IsZero() && r.EndAt.After(talkFrom) {
		r.DurationS = r.EndAt.Sub(talkFrom).Round(time.Millisecond).Seconds()
	}
	if !r.Refused() && !r.FarAnsweredAt.IsZero() && r.ToBrowser.Packets == 0 && r.ToAsterisk.Packets == 0 {
		r.Flag(wire.QualityNoAudio)
	}
}

// Observer is told about each call's life by call control. Every method must return at once (no I/O, no lock
// held for long): call control calls them from a call's own goroutine. All methods are safe for concurrent use.
type Observer interface {
	// CallStarted: a call was admitted (routed, allowed, within limits) and call control now owns resources for
	// it. Exactly one CallEnded follows.
	CallStarted(direction string)
	// CallRefused: a call was refused before it started (bad number, not allowed, over a limit, no capacity, an
	// SDP Patchbay cannot carry); code is the wire.Code* the caller was given. It is reported instead of
	// CallStarted, and one CallEnded with Record.Refusal set follows.
	CallRefused(direction, code string)
	// CallEnded: the call is over and r is its record (call r.Finish first). Exactly once per started or
	// refused call.
	CallEnded(r Record)
	// Media: what the call's relay forwarded since the last report, each way; about once a second while the
	// call runs, and once more at its end with the remainder.
	Media(direction string, toBrowser, toAsterisk MediaDelta)
	// Quality: a quality issue (wire.QualityOneWayAudio, wire.QualityNoAudio) was detected, with the direction
	// that is silent (wire.ToBrowser or wire.ToAsterisk). Reported once per issue and call.
	Quality(direction, issue, towards string)
}

// Nop is an Observer that does nothing: what call control uses when nothing observes it.
type Nop struct{}

func (Nop) CallStarted(string)                   {}
func (Nop) CallRefused(string, string)           {}
func (Nop) CallEnded(Record)                     {}
func (Nop) Media(string, MediaDelta, MediaDelta) {}
func (Nop) Quality(string, string, string)       {}
func (Nop) String() string                       { return "cdr.Nop" }
func (f fanout) String() string                  { return "cdr.Fanout" }
func (f fanout) CallStarted(d string)            { f.each(func(o Observer) { o.CallStarted(d) }) }
func (f fanout) CallRefused(d, code string)      { f.each(func(o Observer) { o.CallRefused(d, code) }) }
func (f fanout) CallEnded(r Record)              { f.each(func(o Observer) { o.CallEnded(r) }) }
func (f fanout) Quality(d, issue, towards string) {
	f.each(func(o Observer) { o.Quality(d, issue, towards) })
}
func (f fanout) Media(d string, tb, ta MediaDelta) { f.each(func(o Observer) { o.Media(d, tb, ta) }) }
func (f fanout) each(fn func(Observer)) {
	for _, o := range f {
		fn(o)
	}
}

type fanout []Observer

// Fanout returns an Observer that tells each of obs in turn (nil ones are left out): metrics and records both
// hear every call. With none it returns Nop.
func Fanout(obs ...Observer) Observer {
	var f fanout
	for _, o := range obs {
		if o != nil {
			f = append(f, o)
		}
	}
	switch len(f) {
	case 0:
		return Nop{}
	case 1:
		return f[0]
	}
	return f
}
