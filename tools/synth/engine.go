// Package synth is a synthetic WebRTC caller built on pion: it speaks
// Patchbay's signalling like a browser, plays a paced G.711 tone, records and
// analyses what it hears, and reports setup times, loss and echo RTT. It is
// used by `patchbay call`, `patchbay bench` and the tests. Many calls share
// one Engine; each call owns its own few goroutines.
package synth

import (
	"context"
	"fmt"
	"net"

	"github.com/pion/interceptor"
	"github.com/pion/transport/v4"
	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// Signaller is the part of *signal.Conn a call uses. One call at a time per
// Signaller: the call consumes every message it receives.
type Signaller interface {
	Send(ctx context.Context, m signal.Message) error
	Recv(ctx context.Context) (signal.Message, error)
}

// EngineOptions configure the shared pion API of the synthetic callers.
type EngineOptions struct {
	// IncludeLoopback gathers 127.0.0.0/8 candidates (loopback-only hosts).
	IncludeLoopback bool
	// LoopbackOnly restricts gathering to the loopback interface, which keeps
	// hundreds of calls on one host cheap.
	LoopbackOnly bool
	// PortMin/PortMax bound the ephemeral UDP ports; 0 lets the OS choose.
	PortMin, PortMax uint16
	// ICEServers are used by every call (STUN/TURN), as a browser would use
	// the servers handed out in "authed".
	ICEServers []webrtc.ICEServer
	// NetworkTypes overrides UDP4 (e.g. TCP4 only: a network that blocks UDP, using ICE-TCP).
	NetworkTypes []webrtc.NetworkType
	// RelayOnly uses only TURN relay candidates (iceTransportPolicy "relay").
	RelayOnly bool
	// Net, when set, is the network the calls gather candidates on and send from (a test's namespace, whose link
	// it impairs: testenv.NetNS.PionNet); nil is the host's.
	Net transport.Net
}

// Engine is one pion API shared by many synthetic calls.
type Engine struct {
	api        *webrtc.API
	iceServers []webrtc.ICEServer
	relayOnly  bool
	tones      toneCache
	opusTones  opusCache
}

// NewEngine builds the shared API: Opus, PCMU and PCMA (each call offers what its options say), full ICE, no
// interceptors (a browser would run some; we measure Patchbay, not them).
func NewEngine(o EngineOptions) (*Engine, error) {
	me := &webrtc.MediaEngine{}
	for _, law := range []media.Codec{media.Opus, media.PCMU, media.PCMA} {
		if err := me.RegisterCodec(law.Codec(), webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("register %s: %w", law, err)
		}
	}
	se := webrtc.SettingEngine{}
	nets := o.NetworkTypes
	if len(nets) == 0 {
		nets = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	}
	se.SetNetworkTypes(nets)
	if o.Net != nil {
		se.SetNet(o.Net)
	}
	se.SetIncludeLoopbackCandidate(o.IncludeLoopback || o.LoopbackOnly)
	if o.LoopbackOnly {
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	if o.PortMin != 0 || o.PortMax != 0 {
		if err := se.SetEphemeralUDPPortRange(o.PortMin, o.PortMax); err != nil {
			return nil, fmt.Errorf("synth UDP port range %d-%d: %w", o.PortMin, o.PortMax, err)
		}
	}
	return &Engine{
		api: webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se),
			webrtc.WithInterceptorRegistry(&interceptor.Registry{})),
		iceServers: o.ICEServers,
		relayOnly:  o.RelayOnly,
	}, nil
}

// tone returns one second of the tone, μ-law or A-law encoded; an integral
// number of cycles for integer frequencies, so it loops without a click.
func (e *Engine) tone(law media.Law, hz, amp float64) []byte {
	return e.tones.get(law, hz, amp, func() []byte {
		pcm := audio.Sine(hz, sampleRate, oneSecond, amp)
		out := make([]byte, len(pcm))
		for i, s := range pcm {
			out[i] = encode(law, s)
		}
		return out
	})
}

// *signal.Conn is the Signaller used outside tests.
var _ Signaller = (*signal.Conn)(nil)
