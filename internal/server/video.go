package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/webrtc/sfu"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// videoRooms hands every room browser whose peer negotiated video to the SFU, so browsers in a room see each
// other's cameras; audio stays on the room's Asterisk mix. It implements call.RoomPeerHook and
// call.RoomPeerAnswers.
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

func (v *videoRooms) PeerAnswer(ctx context.Context, p call.RoomPeer, sdp string) error {
	v.mu.Lock()
	ms := v.ms[p.Room+"\x00"+p.Participant]
	v.mu.Unlock()
	if ms == nil {
		return errors.New("no offer is outstanding on this call")
	}
	return ms.Answer(ctx, sdp)
}
