package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/pion/webrtc/v4"
)

// PeerOptions are per-call hooks. Callbacks run on pion goroutines: keep
// them short and never block.
type PeerOptions struct {
	// Logger carries the call's fields; nil uses the API logger.
	Logger *slog.Logger
	// OnState reports every peer connection state change.
	OnState func(webrtc.PeerConnectionState)
	// OnICEState reports every ICE connection state change.
	OnICEState func(webrtc.ICEConnectionState)
}

// Peer is the server side of one browser's media: one audio track each way.
type Peer struct {
	pc     *webrtc.PeerConnection
	track  *webrtc.TrackLocalStaticRTP
	law    Law
	log    *slog.Logger
	remote chan *webrtc.TrackRemote
	dead   chan struct{}

	deadOnce  sync.Once
	closeErr  error
	closeOnce sync.Once
}

// Answer creates a peer for a browser's offer and returns the answer SDP with
// the server's candidates in it (ICE-lite on a mux gathers at once). It
// fails with ErrNoAudio, ErrUnsupportedMedia or ErrInvalidSDP when the offer
// cannot be served.
func (a *API) Answer(ctx context.Context, offer string, o PeerOptions) (*Peer, string, error) {
	law, err := OfferedLaw(offer)
	if err != nil {
		return nil, "", err
	}
	p, err := a.newPeer(law, o)
	if err != nil {
		return nil, "", err
	}
	answer, err := p.answer(ctx, offer)
	if err != nil {
		_ = p.Close()
		return nil, "", err
	}
	return p, answer, nil
}

// Offer creates a peer for an incoming call in the given law and returns the
// offer SDP; complete it with SetAnswer when the browser accepts.
func (a *API) Offer(ctx context.Context, law Law, o PeerOptions) (*Peer, string, error) {
	if law != PCMU && law != PCMA {
		return nil, "", fmt.Errorf("offer in law %d: %w", law, ErrUnsupportedMedia)
	}
	p, err := a.newPeer(law, o)
	if err != nil {
		return nil, "", err
	}
	offer, err := p.offer(ctx)
	if err != nil {
		_ = p.Close()
		return nil, "", err
	}
	return p, offer, nil
}

func (a *API) newPeer(law Law, o PeerOptions) (*Peer, error) {
	log := o.Logger
	if log == nil {
		log = a.log
	}
	pc, err := a.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("create peer connection: %w", err)
	}
	track, err := webrtc.NewTrackLocalStaticRTP(law.Codec().RTPCodecCapability, "audio", "patchbay")
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("create %s track: %w", law, err)
	}
	p := &Peer{
		pc:     pc,
		track:  track,
		law:    law,
		log:    log.With("law", law.String()),
		remote: make(chan *webrtc.TrackRemote, 1),
		dead:   make(chan struct{}),
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if t.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		select {
		case p.remote <- t:
		default:
			p.log.Warn("extra remote audio track ignored", "ssrc", uint32(t.SSRC()))
		}
	})
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		p.log.Debug("ice state", "state", s.String())
		if o.OnICEState != nil {
			o.OnICEState(s)
		}
		if s == webrtc.ICEConnectionStateFailed || s == webrtc.ICEConnectionStateClosed {
			p.markDead()
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		p.log.Debug("peer state", "state", s.String())
		if o.OnState != nil {
			o.OnState(s)
		}
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			p.markDead()
		}
	})
	return p, nil
}

func (p *Peer) answer(ctx context.Context, offer string) (string, error) {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("apply browser offer: %w: %w", ErrInvalidSDP, err)
	}
	// AddTrack reuses the audio transceiver the offer created.
	if _, err := p.pc.AddTrack(p.track); err != nil {
		return "", fmt.Errorf("attach %s track: %w", p.law, err)
	}
	if err := p.preferLaw(); err != nil {
		return "", err
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("create answer: %w", err)
	}
	return p.setLocal(ctx, answer)
}

func (p *Peer) offer(ctx context.Context) (string, error) {
	if _, err := p.pc.AddTransceiverFromTrack(p.track, webrtc.RTPTransceiverInit{
		Direction: webrtc.RTPTransceiverDirectionSendrecv,
	}); err != nil {
		return "", fmt.Errorf("add %s transceiver: %w", p.law, err)
	}
	if err := p.preferLaw(); err != nil {
		return "", err
	}
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("create offer: %w", err)
	}
	return p.setLocal(ctx, offer)
}

// preferLaw narrows the audio transceiver to the chosen law so the browser
// sends exactly what the track carries.
func (p *Peer) preferLaw() error {
	for _, t := range p.pc.GetTransceivers() {
		if t.Sender() == nil || t.Sender().Track() != p.track {
			continue
		}
		if err := t.SetCodecPreferences([]webrtc.RTPCodecParameters{p.law.Codec()}); err != nil {
			return fmt.Errorf("restrict audio to %s: %w", p.law, err)
		}
		return nil
	}
	return errors.New("audio transceiver missing after attaching the local track")
}

func (p *Peer) setLocal(ctx context.Context, desc webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(desc); err != nil {
		return "", fmt.Errorf("set local %s: %w", desc.Type, err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("gather ICE candidates: %w", ctx.Err())
	}
	ld := p.pc.LocalDescription()
	if ld == nil {
		return "", errors.New("local description missing after gathering")
	}
	return ld.SDP, nil
}

// SetAnswer applies the browser's answer to an Offer peer.
func (p *Peer) SetAnswer(answer string) error {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("apply browser answer: %w: %w", ErrInvalidSDP, err)
	}
	return nil
}

// AddICECandidate adds a trickled browser candidate. An empty candidate
// string (end of candidates) is accepted and ignored.
func (p *Peer) AddICECandidate(c webrtc.ICECandidateInit) error {
	if c.Candidate == "" {
		return nil
	}
	if err := p.pc.AddICECandidate(c); err != nil {
		return fmt.Errorf("add browser ICE candidate: %w", err)
	}
	return nil
}

// Law is the negotiated G.711 law of both tracks.
func (p *Peer) Law() Law { return p.law }

// LocalTrack is the track toward the browser. Its SSRC stays fixed for the
// life of the peer whatever is written to it.
func (p *Peer) LocalTrack() *webrtc.TrackLocalStaticRTP { return p.track }

// RemoteTrack waits for the browser's audio track.
func (p *Peer) RemoteTrack(ctx context.Context) (*webrtc.TrackRemote, error) {
	select {
	case t := <-p.remote:
		return t, nil
	case <-p.dead:
		return nil, fmt.Errorf("wait for browser audio track: %w", ErrClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for browser audio track: %w", ctx.Err())
	}
}

// Done is closed when ICE or the peer connection fails or closes: the call
// owner ends the call then.
func (p *Peer) Done() <-chan struct{} { return p.dead }

// State is the current peer connection state.
func (p *Peer) State() webrtc.PeerConnectionState { return p.pc.ConnectionState() }

// Stats returns pion's stats report, for diagnostics.
func (p *Peer) Stats() webrtc.StatsReport { return p.pc.GetStats() }

func (p *Peer) markDead() { p.deadOnce.Do(func() { close(p.dead) }) }

// Close tears the peer down; safe to call more than once.
func (p *Peer) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = p.pc.Close()
		p.markDead()
	})
	return p.closeErr
}
