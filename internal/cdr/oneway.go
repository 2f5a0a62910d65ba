package cdr

import (
	"slices"
	"time"

	"github.com/patchbay/patchbay/wire"
)

// DefaultOneWayThreshold is how long one direction may be silent while the other flows before it is reported.
const DefaultOneWayThreshold = 4 * time.Second

// BothDirections is the "towards" of a no_audio finding: neither direction flows.
const BothDirections = "both"

// Hints name the likely cause of a silent direction, for the log line call control writes with a finding.
const (
	HintNoRTPFromAsterisk = "no RTP from Asterisk toward the browser: Asterisk's externalMedia channel sends to " +
		"media.relay_host (the external_host Patchbay gives it); check that Asterisk can reach that address, that " +
		"Asterisk's RTP range (asterisk.rtp_start..rtp_end) is usable on this host, and that the far party sends media"
	HintNoRTPFromBrowser = "no RTP from the browser: its media does not reach Patchbay (ICE/NAT); check that " +
		"media.public_ips holds the address browsers can reach, that UDP media.ice_port is open from their network, " +
		"or give browsers a TURN server in media.ice_servers"
	HintNoRTPEitherWay = "no RTP in either direction: the browser's media does not reach Patchbay (ICE/NAT: " +
		"media.public_ips, media.ice_port, TURN) and Asterisk sends nothing back (external_host, RTP range)"
)

// Finding is one quality issue the detector found.
type Finding struct {
	Issue   string // wire.QualityOneWayAudio or wire.QualityNoAudio
	Towards string // the silent direction: wire.ToBrowser, wire.ToAsterisk, or BothDirections
	Hint    string // what to check, for the log line
}

// OneWayDetector watches a call's packet counters for one-way or no audio. It is a plain value owned by one
// goroutine (the call's): feed it the relay's cumulative packet counts about once a second with Observe. A
// direction is silent when its counter has not moved for Threshold; one silent direction while the other moved
// within Threshold is one-way audio, both silent is no audio. Each (issue, direction) is reported once per call.
// Start it when the call is answered: before that, a ringing far end legitimately sends nothing.
type OneWayDetector struct {
	threshold time.Duration
	// per direction: the last count seen and when it last moved
	lastB, lastA   uint64
	movedB, movedA time.Time
	reported       []Finding // in the order found
}

// NewOneWayDetector starts watching at now (both directions count as flowing then). threshold ≤ 0 means
// DefaultOneWayThreshold.
func NewOneWayDetector(threshold time.Duration, now time.Time) *OneWayDetector {
	if threshold <= 0 {
		threshold = DefaultOneWayThreshold
	}
	return &OneWayDetector{threshold: threshold, movedB: now, movedA: now}
}

// Threshold is how long a direction may be silent.
func (d *OneWayDetector) Threshold() time.Duration { return d.threshold }

// Observe takes the cumulative packets forwarded toward the browser and toward Asterisk at now, and returns a
// finding not reported before, if any.
func (d *OneWayDetector) Observe(now time.Time, toBrowser, toAsterisk uint64) (Finding, bool) {
	if toBrowser != d.lastB {
		d.lastB, d.movedB = toBrowser, now
	}
	if toAsterisk != d.lastA {
		d.lastA, d.movedA = toAsterisk, now
	}
	silentB := now.Sub(d.movedB) >= d.threshold
	silentA := now.Sub(d.movedA) >= d.threshold
	var f Finding
	switch {
	case silentB && silentA:
		f = Finding{Issue: wire.QualityNoAudio, Towards: BothDirections, Hint: HintNoRTPEitherWay}
	case silentB:
		f = Finding{Issue: wire.QualityOneWayAudio, Towards: wire.ToBrowser, Hint: HintNoRTPFromAsterisk}
	case silentA:
		f = Finding{Issue: wire.QualityOneWayAudio, Towards: wire.ToAsterisk, Hint: HintNoRTPFromBrowser}
	default:
		return Finding{}, false
	}
	if slices.Contains(d.reported, f) {
		return Finding{}, false
	}
	d.reported = append(d.reported, f)
	return f, true
}

// Flag marks r with what the detector found over the call: the first one-way finding names r.OneWay.
func (d *OneWayDetector) Flag(r *Record) {
	for _, f := range d.reported {
		r.Flag(f.Issue)
		if f.Issue == wire.QualityOneWayAudio && r.OneWay == "" {
			r.OneWay = f.Towards
		}
	}
}
