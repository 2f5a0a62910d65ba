// Package sfu forwards browsers' cameras and screen shares to the other
// browsers of a room through Patchbay's own pion endpoint. Audio is not its
// business: it stays on the Asterisk mix path (internal/relay). Each browser's
// single *media.Peer carries its audio to Asterisk and, when video was
// negotiated, its camera (and its screen, while it shares) to the Room and
// everyone else's back.
//
// One member at a time shares its screen (Share). The screen travels on the
// browser's second video section, reserved by its join offer, and is forwarded
// as its own stream ("screen-" + member id) only while the member is the
// room's sharer; stopping it takes that stream away from the viewers again.
//
// Video is forwarded as encoded, so a room has one codec every member decodes:
// H.264 (constrained baseline) while every member can, VP8 from the moment one
// cannot (the publishers are moved with an offer listing VP8 first).
//
// A Room renegotiates with server-initiated offers on the existing peer
// (signalling "offer" server→browser, "answer" back): one offer outstanding
// per member, changes that arrive meanwhile folded into one follow-up offer.
// Key frames are asked of a camera (PLI) when it starts, for a few seconds
// after a new viewer starts receiving it, and whenever a viewer asks.
//
// The owner of a browser's call drives the Room:
//
//	room := sfu.NewRoom("r-42", sfu.Options{Logger: log})
//	// after the join answer has been sent to the browser:
//	err := room.Join(ctx, participantID, peer, sfu.MemberOptions{
//	    Offer:  func(sdp string) error { return s.Send(ctx, signal.Message{Type: signal.TypeOffer, CallID: id, SDP: sdp}) },
//	    Failed: func(err error) { /* end this browser's call */ },
//	})
//	err = room.Answer(ctx, participantID, msg.SDP) // on the browser's "answer" to an "offer"
//	room.Leave(ctx, participantID)                 // before closing the peer
//	room.Close()                                   // when the room ends
package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/patchbay/patchbay/webrtc/media"
)

// Errors returned by Room methods.
var (
	// ErrRoomClosed: the room was closed.
	ErrRoomClosed = errors.New("sfu: room closed")
	// ErrDuplicateMember: Join with an id already in the room.
	ErrDuplicateMember = errors.New("sfu: member already in the room")
	// ErrUnknownMember: Answer for an id not in the room.
	ErrUnknownMember = errors.New("sfu: no such member in the room")
	// ErrNoOffer: an answer arrived while no offer was outstanding (a stale
	// or duplicate answer); the peer is left as it was.
	ErrNoOffer = errors.New("sfu: no offer outstanding for this member")
	// ErrAnswerTimeout is what Failed receives when a browser never answered.
	ErrAnswerTimeout = errors.New("sfu: browser did not answer the renegotiation offer")
	// ErrShareBusy: another member is sharing its screen.
	ErrShareBusy = errors.New("sfu: another member is sharing its screen")
	// ErrCannotShare: the member's join offer had no second video section to send a screen on (or no video).
	ErrCannotShare = errors.New("sfu: this member's join offer has no screen section")
)

// Options tune a Room. Zero values take the defaults.
type Options struct {
	Logger *slog.Logger
	// KeyframeInterval is how often a camera is asked for a key frame while
	// a new viewer may still be waiting for one (default 1 s).
	KeyframeInterval time.Duration
	// KeyframeBurst is how long after a viewer starts receiving a camera
	// the room keeps asking (default 3 s): the first key frame may go out
	// before the viewer's DTLS is up.
	KeyframeBurst time.Duration
	// AnswerTimeout bounds the wait for a browser's answer (default 10 s);
	// after it the member's Failed runs.
	AnswerTimeout time.Duration
	// MinKeyframeGap rate-limits PLIs toward one camera, whoever asks
	// (default 250 ms).
	MinKeyframeGap time.Duration
	// OnVideoTrack, if set, hears +1 when a camera starts being forwarded and
	// -1 when it stops; OnKeyframeRequest, each PLI sent to a camera. Both
	// are for metrics: they must return at once.
	OnVideoTrack      func(delta int)
	OnKeyframeRequest func()
}

// MemberOptions are the hooks of one member. Both run on the room's
// goroutine: keep them short and never block (signal.Session.Send does not).
type MemberOptions struct {
	// Offer sends a server-initiated offer to the browser.
	Offer func(sdp string) error
	// Failed reports that the member can no longer be served (no answer in
	// time, an answer refused, an offer that could not be made or sent).
	// The owner should end the member's call and Leave. Optional.
	Failed func(err error)
}

// MemberStats describe one member, for tests and diagnostics.
type MemberStats struct {
	// Publishing: its camera track arrived and is being forwarded.
	Publishing bool
	// ForwardedPackets is the number of its camera's RTP packets read and
	// written to the shared track (one write serves every viewer).
	ForwardedPackets uint64
	// KeyframeRequests is the number of PLIs sent to its camera.
	KeyframeRequests uint64
	// Receiving lists the members whose cameras it receives (negotiated).
	Receiving []string
	// Offers is the number of renegotiation offers sent to it.
	Offers int
	// Codec is the video codec its browser is asked to send (the room's, when it can).
	Codec media.VideoCodec
	// Sharing: it is the room's screen sharer. ScreenPackets counts its screen's RTP packets forwarded.
	Sharing       bool
	ScreenPackets uint64
}

// Room is one SFU room. All its state belongs to one goroutine; methods hand
// it work and wait for the result.
type Room struct {
	id  string
	o   Options
	log *slog.Logger

	work chan func()
	stop chan struct{} // closed by Close: the loop ends
	done chan struct{} // closed when the loop has ended

	closeOnce sync.Once

	// Owned by the loop goroutine.
	members map[string]*member
	sharer  string           // the member sharing its screen, or ""
	codec   media.VideoCodec // the room's video codec (roomCodec); "" until the first member with video
}

// NewRoom starts a room's goroutine; Close stops it.
func NewRoom(id string, o Options) *Room {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.KeyframeInterval <= 0 {
		o.KeyframeInterval = time.Second
	}
	if o.KeyframeBurst <= 0 {
		o.KeyframeBurst = 3 * time.Second
	}
	if o.AnswerTimeout <= 0 {
		o.AnswerTimeout = 10 * time.Second
	}
	if o.MinKeyframeGap <= 0 {
		o.MinKeyframeGap = 250 * time.Millisecond
	}
	r := &Room{
		id:      id,
		o:       o,
		log:     o.Logger.With("sfu_room", id),
		work:    make(chan func()),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		members: map[string]*member{},
	}
	go r.loop()
	return r
}

func (r *Room) loop() {
	defer close(r.done)
	tick := time.NewTicker(r.o.KeyframeInterval)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case f := <-r.work:
			f()
		case now := <-tick.C:
			r.tick(now)
		}
	}
}

// do runs f on the room goroutine and waits for it.
func (r *Room) do(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case r.work <- func() { f(); close(ran) }:
	case <-r.stop:
		return ErrRoomClosed
	case <-ctx.Done():
		return fmt.Errorf("sfu room %s busy: %w", r.id, ctx.Err())
	}
	<-ran
	return nil
}

// post runs f on the room goroutine unless the room or ctx ends first; for
// member goroutines, which must never wait on a room that is waiting on them.
func (r *Room) post(ctx context.Context, f func()) {
	select {
	case r.work <- f:
	case <-r.stop:
	case <-ctx.Done():
	}
}

// Join adds a browser whose peer has already answered its join offer (the
// answer must be on its way to the browser first: the room may send an
// offer at once). Its camera, if any, is forwarded to everyone else with
// video, and their cameras to it. A peer without video joins as a member
// that neither sends nor receives video.
func (r *Room) Join(ctx context.Context, id string, p *media.Peer, o MemberOptions) error {
	if o.Offer == nil {
		return errors.New("sfu join: MemberOptions.Offer is required")
	}
	var err error
	if derr := r.do(ctx, func() { err = r.join(id, p, o) }); derr != nil {
		return fmt.Errorf("join %s to sfu room %s: %w", id, r.id, derr)
	}
	return err
}

// Answer applies the browser's answer to the member's outstanding offer.
// An answer with no offer outstanding is refused with ErrNoOffer.
func (r *Room) Answer(ctx context.Context, id, sdp string) error {
	var err error
	if derr := r.do(ctx, func() { err = r.answer(id, sdp) }); derr != nil {
		return fmt.Errorf("answer from %s in sfu room %s: %w", id, r.id, derr)
	}
	return err
}

// Leave removes a member: its camera leaves the other members' peers (they
// get an offer), it stops receiving, and its goroutines have stopped when
// Leave returns. The peer itself is the caller's to close. Leaving twice, or
// after Close, is a no-op.
func (r *Room) Leave(ctx context.Context, id string) error {
	var m *member
	if err := r.do(ctx, func() { m = r.leave(id) }); err != nil {
		if errors.Is(err, ErrRoomClosed) {
			return nil
		}
		return fmt.Errorf("leave sfu room %s: %w", r.id, err)
	}
	if m != nil {
		m.wg.Wait()
	}
	return nil
}

// Members lists the member ids, sorted.
func (r *Room) Members(ctx context.Context) ([]string, error) {
	var ids []string
	err := r.do(ctx, func() {
		for id := range r.members {
			ids = append(ids, id)
		}
	})
	sort.Strings(ids)
	return ids, err
}

// Stats reports every member's forwarding counters.
func (r *Room) Stats(ctx context.Context) (map[string]MemberStats, error) {
	out := map[string]MemberStats{}
	err := r.do(ctx, func() {
		for id, m := range r.members {
			st := MemberStats{Offers: m.offers, Sharing: r.sharer == id}
			if m.peer.Video() {
				st.Codec = m.peer.VideoCodec()
			}
			if m.pub != nil {
				st.Publishing = true
				st.ForwardedPackets = m.pub.packets.Load()
				st.KeyframeRequests = m.pub.plis.Load()
			}
			if m.screen != nil {
				st.ScreenPackets = m.screen.packets.Load()
			}
			for pid, s := range m.subs {
				if s.live {
					st.Receiving = append(st.Receiving, pid)
				}
			}
			sort.Strings(st.Receiving)
			out[id] = st
		}
	})
	return out, err
}

// Share starts (on) or stops forwarding member id's screen to the others. One member shares at a time: starting
// while another shares fails with ErrShareBusy, and a member whose join offer reserved no screen section gets
// ErrCannotShare. Starting twice, or stopping a share that is not on, is a no-op. Anyone may stop any share here:
// who is allowed to is the caller's decision (a moderator may stop another's).
func (r *Room) Share(ctx context.Context, id string, on bool) error {
	var err error
	if derr := r.do(ctx, func() { err = r.share(id, on) }); derr != nil {
		return fmt.Errorf("share in sfu room %s: %w", r.id, derr)
	}
	return err
}

// Codec is the room's video codec ("" before any member with video).
func (r *Room) Codec(ctx context.Context) (media.VideoCodec, error) {
	var c media.VideoCodec
	err := r.do(ctx, func() { c = r.codec })
	return c, err
}

// Sharer is the member sharing its screen, or "".
func (r *Room) Sharer(ctx context.Context) (string, error) {
	var id string
	err := r.do(ctx, func() { id = r.sharer })
	return id, err
}

// Close removes every member (without offers: the room is ending) and stops
// the room's goroutines. Safe to call more than once.
func (r *Room) Close() error {
	r.closeOnce.Do(func() {
		var gone []*member
		_ = r.do(context.Background(), func() {
			for _, m := range r.members {
				m.broken = true // no offers on the way out
			}
			for id := range r.members {
				gone = append(gone, r.leave(id))
			}
		})
		close(r.stop)
		<-r.done
		for _, m := range gone {
			m.wg.Wait()
		}
	})
	return nil
}
