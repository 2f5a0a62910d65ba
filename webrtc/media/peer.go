package media

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
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
	// Wideband: the far end of the call carries wideband audio (another browser, a room of browsers), so Answer
	// prefers Opus; otherwise it prefers the offer's G.711 law and takes Opus only from an offer without G.711.
	// See ChooseCodec.
	Wideband bool
}

// Peer is the server side of one browser's media: one audio track each way
// and, in rooms with video enabled, the browser's camera plus any video the
// SFU forwards to it (see AddTrack and Renegotiate).
type Peer struct {
	a      *API
	o      PeerOptions
	pc     *webrtc.PeerConnection
	gone   bool // unregistered from the demux for good; under the demux's mu
	cname  string
	tap    *tap
	mode   atomic.Int32
	seen   atomic.Int64 // unix ns of the last datagram from the browser
	iceBad atomic.Int32 // 0 fine, 1 reported disconnected, 2 reported failed
	track  *webrtc.TrackLocalStaticRTP
	law    Codec
	log    *slog.Logger
	remote chan *webrtc.TrackRemote
	video  chan *webrtc.TrackRemote // the browser's camera; only fed when video was negotiated
	screen chan *webrtc.TrackRemote // the browser's screen share: its join offer's second video section (video.go)
	vp8    bool                     // the API registers VP8
	avs    *avSync                  // sender reports for lip sync; nil unless the join offer had video (avsync.go)

	vmu        sync.Mutex // the video fields below
	videoMids  []string   // mids of the join offer's video sections, in order: camera, then screen
	h264       bool       // the browser offered the H.264 Patchbay negotiates (and the API registers it)
	videoCodec VideoCodec // the codec every video section lists first: the one the browser sends

	up   chan struct{} // closed when the connection first reaches connected
	dead chan struct{}

	upOnce sync.Once

	deadOnce  sync.Once
	closeErr  error
	closeOnce sync.Once

	rr     legReports        // what the browser's RTCP receiver reports say (quality.go)
	sender *webrtc.RTPSender // the audio sender; its RTCP is read only on pion's path (decideMode)
	readWG sync.WaitGroup    // the RTCP reader of the audio sender; Close waits for it
}

// Answer creates a peer for a browser's offer and returns the answer SDP with
// the server's candidates in it (ICE-lite on a mux gathers at once), in the one codec ChooseCodec picks for the
// offer and o.Wideband. It fails with ErrNoAudio, ErrUnsupportedMedia or ErrInvalidSDP when the offer cannot be
// served.
func (a *API) Answer(ctx context.Context, offer string, o PeerOptions) (*Peer, string, error) {
	law, err := ChooseCodec(offer, o.Wideband)
	if err != nil {
		return nil, "", err
	}
	// A browser with video in a room gets sender reports on one clock for the mix and the cameras (avsync.go).
	var avs *avSync
	if a.video && a.ownReports {
		if mids, _, err := offeredVideo(offer); err == nil && len(mids) > 0 {
			avs = newAVSync(MixDelay)
		}
	}
	p, err := a.newPeer(law, o, avs)
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

// Offer creates a peer for an incoming call in the given codec (only that one is offered) and returns the
// offer SDP; complete it with SetAnswer when the browser accepts.
func (a *API) Offer(ctx context.Context, law Codec, o PeerOptions) (*Peer, string, error) {
	if law != PCMU && law != PCMA && law != Opus {
		return nil, "", fmt.Errorf("offer in codec %d: %w", law, ErrUnsupportedMedia)
	}
	p, err := a.newPeer(law, o, nil)
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

func (a *API) newPeer(law Codec, o PeerOptions, avs *avSync) (*Peer, error) {
	log := o.Logger
	if log == nil {
		log = a.log
	}
	cname := randomToken(16)
	tp := newTap(a.demux, law)
	// pion makes the ICE credentials (and new ones at each ICE restart); setLocal registers the current ufrag.
	se := a.se
	se.SetDTLSKeyLogWriter(tp)
	se.SetDTLSServerHelloMessageHook(tp.serverHello)
	reg := a.reg
	if avs != nil {
		reg = &interceptor.Registry{}
		reg.Add(avSyncFactory{avs})
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(a.me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(reg))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("create peer connection: %w", err)
	}
	track, err := webrtc.NewTrackLocalStaticRTP(law.params(a.opusDTX).RTPCodecCapability, "audio", "patchbay-"+cname)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("create %s track: %w", law, err)
	}
	p := &Peer{
		a:      a,
		o:      o,
		cname:  cname,
		tap:    tp,
		pc:     pc,
		track:  track,
		law:    law,
		log:    log.With("codec", law.String()),
		remote: make(chan *webrtc.TrackRemote, 1),
		video:  make(chan *webrtc.TrackRemote, 1),
		screen: make(chan *webrtc.TrackRemote, 1),
		vp8:    a.video,
		avs:    avs,
		up:     make(chan struct{}),
		dead:   make(chan struct{}),
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		ch, kind := p.remote, "audio"
		if t.Kind() == webrtc.RTPCodecTypeVideo {
			ch, kind = p.video, "video"
			if p.isScreen(r) {
				ch, kind = p.screen, "screen"
			}
		}
		select {
		case ch <- t:
		default:
			p.log.Warn("extra remote track ignored", "kind", kind, "ssrc", uint32(t.SSRC()))
		}
	})
	pc.OnICEConnectionStateChange(p.iceState)
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		p.log.Debug("peer state", "state", s.String())
		if o.OnState != nil {
			o.OnState(s)
		}
		if s == webrtc.PeerConnectionStateConnected {
			p.upOnce.Do(func() { close(p.up) })
		}
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			p.markDead()
		}
	})
	return p, nil
}

func (p *Peer) iceState(s webrtc.ICEConnectionState) {
	p.log.Debug("ice state", "state", s.String())
	if p.o.OnICEState != nil {
		p.o.OnICEState(s)
	}
	if s == webrtc.ICEConnectionStateFailed || s == webrtc.ICEConnectionStateClosed {
		p.markDead()
	}
}

// watch reports a browser that went silent as disconnected, then failed (and closes the peer), from the time
// of the last datagram the demux saw from it; pion's own ICE timeouts are off (see NewAPI).
func (p *Peer) watch(now time.Time) {
	last := p.seen.Load()
	if last == 0 {
		return
	}
	idle := now.Sub(time.Unix(0, last))
	switch bad := p.iceBad.Load(); {
	case bad == 2:
	case idle > p.a.disconnected+p.a.failed:
		p.iceBad.Store(2)
		p.log.Warn("browser silent: ICE failed", "silent_for", idle.Round(time.Millisecond))
		p.iceState(webrtc.ICEConnectionStateFailed)
		p.a.closeLater(p)
	case idle > p.a.disconnected && bad == 0:
		p.iceBad.Store(1)
		p.iceState(webrtc.ICEConnectionStateDisconnected)
	case idle <= p.a.disconnected && bad == 1:
		p.iceBad.Store(0)
		p.iceState(webrtc.ICEConnectionStateConnected)
	}
}

// decideMode puts an audio-only peer on which Patchbay is the DTLS server on the lean path; local and remote are
// the SDPs of this negotiation.
func (p *Peer) decideMode(local, remote string) {
	m := ModePion
	if p.a.lean && !p.Video() && dtlsServer(local, remote) {
		if ssrc, ok := p.localSSRC(); ok {
			p.tap.ssrc = ssrc
			m = ModeLean
		}
	}
	if !p.mode.CompareAndSwap(int32(ModeUndecided), int32(m)) {
		return
	}
	if m != ModeLean {
		p.tap.state.Store(tapOff)
		// On the lean path the demux reads the browser's RTCP itself (lean.go) and pion's sender never gets any:
		// a reader there would be a goroutine and a buffer per call doing nothing.
		p.readReports(p.sender)
	} else if pt, ok := p.negotiatedPT(); ok {
		p.tap.pt = pt
	}
	p.log.Debug("media path", "mode", m.String())
}

// dtlsServer reports whether Patchbay is the DTLS server: it said passive, or the other side said active.
func dtlsServer(local, remote string) bool {
	return strings.Contains(local, "a=setup:passive") || strings.Contains(remote, "a=setup:active")
}

// negotiatedPT is the payload type the audio sender uses: the offer's own for the codec when answering (Firefox
// numbers Opus 109, Chrome 111), ours when offering.
func (p *Peer) negotiatedPT() (uint8, bool) {
	for _, t := range p.pc.GetTransceivers() {
		if t.Sender() == nil || t.Sender().Track() != p.track {
			continue
		}
		for _, c := range t.Sender().GetParameters().Codecs {
			if strings.EqualFold(c.MimeType, p.law.MimeType()) {
				return uint8(c.PayloadType), true
			}
		}
	}
	return 0, false
}

func (p *Peer) localSSRC() (uint32, bool) {
	for _, t := range p.pc.GetTransceivers() {
		if t.Sender() == nil || t.Sender().Track() != p.track {
			continue
		}
		if enc := t.Sender().GetParameters().Encodings; len(enc) > 0 && enc[0].SSRC != 0 {
			return uint32(enc[0].SSRC), true
		}
	}
	return 0, false
}

// Mode is the path the peer's audio takes, decided when the negotiation completes (Answer, or SetAnswer after
// Offer).
func (p *Peer) Mode() Mode { return Mode(p.mode.Load()) }

// LockMode returns the peer's mode, fixing an undecided one to ModePion: whoever starts moving audio calls it.
func (p *Peer) LockMode() Mode {
	if p.mode.CompareAndSwap(int32(ModeUndecided), int32(ModePion)) {
		p.tap.state.Store(tapOff)
	}
	return p.Mode()
}

// SetRTPHandler sets where a lean peer's RTP from the browser goes (nil: dropped after counting).
func (p *Peer) SetRTPHandler(h RTPHandler) {
	if h == nil {
		p.tap.handler.Store(nil)
		return
	}
	p.tap.handler.Store(&handlerBox{h})
}

// AppendRTP protects one G.711 frame toward the browser and queues it in b (send with b.Flush). The peer's SSRC
// and payload type are stamped on it. ErrNotLean: use LocalTrack; ErrNotReady: DTLS is not up yet, dropped.
func (p *Peer) AppendRTP(b *Batch, seq uint16, ts uint32, marker bool, payload []byte, now time.Time) error {
	if p.Mode() != ModeLean {
		return ErrNotLean
	}
	return p.tap.appendRTP(b, seq, ts, marker, payload, now)
}

// RTCPStats returns the lean path's counters and what RTCP told of the call's quality. A peer on pion's path
// reports zeros.
func (p *Peer) RTCPStats() RTCPStats { return p.tap.stats() }

func randomToken(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func (p *Peer) answer(ctx context.Context, offer string) (string, error) {
	if p.vp8 {
		if err := p.noteVideoOffer(offer); err != nil {
			return "", err
		}
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("apply browser offer: %w: %w", ErrInvalidSDP, err)
	}
	// AddTrack reuses the audio transceiver the offer created.
	sender, err := p.pc.AddTrack(p.track)
	if err != nil {
		return "", fmt.Errorf("attach %s track: %w", p.law, err)
	}
	p.sender = sender
	if err := p.preferLaw(offeredPT(offer, p.law)); err != nil {
		return "", err
	}
	if err := p.applyVideoCodec(); err != nil {
		return "", err
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("create answer: %w", err)
	}
	sdp, err := p.setLocal(ctx, answer)
	if err != nil {
		return "", err
	}
	p.decideMode(sdp, offer)
	return sdp, nil
}

func (p *Peer) offer(ctx context.Context) (string, error) {
	tr, err := p.pc.AddTransceiverFromTrack(p.track, webrtc.RTPTransceiverInit{
		Direction: webrtc.RTPTransceiverDirectionSendrecv,
	})
	if err != nil {
		return "", fmt.Errorf("add %s transceiver: %w", p.law, err)
	}
	p.sender = tr.Sender()
	if err := p.preferLaw(p.law.PayloadType()); err != nil {
		return "", err
	}
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("create offer: %w", err)
	}
	return p.setLocal(ctx, offer)
}

// preferLaw narrows the audio transceiver to the chosen codec so the browser sends exactly what the track
// carries, numbered pt: an answer keeps the number the offer gave the codec (RFC 3264 §6.1).
func (p *Peer) preferLaw(pt uint8) error {
	params := p.law.params(p.a.opusDTX)
	params.PayloadType = webrtc.PayloadType(pt)
	for _, t := range p.pc.GetTransceivers() {
		if t.Sender() == nil || t.Sender().Track() != p.track {
			continue
		}
		if err := t.SetCodecPreferences([]webrtc.RTPCodecParameters{params}); err != nil {
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
	// Before the browser can see this description, the demux must know the ufrag its checks will name: the first
	// one, or a new one after an ICE restart.
	u := sdpUfrag(ld.SDP)
	if u == "" {
		return "", errors.New("local description has no ICE ufrag")
	}
	p.a.demux.register(u, p)
	sdp := stripRTCPCandidates(ld.SDP)
	if p.avs != nil {
		sdp = syncMsid(sdp, p.track.StreamID())
	}
	return sdp, nil
}

// sdpUfrag is the first a=ice-ufrag of an SDP (pion writes the same one in every media section).
func sdpUfrag(sdp string) string {
	for l := range strings.Lines(sdp) {
		if v, ok := strings.CutPrefix(l, "a=ice-ufrag:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// stripRTCPCandidates drops the component-2 (RTCP) copies pion writes of every candidate: every peer of ours
// negotiates rtcp-mux (browsers require it), so those lines only confuse readers of the SDP and clients that take
// them literally.
func stripRTCPCandidates(sdp string) string {
	lines := strings.SplitAfter(sdp, "\n")
	out := lines[:0]
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "a=candidate:"); ok {
			if f := strings.Fields(rest); len(f) > 1 && f[1] == "2" {
				continue
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}

// SetAnswer applies the browser's answer to an Offer peer, or to the last
// Renegotiate offer.
func (p *Peer) SetAnswer(answer string) error {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("apply browser answer: %w: %w", ErrInvalidSDP, err)
	}
	if p.Mode() == ModeUndecided {
		if ld := p.pc.LocalDescription(); ld != nil {
			p.decideMode(ld.SDP, answer)
		}
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

// Codec is the negotiated codec of both tracks.
func (p *Peer) Codec() Codec { return p.law }

// Law is Codec's older name.
func (p *Peer) Law() Codec { return p.law }

// LocalTrack is the track toward the browser on pion's path (ModePion). Its SSRC stays fixed for the life of the
// peer whatever is written to it. It is nil on the lean path: pion must never encrypt with the keys and SSRC the
// lean path uses.
func (p *Peer) LocalTrack() *webrtc.TrackLocalStaticRTP {
	if p.Mode() == ModeLean {
		return nil
	}
	return p.track
}

// RemoteTrack waits for the browser's audio track on pion's path; a lean peer's audio goes to its RTPHandler and
// this never returns a track for it.
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

// Video reports whether the browser negotiated a video section with this
// peer: the offer had one and the API was built with Options.Video.
func (p *Peer) Video() bool {
	if !p.vp8 {
		return false
	}
	for _, t := range p.pc.GetTransceivers() {
		if t.Kind() == webrtc.RTPCodecTypeVideo && t.Mid() != "" {
			return true
		}
	}
	return false
}

// RemoteVideo waits for the browser's camera track. It only ever returns a
// track for a peer whose Video is true.
func (p *Peer) RemoteVideo(ctx context.Context) (*webrtc.TrackRemote, error) {
	select {
	case t := <-p.video:
		return t, nil
	case <-p.dead:
		return nil, fmt.Errorf("wait for browser video track: %w", ErrClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for browser video track: %w", ctx.Err())
	}
}

// AddTrack adds a video track toward the browser (the SFU forwards other
// members' cameras this way). It reuses a free video transceiver when there
// is one. The browser sees it after the next Renegotiate/SetAnswer round.
func (p *Peer) AddTrack(t webrtc.TrackLocal) (*webrtc.RTPSender, error) {
	if t.Kind() != webrtc.RTPCodecTypeVideo {
		return nil, fmt.Errorf("add %s track: only video tracks are added after setup", t.Kind())
	}
	if !p.Video() {
		return nil, fmt.Errorf("add video track: %w", ErrNoVideo)
	}
	s, err := p.pc.AddTrack(t)
	if err != nil {
		return nil, fmt.Errorf("add video track %s: %w", t.StreamID(), err)
	}
	// A new section lists the codecs in the room's order like the others.
	if err := p.applyVideoCodec(); err != nil {
		p.log.Warn("video codec order", "err", err)
	}
	return s, nil
}

// RemoveTrack stops sending a track added with AddTrack; its transceiver is
// reused by a later AddTrack once the browser has seen the removal.
func (p *Peer) RemoveTrack(s *webrtc.RTPSender) error {
	if err := p.pc.RemoveTrack(s); err != nil {
		return fmt.Errorf("remove video track: %w", err)
	}
	return nil
}

// Renegotiate makes a server-initiated offer on the live connection (after
// AddTrack/RemoveTrack) and returns its SDP; apply the browser's reply with
// SetAnswer. Only one offer may be outstanding: the caller serialises.
func (p *Peer) Renegotiate(ctx context.Context) (string, error) {
	if s := p.pc.SignalingState(); s != webrtc.SignalingStateStable {
		return "", fmt.Errorf("renegotiate in signalling state %s: %w", s, ErrNotStable)
	}
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("create renegotiation offer: %w", err)
	}
	return p.setLocal(ctx, offer)
}

// Restart applies a browser's ICE-restart offer (new ice-ufrag/ice-pwd, same media sections) to the live peer
// and returns the answer, with fresh server credentials and candidates. Only ICE starts over: the DTLS
// association, SRTP keys, tracks and SSRCs stay, so audio resumes on the new path as soon as the browser's checks
// succeed and nothing upstream (relay, Asterisk) notices. pion restarts an ICE-lite answerer's agent by itself when
// a remote offer changes the credentials (SetRemoteDescription), with new credentials of its own; setLocal
// registers the new ufrag with the demux, so the addresses the browser checks from next are learnt for this peer
// (its watchdog and, on the lean path, its tap follow it there, over UDP or ICE-TCP alike). An offer with the
// same credentials is applied as a plain renegotiation. Fails with ErrNotStable while a server offer (Renegotiate) is outstanding: the server is
// the impolite peer, the browser rolls back and answers that offer first.
func (p *Peer) Restart(ctx context.Context, offer string) (string, error) {
	if s := p.pc.SignalingState(); s != webrtc.SignalingStateStable {
		return "", fmt.Errorf("ICE restart in signalling state %s: %w", s, ErrNotStable)
	}
	select {
	case <-p.dead:
		return "", fmt.Errorf("ICE restart: %w", ErrClosed)
	default:
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("apply browser restart offer: %w: %w", ErrInvalidSDP, err)
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("create restart answer: %w", err)
	}
	return p.setLocal(ctx, answer)
}

// WriteRTCP sends RTCP (e.g. a picture loss indication) to the browser.
func (p *Peer) WriteRTCP(pkts []rtcp.Packet) error {
	if err := p.pc.WriteRTCP(pkts); err != nil {
		return fmt.Errorf("write RTCP: %w", err)
	}
	return nil
}

// Connected is closed once ICE and DTLS are first up.
func (p *Peer) Connected() <-chan struct{} { return p.up }

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
		p.a.demux.unregister(p)
		p.tap.handler.Store(nil)
		p.closeErr = p.pc.Close()
		p.markDead()
		p.readWG.Wait() // closing the connection ends the RTCP reader
	})
	return p.closeErr
}
