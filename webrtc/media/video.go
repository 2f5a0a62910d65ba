package media

import (
	"context"
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// A room browser's video: its camera on the first video section of its join offer and, when that offer has a
// second one, its screen share on that second section (the page reserves it so a share starts without a new
// offer). Both are forwarded by the SFU (webrtc/sfu), which tells them apart with RemoteVideo and RemoteScreen.

// ScreenStreamPrefix starts the MediaStream id of a forwarded screen share: "screen-" and the sharer's participant
// id. A forwarded camera's stream id is the participant id itself.
const ScreenStreamPrefix = "screen-"

// offeredVideo lists the mids of the offer's active video sections, in order (the camera's, then the screen's),
// and whether they all offer the H.264 Patchbay negotiates.
func offeredVideo(offer string) (mids []string, h264 bool, err error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrInvalidSDP, err)
	}
	h264 = true
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media != "video" || m.MediaName.Port.Value == 0 {
			continue
		}
		if mid, ok := m.Attribute(sdp.AttrKeyMID); ok {
			mids = append(mids, mid)
		}
		h264 = h264 && offersH264(m)
	}
	return mids, h264 && len(mids) > 0, nil
}

// noteVideoOffer records the join offer's video sections and whether the browser can do H.264; it runs before the
// offer is applied, so before any track can arrive. A browser that can starts with H.264 first: the SFU moves it to
// VP8 (SetVideoCodec and an offer) if its room cannot.
func (p *Peer) noteVideoOffer(offer string) error {
	mids, h264, err := offeredVideo(offer)
	if err != nil {
		return err
	}
	p.vmu.Lock()
	p.videoMids = mids
	p.h264 = p.a.h264 && h264
	p.videoCodec = CodecVP8
	if p.h264 {
		p.videoCodec = CodecH264
	}
	p.vmu.Unlock()
	return nil
}

// isScreen reports whether r receives the browser's screen share (its join offer's second video section).
func (p *Peer) isScreen(r *webrtc.RTPReceiver) bool {
	p.vmu.Lock()
	mids := p.videoMids
	p.vmu.Unlock()
	if len(mids) < 2 || r == nil {
		return false
	}
	for _, t := range p.pc.GetTransceivers() {
		if t.Receiver() == r {
			return t.Mid() == mids[1]
		}
	}
	return false
}

// CanShare reports whether the browser's join offer had a second video section, the one its screen share is sent
// on.
func (p *Peer) CanShare() bool {
	p.vmu.Lock()
	defer p.vmu.Unlock()
	return p.Video() && len(p.videoMids) > 1
}

// RemoteScreen waits for the browser's screen share track: it arrives with the first packet of its first share.
func (p *Peer) RemoteScreen(ctx context.Context) (*webrtc.TrackRemote, error) {
	select {
	case t := <-p.screen:
		return t, nil
	case <-p.dead:
		return nil, fmt.Errorf("wait for browser screen track: %w", ErrClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for browser screen track: %w", ctx.Err())
	}
}

// ---- codecs ----

// Video is forwarded as each browser encodes it, so every viewer must decode the publisher's codec: the SFU
// settles each room on one (sfu.Room), H.264 when every browser in it can, VP8 otherwise. Every video section
// negotiates both (when the browser offers both), the room's listed first: that is the one the browser sends.

// videoFeedback: viewers ask for key frames with PLI or FIR; there is no NACK or congestion feedback, since the
// SFU forwards without caching or rate control.
var videoFeedback = []webrtc.RTCPFeedback{
	{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
}

// VP8Codec is the video codec every browser has.
func VP8Codec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFeedback},
		PayloadType:        96,
	}
}

// H264Fmtp is the one H.264 flavour Patchbay negotiates: constrained baseline (what hardware encoders and decoders
// share), level 3.1, non-interleaved packetization (single NAL units and FU-A fragments, which every browser sends).
const H264Fmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"

// H264Codec is H.264 constrained baseline with packetization-mode 1.
func H264Codec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: H264Fmtp, RTCPFeedback: videoFeedback},
		PayloadType: 102,
	}
}

// VideoCodec names a video codec the SFU forwards.
type VideoCodec string

// The video codecs.
const (
	CodecVP8  VideoCodec = "VP8"
	CodecH264 VideoCodec = "H264"
)

// Parameters are the codec's pion parameters.
func (c VideoCodec) Parameters() webrtc.RTPCodecParameters {
	if c == CodecH264 {
		return H264Codec()
	}
	return VP8Codec()
}

// CodecOf maps a MIME type (video/VP8, video/H264) to its codec; ok is false for any other.
func CodecOf(mime string) (VideoCodec, bool) {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return CodecVP8, true
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return CodecH264, true
	}
	return "", false
}

func registerVideo(me *webrtc.MediaEngine, h264 bool) error {
	codecs := []webrtc.RTPCodecParameters{VP8Codec()}
	if h264 {
		codecs = append(codecs, H264Codec())
	}
	for _, c := range codecs {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return fmt.Errorf("register %s: %w", c.MimeType, err)
		}
	}
	return nil
}

// offersH264 reports whether a video section offers H264Fmtp's flavour: constrained baseline (profile-level-id
// 42e0xx, any level) with packetization-mode 1.
func offersH264(m *sdp.MediaDescription) bool {
	pts := map[string]bool{}
	for _, a := range m.Attributes {
		if a.Key == "rtpmap" {
			if pt, enc, ok := strings.Cut(a.Value, " "); ok && strings.EqualFold(enc, "H264/90000") {
				pts[pt] = true
			}
		}
	}
	for _, a := range m.Attributes {
		if a.Key != "fmtp" {
			continue
		}
		pt, params, ok := strings.Cut(a.Value, " ")
		if !ok || !pts[pt] {
			continue
		}
		var mode1, cb bool
		for _, kv := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
			switch strings.ToLower(k) {
			case "packetization-mode":
				mode1 = v == "1"
			case "profile-level-id":
				cb = len(v) == 6 && strings.EqualFold(v[:4], "42e0")
			}
		}
		if mode1 && cb {
			return true
		}
	}
	return false
}

// SupportsH264 reports whether the browser sends and receives H.264 as Patchbay negotiates it.
func (p *Peer) SupportsH264() bool {
	p.vmu.Lock()
	defer p.vmu.Unlock()
	return p.h264
}

// VideoCodec is the codec the peer's video sections list first: the one its browser sends.
func (p *Peer) VideoCodec() VideoCodec {
	p.vmu.Lock()
	defer p.vmu.Unlock()
	return p.videoCodec
}

// SetVideoCodec lists c first in every video section from the next offer on (Renegotiate), so the browser encodes
// its camera and screen in c; the other codec stays negotiated. A peer that cannot do H.264 keeps VP8.
func (p *Peer) SetVideoCodec(c VideoCodec) error {
	p.vmu.Lock()
	if c != CodecH264 || !p.h264 {
		c = CodecVP8
	}
	p.videoCodec = c
	p.vmu.Unlock()
	return p.applyVideoCodec()
}

// codecOrder lists the peer's video codecs, the one it sends first. Payload type 0 lets pion keep the numbers the
// browser's offer gave each codec.
func (p *Peer) codecOrder() []webrtc.RTPCodecParameters {
	p.vmu.Lock()
	var order []webrtc.RTPCodecParameters
	switch {
	case !p.h264:
		order = []webrtc.RTPCodecParameters{VP8Codec()}
	case p.videoCodec == CodecH264:
		order = []webrtc.RTPCodecParameters{H264Codec(), VP8Codec()}
	default:
		order = []webrtc.RTPCodecParameters{VP8Codec(), H264Codec()}
	}
	p.vmu.Unlock()
	for i := range order {
		order[i].PayloadType = 0
	}
	return order
}

// applyVideoCodec sets the codec order on every video section.
func (p *Peer) applyVideoCodec() error {
	if !p.a.h264 {
		return nil // VP8 only: nothing to order
	}
	order := p.codecOrder()
	for _, t := range p.pc.GetTransceivers() {
		if t.Kind() != webrtc.RTPCodecTypeVideo {
			continue
		}
		if err := t.SetCodecPreferences(order); err != nil {
			return fmt.Errorf("order video codecs (%s first): %w", order[0].MimeType, err)
		}
	}
	return nil
}
