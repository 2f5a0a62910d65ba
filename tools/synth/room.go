package synth

import (
	"context"
	"math"

	"github.com/patchbay/patchbay/webrtc/signal"
)

// JoinOptions say which room to join: exactly one of Room, Number (agents) or Ticket.
type JoinOptions struct {
	Room, Number, Ticket string
}

// Join joins a room through sig like a browser ({"type":"join",...} with an offer) and runs the membership to the
// end as Call does: it plays o.ToneHz and records what the room sends. Room events ("joined", "room") are in the
// report's Events.
func (e *Engine) Join(ctx context.Context, sig Signaller, j JoinOptions, o CallOptions) (*Report, error) {
	return e.offerAndRun(ctx, sig, o, "join", func(c *call, sdp string) signal.Message {
		return signal.Message{Type: signal.TypeJoin, CallID: c.o.CallID, Room: j.Room, Number: j.Number, Ticket: j.Ticket, SDP: sdp}
	})
}

// ToneShare is the mean share of energy at hz over the voiced 100 ms windows of pcm (8 kHz): about 1 for a lone
// tone, about 1/n for one of n equal tones mixed, about 0 when hz is absent. Voiced is how many windows counted.
func ToneShare(pcm []int16, hz float64) (share float64, voiced int) {
	return ToneShareAt(pcm, sampleRate, hz)
}

// ToneShareAt is ToneShare for pcm at rate samples a second (Report.AudioRate).
func ToneShareAt(pcm []int16, rate int, hz float64) (share float64, voiced int) {
	win := rate / 10
	var sum float64
	for start := 0; start+win <= len(pcm); start += win {
		w := pcm[start : start+win]
		var energy float64
		for _, v := range w {
			energy += float64(v) * float64(v)
		}
		if math.Sqrt(energy/float64(win)) < 100 {
			continue
		}
		coeff := 2 * math.Cos(2*math.Pi*hz/float64(rate))
		var s1, s2 float64
		for _, v := range w {
			s0 := float64(v) + coeff*s1 - s2
			s2, s1 = s1, s0
		}
		power := s1*s1 + s2*s2 - coeff*s1*s2
		sum += min(2*power/(float64(win)*energy), 1)
		voiced++
	}
	if voiced == 0 {
		return 0, 0
	}
	return sum / float64(voiced), voiced
}
