package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/webrtc/sfu"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// videoRooms hands every room browser whose peer negotiated video to the SFU, so browsers in a room see each
// other's cameras and screen shares; audio stays on the room's Asterisk mix. It implements call.RoomPeerHook,
// call.RoomPeerAnswers and call.RoomPeerShares.
type videoRooms struct {
	hub *sfu.Hub
	log *slog.Logger

	mu sync.Mutex
	ms map[string]*sfu.Membership // room + "\x00" + participant
}

// videoRooms is nil (no hook) unless media.video is on.
func (s *Server) videoRooms(cfg *config.Config, log *slog.Logger) call.RoomPeerHook {
	if !cfg.Media.Video {
		return nil
	}
	o := sfu.Options{Logger: log.With("component", "sfu")}
	if m := s.obs.metrics; m != nil {
		o.OnVideoTrack, o.OnKeyframeRequest = m.VideoTrack, m.KeyframeRequest
	}
	s.sfu = sfu.NewHub(o)
	return &videoRooms{hub: s.sfu, log: log.With("component", "sfu"), ms: map[string]*sfu.Membership{}}
}

func (v *videoRooms) PeerJoined(ctx context.Context, p call.RoomPeer) (left func()) {
	if !p.Peer.Video() {
		return nil
	}
	ms, err := v.hub.Join(ctx, p.Room, p.Participant, p.Peer, sfu.MemberOptions{
		Offer: func(sdp string) error {
			p.Send(signal.OfferMessage(p.CallID, sdp))
			return nil
		},
		Failed: func(err error) {
			if p.End != nil {
				p.End("video renegotiation failed: " + err.Error())
			}
		},
	})
	if err != nil {
		v.log.Warn("browser stays audio-only in the room", "room", p.Room, "participant", p.Participant, "err", err)
		return nil
	}
	key := p.Room + "\x00" + p.Participant
	v.mu.Lock()
	v.ms[key] = ms
	v.mu.Unlock()
	return func() {
		v.mu.Lock()
		delete(v.ms, key)
		v.mu.Unlock()
		lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ms.Leave(lctx); err != nil {
			v.log.Warn("leave sfu room", "room", p.Room, "participant", p.Participant, "err", err)
		}
	}
}

func (v *videoRooms) membership(p call.RoomPeer) *sfu.Membership {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.ms[p.Room+"\x00"+p.Participant]
}

func (v *videoRooms) PeerAnswer(ctx context.Context, p call.RoomPeer, sdp string) error {
	ms := v.membership(p)
	if ms == nil {
		return errors.New("no offer is outstanding on this call")
	}
	return ms.Answer(ctx, sdp)
}

// PeerShare starts or stops the browser's own screen share in the SFU.
func (v *videoRooms) PeerShare(ctx context.Context, p call.RoomPeer, on bool) error {
	ms := v.membership(p)
	if ms == nil {
		if !on {
			return nil // never shared: nothing to stop
		}
		return fmt.Errorf("share in room %s: no video: %w", p.Room, call.ErrNoScreenSection)
	}
	err := ms.Share(ctx, on)
	switch {
	case errors.Is(err, sfu.ErrShareBusy):
		return fmt.Errorf("%w: %w", call.ErrShareBusy, err)
	case errors.Is(err, sfu.ErrCannotShare):
		return fmt.Errorf("%w: %w", call.ErrNoScreenSection, err)
	}
	return err
}

// StopShareOf stops participant target's screen share (a moderator's request). A target without video, or not in
// the SFU room at all, shares nothing.
func (v *videoRooms) StopShareOf(ctx context.Context, p call.RoomPeer, target string) error {
	err := v.hub.StopShare(ctx, p.Room, target)
	if errors.Is(err, sfu.ErrUnknownMember) {
		return nil
	}
	return err
}

// SFU is the server's video hub, nil unless media.video: for tests and diagnostics.
func (s *Server) SFU() *sfu.Hub { return s.sfu }
