package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/webrtc/media"
)

// member is one browser in the room. Fields without a comment belong to the
// room goroutine.
type member struct {
	id   string
	peer *media.Peer
	o    MemberOptions
	log  *slog.Logger

	ctx    context.Context // ends when the member leaves
	cancel context.CancelFunc
	wg     sync.WaitGroup // the member's goroutines: camera and screen wait+forward, RTCP readers of its subscriptions

	pub    *publication             // its camera, once it arrived
	screen *publication             // its screen share track, once its first share sent a packet
	subs   map[string]*subscription // publication key (stream id) → what this member receives of it

	connected  bool      // its peer has been connected: offers go out (before, they wait)
	inFlight   bool      // an offer awaits the browser's answer
	lastOffer  string    // that offer, sent once more if the answer is slow
	resendAt   time.Time // when to send it once more
	deadline   time.Time // when the answer is overdue
	lastAnswer string    // the last answer applied: a duplicate of it is ignored
	dirty      bool      // something changed since the last offer: offer (again) when possible
	broken     bool      // Failed was reported (or the room is closing): no more offers
	offers     int
}

// subscription is one camera or screen sent to one viewer.
type subscription struct {
	pub    *publication
	sender *webrtc.RTPSender
	live   bool // the viewer answered an offer carrying it
}

func (r *Room) join(id string, p *media.Peer, o MemberOptions) error {
	if _, dup := r.members[id]; dup {
		return fmt.Errorf("join %s: %w", id, ErrDuplicateMember)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{
		id:     id,
		peer:   p,
		o:      o,
		log:    r.log.With("member", id),
		ctx:    ctx,
		cancel: cancel,
		subs:   map[string]*subscription{},
	}
	r.members[id] = m
	if !p.Video() {
		m.log.Info("joined without video")
		return nil
	}
	select {
	case <-p.Connected():
		m.connected = true
	default: // publish marks it connected when it is
	}
	sent := p.VideoCodec() // what its join answer asked it to send
	r.settleCodec(m)
	for _, other := range r.members {
		if other.pub != nil {
			r.subscribe(m, other.pub)
		}
		if other.screen != nil && r.sharer == other.id {
			r.subscribe(m, other.screen)
		}
	}
	if len(m.subs) > 0 || sent != p.VideoCodec() {
		r.renegotiate(m)
	}
	m.wg.Add(2)
	go r.publish(m, kindCamera)
	go r.publish(m, kindScreen)
	m.log.Info("joined with video", "videos", len(m.subs), "can_share", p.CanShare(), "h264", p.SupportsH264(), "room_codec", r.codec)
	return nil
}

// settleCodec decides the room's codec as m joins (roomCodec) and moves everyone to it: a fallback to VP8 asks
// every publisher for VP8 (an offer listing it first) and rebinds every forwarding track to a VP8 one.
func (r *Room) settleCodec(m *member) {
	next := roomCodec(r.codec, m.peer.SupportsH264())
	if r.codec != "" && next != r.codec {
		r.log.Info("video falls back to VP8: a member cannot do H.264", "member", m.id)
		for _, other := range r.members {
			if other == m || !other.peer.Video() {
				continue
			}
			if err := other.peer.SetVideoCodec(next); err != nil {
				other.log.Warn("cannot move to VP8", "err", err)
			}
			for _, pub := range []*publication{other.pub, other.screen} {
				if pub != nil {
					r.switchCodec(pub, next)
				}
			}
			r.renegotiate(other)
		}
	}
	r.codec = next
	if err := m.peer.SetVideoCodec(r.codec); err != nil {
		m.log.Warn("video codec order", "err", err)
	}
}

// roomCodec is a room's video codec once a member joins that can (h264) or cannot do H.264: the first member's
// best, then VP8 from the moment one cannot. A room never goes back to H.264: its members' encoders would switch
// again at every join and leave.
func roomCodec(current media.VideoCodec, h264 bool) media.VideoCodec {
	switch {
	case !h264:
		return media.CodecVP8
	case current == "":
		return media.CodecH264
	}
	return current
}

// switchCodec gives pub a forwarding track in codec c and rebinds every viewer's sender to it. Until the publisher
// answers the offer that asks it for c its packets are dropped; its first ones in c start with a key frame.
func (r *Room) switchCodec(pub *publication, c media.VideoCodec) {
	if pub.currentCodec() == c {
		return
	}
	if err := pub.setCodec(c); err != nil {
		pub.owner.log.Warn("cannot switch video codec", "err", err)
		return
	}
	local := pub.local.Load()
	for _, viewer := range r.members {
		if s := viewer.subs[pub.key]; s != nil {
			if err := s.sender.ReplaceTrack(local); err != nil {
				viewer.log.Warn("cannot rebind video to the new codec", "from", pub.key, "err", err)
			}
		}
	}
	pub.burstUntil = time.Now().Add(r.o.KeyframeBurst)
}

func (r *Room) leave(id string) *member {
	m := r.members[id]
	if m == nil {
		return nil
	}
	delete(r.members, id)
	m.cancel()
	if r.sharer == id {
		r.sharer = ""
	}
	for _, pub := range []*publication{m.pub, m.screen} {
		if pub == nil {
			continue
		}
		pub.stopReading()
		if pub.kind == kindCamera && r.o.OnVideoTrack != nil {
			r.o.OnVideoTrack(-1)
		}
		for _, other := range r.members {
			if r.unsubscribe(other, pub.key) {
				r.renegotiate(other)
			}
		}
	}
	for key := range m.subs {
		r.unsubscribe(m, key)
	}
	m.log.Info("left")
	return m
}

// subscribe adds pub's track to viewer's peer; the viewer needs an offer.
func (r *Room) subscribe(viewer *member, pub *publication) {
	if viewer == pub.owner || viewer.subs[pub.key] != nil || !viewer.peer.Video() {
		return
	}
	sender, err := viewer.peer.AddTrack(pub.local.Load())
	if err != nil {
		viewer.log.Warn("cannot forward video", "from", pub.key, "err", err)
		return
	}
	viewer.subs[pub.key] = &subscription{pub: pub, sender: sender}
	viewer.wg.Add(1)
	go func() {
		defer viewer.wg.Done()
		readViewerRTCP(sender, pub)
	}()
}

// unsubscribe stops sending the publication key (a stream id) to viewer; it
// reports whether anything changed.
func (r *Room) unsubscribe(viewer *member, key string) bool {
	s := viewer.subs[key]
	if s == nil {
		return false
	}
	delete(viewer.subs, key)
	// Stopping the sender also ends its RTCP reader and unbinds the shared
	// track from this peer. On a closed peer pion has stopped it already.
	if err := viewer.peer.RemoveTrack(s.sender); err != nil {
		_ = s.sender.Stop()
	}
	return true
}

// renegotiate sends m an offer now, or once its peer is connected and no
// other offer is outstanding. Offering before ICE and DTLS are up gains
// nothing and gives a slow browser two descriptions to juggle at once.
func (r *Room) renegotiate(m *member) {
	if m.broken || !m.peer.Video() {
		return
	}
	if m.inFlight || !m.connected {
		m.dirty = true
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
	defer cancel()
	sdp, err := m.peer.Renegotiate(ctx)
	if err == nil {
		err = m.o.Offer(sdp)
	}
	if err != nil {
		r.fail(m, fmt.Errorf("renegotiate with %s: %w", m.id, err))
		return
	}
	m.inFlight, m.dirty, m.lastOffer = true, false, sdp
	now := time.Now()
	m.resendAt, m.deadline = now.Add(r.o.AnswerTimeout/2), now.Add(r.o.AnswerTimeout)
	m.offers++
	m.log.Debug("offer sent", "videos", len(m.subs))
}

func (r *Room) answer(id, sdp string) error {
	m := r.members[id]
	if m == nil {
		return fmt.Errorf("answer from %s: %w", id, ErrUnknownMember)
	}
	if !m.inFlight {
		if sdp == m.lastAnswer {
			return nil // the browser answered an offer sent twice twice
		}
		return fmt.Errorf("answer from %s: %w", id, ErrNoOffer)
	}
	m.inFlight, m.lastAnswer = false, sdp
	if err := m.peer.SetAnswer(sdp); err != nil {
		err = fmt.Errorf("answer from %s: %w", id, err)
		r.fail(m, err)
		return err
	}
	now := time.Now()
	// A publisher that just agreed to a new codec starts it with a key frame; ask anyway in case it was lost.
	for _, pub := range []*publication{m.pub, m.screen} {
		if pub != nil && now.Before(pub.burstUntil) {
			pub.requestKeyframe(now)
		}
	}
	for _, s := range m.subs {
		if !s.live {
			s.live = true
			// A new viewer needs a key frame before it can show anything.
			s.pub.burstUntil = now.Add(r.o.KeyframeBurst)
			s.pub.requestKeyframe(now)
		}
	}
	if m.dirty {
		r.renegotiate(m)
	}
	return nil
}

func (r *Room) fail(m *member, err error) {
	if m.broken {
		return
	}
	m.broken = true
	m.log.Warn("member can no longer be served", "err", err)
	if m.o.Failed != nil {
		m.o.Failed(err)
	}
}

// tick repeats key frame requests for new viewers and times out answers.
func (r *Room) tick(now time.Time) {
	for _, m := range r.members {
		for _, pub := range []*publication{m.pub, m.screen} {
			if pub != nil && now.Before(pub.burstUntil) {
				pub.requestKeyframe(now)
			}
		}
		if !m.inFlight || m.broken {
			continue
		}
		switch {
		case now.After(m.deadline):
			r.fail(m, fmt.Errorf("member %s: %w within %v", m.id, ErrAnswerTimeout, r.o.AnswerTimeout))
		case !m.resendAt.IsZero() && now.After(m.resendAt):
			// Lost or stuck? The same offer again is harmless: a browser that already
			// answered it answers again, and the duplicate answer is ignored.
			m.resendAt = time.Time{}
			m.log.Info("no answer yet: offer sent again")
			if err := m.o.Offer(m.lastOffer); err != nil {
				r.fail(m, fmt.Errorf("resend offer to %s: %w", m.id, err))
			}
		}
	}
}

// publish waits for m's camera (kindCamera) or screen share (kindScreen), offers it to the others (a screen only
// while m is the room's sharer) and forwards it until m leaves or its peer ends. It is one of m's goroutines.
func (r *Room) publish(m *member, kind string) {
	defer m.wg.Done()
	if kind == kindCamera {
		select {
		case <-m.peer.Connected():
			r.post(m.ctx, func() {
				if r.members[m.id] == m && !m.connected {
					m.connected = true
					if m.dirty {
						r.renegotiate(m)
					}
				}
			})
		case <-m.peer.Done():
			return
		case <-m.ctx.Done():
			return
		}
	}
	wait := m.peer.RemoteVideo
	if kind == kindScreen {
		wait = m.peer.RemoteScreen
	}
	remote, err := wait(m.ctx)
	if err != nil {
		return // left, or the peer ended before any frame
	}
	pub, err := newPublication(m, kind, remote, r.o.MinKeyframeGap, r.o.OnKeyframeRequest)
	if err != nil {
		m.log.Error("cannot forward video", "kind", kind, "err", err)
		return
	}
	published := make(chan bool, 1)
	r.post(m.ctx, func() {
		if r.members[m.id] != m { // left meanwhile: leave did not see pub, so nothing would stop its reads
			published <- false
			return
		}
		published <- true
		if c := pub.currentCodec(); c != r.codec && r.codec != "" {
			// Sent before the member was moved to the room's codec: forward only what it sends once it has.
			r.switchCodec(pub, r.codec)
		}
		if kind == kindScreen {
			m.screen = pub
			if r.sharer == m.id {
				r.showScreen(m)
			}
			m.log.Info("screen track arrived", "ssrc", uint32(remote.SSRC()), "codec", remote.Codec().MimeType, "sharing", r.sharer == m.id)
			return
		}
		m.pub = pub
		if r.o.OnVideoTrack != nil {
			r.o.OnVideoTrack(1)
		}
		for _, viewer := range r.members {
			if viewer != m && viewer.peer.Video() {
				r.subscribe(viewer, pub)
				r.renegotiate(viewer)
			}
		}
		pub.requestKeyframe(time.Now())
		m.log.Info("camera published", "ssrc", uint32(remote.SSRC()), "codec", remote.Codec().MimeType)
	})
	select {
	case ok := <-published:
		if !ok {
			return
		}
	case <-m.ctx.Done():
		return
	}
	if err := pub.forward(m.ctx); err != nil && !errors.Is(err, context.Canceled) {
		m.log.Debug("video forwarding ended", "kind", kind, "err", err)
	}
}

// ---- screen sharing ----

// share starts (on) or stops member id's screen share. One member shares at a time.
func (r *Room) share(id string, on bool) error {
	m := r.members[id]
	if m == nil {
		return fmt.Errorf("share from %s: %w", id, ErrUnknownMember)
	}
	if !on {
		if r.sharer != id {
			return nil
		}
		r.sharer = ""
		r.hideScreen(m)
		m.log.Info("screen share stopped")
		return nil
	}
	switch {
	case !m.peer.CanShare():
		return fmt.Errorf("share from %s: %w", id, ErrCannotShare)
	case r.sharer == id:
		return nil
	case r.sharer != "":
		return fmt.Errorf("share from %s: %s is sharing: %w", id, r.sharer, ErrShareBusy)
	}
	r.sharer = id
	if m.screen != nil { // a share before this one brought the track: show it now; else publish will
		r.showScreen(m)
	}
	m.log.Info("screen share started", "track", m.screen != nil)
	return nil
}

// showScreen forwards m's screen to every other member with video and asks it for key frames while they start.
func (r *Room) showScreen(m *member) {
	for _, viewer := range r.members {
		if viewer != m && viewer.peer.Video() {
			r.subscribe(viewer, m.screen)
			r.renegotiate(viewer)
		}
	}
	now := time.Now()
	m.screen.burstUntil = now.Add(r.o.KeyframeBurst)
	m.screen.requestKeyframe(now)
}

// hideScreen stops forwarding m's screen; the viewers' pages fall back to its camera.
func (r *Room) hideScreen(m *member) {
	if m.screen == nil {
		return
	}
	for _, viewer := range r.members {
		if r.unsubscribe(viewer, m.screen.key) {
			r.renegotiate(viewer)
		}
	}
}
