package sfu

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/webrtc/media"
)

// Kinds of publication: a browser's camera, or its screen share.
const (
	kindCamera = "camera"
	kindScreen = "screen"
)

// ScreenStreamPrefix starts the MediaStream id of a forwarded screen share: "screen-" and the sharer's member id.
// A camera's stream id is the member id itself.
const ScreenStreamPrefix = media.ScreenStreamPrefix

// publication is one browser's camera or screen share and the one local track every viewer's peer is bound to: a
// packet is read once and written once, and pion sends it to each bound viewer with that viewer's SSRC.
type publication struct {
	owner  *member
	kind   string // kindCamera or kindScreen
	key    string // the forwarded stream's id: what viewers subscribe to and browsers map to a tile
	remote *webrtc.TrackRemote
	pli    []rtcp.Packet // preallocated: PLI for remote's SSRC
	gap    int64         // minimum nanoseconds between PLIs
	onPLI  func()        // Options.OnKeyframeRequest, or nil

	// local is the forwarding track, in codec; the room swaps it for one of the other codec when the room changes
	// codec. Packets in any other codec (the publisher has not switched yet) are dropped and counted in mismatch.
	local atomic.Pointer[webrtc.TrackLocalStaticRTP]
	codec atomic.Pointer[media.VideoCodec]

	lastPLI  atomic.Int64 // unix nanoseconds of the last PLI sent
	packets  atomic.Uint64
	plis     atomic.Uint64
	mismatch atomic.Uint64

	burstUntil time.Time // room goroutine only: ask for key frames until then
}

func newPublication(m *member, kind string, remote *webrtc.TrackRemote, gap time.Duration, onPLI func()) (*publication, error) {
	codec, ok := media.CodecOf(remote.Codec().MimeType)
	if !ok {
		return nil, fmt.Errorf("%s codec %s: only VP8 and H.264 are forwarded", kind, remote.Codec().MimeType)
	}
	key := m.id
	if kind == kindScreen {
		key = ScreenStreamPrefix + m.id
	}
	p := &publication{
		owner:  m,
		kind:   kind,
		key:    key,
		remote: remote,
		pli:    []rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(remote.SSRC())}},
		gap:    int64(gap),
		onPLI:  onPLI,
	}
	if err := p.setCodec(codec); err != nil {
		return nil, err
	}
	return p, nil
}

// setCodec makes the forwarding track for codec c (on the room goroutine, before viewers' senders are bound to
// it). The stream id is the key: the browser maps a track to its tile by it.
func (p *publication) setCodec(c media.VideoCodec) error {
	local, err := webrtc.NewTrackLocalStaticRTP(c.Parameters().RTPCodecCapability, "video-"+p.key, p.key)
	if err != nil {
		return fmt.Errorf("create %s forwarding track for %s: %w", c, p.key, err)
	}
	p.local.Store(local)
	p.codec.Store(&c)
	return nil
}

// currentCodec is the codec of the forwarding track.
func (p *publication) currentCodec() media.VideoCodec { return *p.codec.Load() }

// forward copies the publisher's RTP to the shared track until ctx ends or
// the track does. No allocation per packet: one buffer, one reused packet.
func (p *publication) forward(ctx context.Context) error {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	var writeErrs uint64
	for {
		n, _, err := p.remote.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read %s of %s: %w", p.kind, p.owner.id, err)
		}
		// pion names the codec of each packet by its payload type as it reads it: until the publisher has
		// answered the offer that moved it to the room's codec, what it sends cannot be forwarded.
		if c, _ := media.CodecOf(p.remote.Codec().MimeType); c != p.currentCodec() {
			p.mismatch.Add(1)
			continue
		}
		if err := p.forwardPacket(&pkt, buf[:n]); err != nil {
			// A viewer's transport failing must not stop the others; say so now and then.
			if writeErrs++; writeErrs&(writeErrs-1) == 0 && !errors.Is(err, io.ErrClosedPipe) {
				p.owner.log.Debug("forward video packet", "kind", p.kind, "errors", writeErrs, "err", err)
			}
		}
	}
}

// forwardPacket parses b into pkt and writes it to every viewer. Header
// extensions are dropped: none is negotiated toward viewers.
func (p *publication) forwardPacket(pkt *rtp.Packet, b []byte) error {
	if err := pkt.Unmarshal(b); err != nil {
		return nil // not RTP: nothing to forward
	}
	pkt.Extension = false
	pkt.Extensions = pkt.Extensions[:0]
	p.packets.Add(1)
	return p.local.Load().WriteRTP(pkt)
}

// stopReading unblocks forward without closing the owner's peer.
func (p *publication) stopReading() {
	_ = p.remote.SetReadDeadline(time.Unix(1, 0))
}

// requestKeyframe sends a PLI to the publisher unless one went out less than
// the minimum gap ago. Safe from any goroutine.
func (p *publication) requestKeyframe(now time.Time) {
	last := p.lastPLI.Load()
	if now.UnixNano()-last < p.gap || !p.lastPLI.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	if err := p.owner.peer.WriteRTCP(p.pli); err != nil {
		p.owner.log.Debug("send PLI", "err", err)
		return
	}
	p.plis.Add(1)
	if p.onPLI != nil {
		p.onPLI()
	}
}

// readViewerRTCP reads a viewer's RTCP for one forwarded camera or screen and
// passes its key frame requests (PLI, FIR) on to its publisher. It ends when the
// sender stops (unsubscribe) or the viewer's peer closes.
func readViewerRTCP(s *webrtc.RTPSender, pub *publication) {
	buf := make([]byte, 1500)
	for {
		n, _, err := s.Read(buf)
		if err != nil {
			return
		}
		if wantsKeyframe(buf[:n]) {
			pub.requestKeyframe(time.Now())
		}
	}
}

// wantsKeyframe walks a compound RTCP packet for a PLI or FIR without
// decoding it (RFC 4585 PT 206 FMT 1, RFC 5104 FMT 4).
func wantsKeyframe(b []byte) bool {
	for len(b) >= 4 {
		if b[0]>>6 != 2 {
			return false
		}
		fmt, pt := b[0]&0x1f, b[1]
		size := (int(binary.BigEndian.Uint16(b[2:4])) + 1) * 4
		if pt == 206 && (fmt == 1 || fmt == 4) {
			return true
		}
		if size > len(b) {
			return false
		}
		b = b[size:]
	}
	return false
}
