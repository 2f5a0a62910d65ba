package synth

import (
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/thesyncim/gopus"

	"github.com/patchbay/patchbay/tools/audio"
)

// Opus for the synthetic caller, with gopus (pure Go, so `patchbay bench` needs no libopus). Encoding per call
// would make the load generator the bottleneck of a bench, so each tone is encoded once per Engine: opusLoop
// seconds of 20 ms frames, sent in a loop. Opus frames cannot carry the sequence stamp G.711 frames do (any bit
// changed corrupts the stream), so an echoed frame is recognised by its hash: distinct frames of the loop map to
// their index, and a call remembers when it last sent each index.

const (
	opusRate    = 48000
	opusFrame   = 960 // 20 ms at 48 kHz
	opusLoop    = 10  // seconds of tone encoded
	opusFrames  = opusLoop * 50
	opusMaxSize = 1275 // RFC 6716: the largest frame
)

// opusTone is a tone encoded as a loop of Opus frames.
type opusTone struct {
	frames [][]byte
	index  map[uint64]int // hash of a frame → its index, for frames that are unique in the loop
	// Lookahead is the encoder's algorithmic delay in samples at 48 kHz (its share of mouth-to-ear delay).
	lookahead int
}

type opusKey struct{ hz, amp float64 }

type opusCache struct {
	mu sync.Mutex
	m  map[opusKey]*opusTone
}

// opus returns the tone encoded in Opus, encoding it on first use.
func (e *Engine) opus(hz, amp float64) (*opusTone, error) {
	e.opusTones.mu.Lock()
	defer e.opusTones.mu.Unlock()
	if e.opusTones.m == nil {
		e.opusTones.m = map[opusKey]*opusTone{}
	}
	k := opusKey{hz, amp}
	if t := e.opusTones.m[k]; t != nil {
		return t, nil
	}
	t, err := encodeOpusTone(hz, amp)
	if err != nil {
		return nil, err
	}
	e.opusTones.m[k] = t
	return t, nil
}

func encodeOpusTone(hz, amp float64) (*opusTone, error) {
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: opusRate, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		return nil, fmt.Errorf("synth: Opus encoder: %w", err)
	}
	// As a browser sends: in-band FEC on, DTX off.
	if err := enc.SetInBandFEC(1); err != nil {
		return nil, fmt.Errorf("synth: Opus FEC: %w", err)
	}
	enc.SetDTX(false)
	if err := enc.SetBitrate(32000); err != nil { // what browsers send for mono voice
		return nil, fmt.Errorf("synth: Opus bitrate: %w", err)
	}
	pcm := audio.Sine(hz, opusRate, opusLoop*oneSecond, amp)
	// A whole number of a tone's cycles fits in a frame for most test tones (1 kHz: 20), so frame after frame
	// would encode the same. Faint noise (-54 dBFS) makes each frame of the loop its own, so echoes can be told
	// apart, and leaves the tone's share of the energy intact.
	rng := rand.New(rand.NewPCG(uint64(hz), uint64(amp*1e6)))
	for i := range pcm {
		pcm[i] = int16(max(min(int(pcm[i])+rng.IntN(129)-64, 32767), -32768))
	}
	t := &opusTone{index: map[uint64]int{}, lookahead: enc.Lookahead()}
	buf := make([]byte, opusMaxSize)
	seen := map[uint64]int{}
	for i := range opusFrames {
		n, err := enc.EncodeInt16(pcm[i*opusFrame:(i+1)*opusFrame], buf)
		if err != nil {
			return nil, fmt.Errorf("synth: encode Opus frame %d: %w", i, err)
		}
		f := append([]byte(nil), buf[:n]...)
		t.frames = append(t.frames, f)
		seen[hash64(f)]++
		t.index[hash64(f)] = i
	}
	for h, n := range seen {
		if n > 1 {
			delete(t.index, h) // ambiguous: never matched as an echo
		}
	}
	return t, nil
}

// opusDecoder turns what a call hears back into PCM at 48 kHz.
type opusDecoder struct {
	dec *gopus.Decoder
	out []int16
}

func newOpusDecoder() (*opusDecoder, error) {
	d, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(opusRate, 1))
	if err != nil {
		return nil, fmt.Errorf("synth: Opus decoder: %w", err)
	}
	return &opusDecoder{dec: d, out: make([]int16, 6*opusFrame)}, nil
}

// decodeInto appends the samples of one packet to dst; a packet that does not decode adds nothing.
func (d *opusDecoder) decodeInto(dst []int16, p []byte) []int16 {
	n, err := d.dec.DecodeInt16(p, d.out)
	if err != nil || n <= 0 {
		return dst
	}
	return append(dst, d.out[:n]...)
}
