package synth

import (
	"slices"
	"time"

	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// Event is a signalling message from the far end, with when it arrived
// (since the offer was sent, or since "incoming" arrived for answered calls).
type Event struct {
	Type   string        `json:"type"`
	At     time.Duration `json:"at"`
	Cause  string        `json:"cause,omitempty"`
	Code   int           `json:"code,omitempty"`
	Digits string        `json:"digits,omitempty"`
	Error  string        `json:"error,omitempty"`
	// Rooms: the room, the event ("joined", "left", "updated", "ended") and who it is about; Participants is the
	// room's membership in "joined".
	Room         string               `json:"room,omitempty"`
	RoomEvent    string               `json:"room_event,omitempty"`
	Participant  *signal.Participant  `json:"participant,omitempty"`
	Participants []signal.Participant `json:"participants,omitempty"`
	// Quality: the issue and the silent direction of a "quality" message.
	Issue     string `json:"issue,omitempty"`
	Direction string `json:"direction,omitempty"`
	// Contact center: who held or transferred ("held", "resumed", "transferred"), to whom, a "recording" event.
	By string `json:"by,omitempty"`
	To string `json:"to,omitempty"`
	// Redirect: the node holding the room, and a fresh ticket to join it with there (docs/cluster.md).
	URL    string `json:"url,omitempty"`
	Ticket string `json:"ticket,omitempty"`
}

// RTTSummary condenses the echo round-trip times of one call.
type RTTSummary struct {
	Count                   int
	Min, P50, P95, P99, Max time.Duration
}

// Summarize computes RTT percentiles (nearest rank); bench uses it across calls.
func Summarize(rtts []time.Duration) RTTSummary {
	if len(rtts) == 0 {
		return RTTSummary{}
	}
	s := slices.Clone(rtts)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s)) + 0.5)
		if i < 1 {
			i = 1
		}
		return s[min(i, len(s))-1]
	}
	return RTTSummary{Count: len(s), Min: s[0], P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: s[len(s)-1]}
}

// Report is what one synthetic call measured. Durations ending in After are
// measured from the offer being sent (outgoing) or "incoming" arriving
// (incoming); zero means it never happened.
type Report struct {
	CallID   string
	Incoming bool
	Law      media.Law
	Start    time.Time

	AnswerAfter      time.Duration // outgoing: "answer" with SDP received
	ConnectedAfter   time.Duration // peer connection connected
	FirstPacketAfter time.Duration // first RTP packet heard
	FirstEchoAfter   time.Duration // first packet recognised as our own echo

	Events []Event

	Sent, Received uint64
	// Lost is expected minus received by sequence number; Loss the fraction.
	Lost int64
	Loss float64

	// RTTs of echoed frames, in arrival order; RTT summarises them.
	RTTs []time.Duration
	// EchoAt is when each echo of RTTs arrived, from Start: a window of the run keeps the RTTs that arrived in it.
	EchoAt []time.Duration
	// NotEchoed are the send times of frames whose echo never came (G.711 calls; at most 4096), so that a loss
	// can be placed in time: at setup, in a steady window, at hang-up (the last frame is usually in flight).
	NotEchoed []time.Time
	RTT       RTTSummary

	// HeardHz is the tone looked for in what was heard; Heard the result.
	HeardHz float64
	Heard   audio.Report
	// Audio is the decoded audio heard (up to CallOptions.RecordMax), at AudioRate samples a second (8000 for
	// G.711, 48000 for Opus).
	Audio     []int16
	AudioRate int
	// Lookahead is the Opus encoder's algorithmic delay of an Opus call (what the codec adds to mouth-to-ear delay
	// beyond the 20 ms frame G.711 has too); zero for G.711.
	Lookahead time.Duration

	// Gaps are the silences in what was heard, each at least GapThreshold long (no packet at all).
	Gaps []Gap

	// HungUpBy is "local" or "remote"; Cause/Code are the far end's when remote.
	HungUpBy string
	Cause    string
	Code     int
	Duration time.Duration // start to end
}

// GapThreshold is the shortest silence counted as a gap: 5 packets of 20 ms missing in a row.
const GapThreshold = 120 * time.Millisecond

// Gap is a stretch without any packet from the far end.
type Gap struct {
	At     time.Duration // since the call started
	Length time.Duration
}

// MaxGap is the longest gap, or 0.
func (r *Report) MaxGap() time.Duration {
	var m time.Duration
	for _, g := range r.Gaps {
		m = max(m, g.Length)
	}
	return m
}

// Event returns the first far-end event of the given type.
func (r *Report) Event(typ string) (Event, bool) {
	for _, e := range r.Events {
		if e.Type == typ {
			return e, true
		}
	}
	return Event{}, false
}
