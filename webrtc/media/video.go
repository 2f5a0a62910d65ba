package media

import (
	"context"
	"fmt"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// A room browser's video: its camera on the first video section of its join offer and, when that offer has a
// second one, its screen share on that second section (the page reserves it so a share starts without a new
// offer). Both are forwarded by the SFU (webrtc/sfu), which tells them apart with RemoteVideo and RemoteScreen.

// ScreenStreamPrefix starts the MediaStream id of a forwarded screen share: "screen-" and the sharer's participant
// id. A forwarded camera's stream id is the participant id itself.
const ScreenStreamPrefix = "screen-"

// offeredVideoMids lists the mids of the offer's active video sections, in order: the camera's, then the
// screen's.
func offeredVideoMids(offer string) ([]string, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSDP, err)
	}
	var mids []string
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media != "video" || m.MediaName.Port.Value == 0 {
			continue
		}
		if mid, ok := m.Attribute(sdp.AttrKeyMID); ok {
			mids = append(mids, mid)
		}
	}
	return mids, nil
}

// noteVideoOffer records the join offer's video sections; it runs before the offer is applied, so before any
// track can arrive.
func (p *Peer) noteVideoOffer(offer string) error {
	mids, err := offeredVideoMids(offer)
	if err != nil {
		return err
	}
	p.vmu.Lock()
	p.videoMids = mids
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
