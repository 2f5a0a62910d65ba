package synth

import (
	"testing"

	"github.com/patchbay/patchbay/tools/audio"
)

// TestOpusToneLoop: every frame of an encoded tone is its own (so an echo is matched to its send time), and the
// frames decode back to the tone, 6 kHz included (beyond G.711's band).
func TestOpusToneLoop(t *testing.T) {
	for _, hz := range []float64{1000, 6000} {
		tn, err := encodeOpusTone(hz, 0.3)
		if err != nil {
			t.Fatal(err)
		}
		if len(tn.frames) != opusFrames || len(tn.index) < opusFrames*99/100 {
			t.Fatalf("%v Hz: %d frames, %d told apart", hz, len(tn.frames), len(tn.index))
		}
		d, err := newOpusDecoder()
		if err != nil {
			t.Fatal(err)
		}
		var pcm []int16
		for _, f := range tn.frames[:100] {
			pcm = d.decodeInto(pcm, f)
		}
		if r := audio.Detect(pcm, opusRate, hz); !r.Detected(15) {
			t.Errorf("%v Hz: decoded frames do not carry the tone: %+v", hz, r)
		}
		if tn.lookahead <= 0 || tn.lookahead > opusFrame {
			t.Errorf("lookahead %d samples", tn.lookahead)
		}
	}
}
