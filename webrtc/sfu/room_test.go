package sfu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/webrtc/media"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newAPI(t testing.TB) *media.API {
	t.Helper()
	a, err := media.NewAPI(media.Options{ICEAddress: "127.0.0.1", IncludeLoopback: true, Video: true, Logger: quietLog()})
	if err != nil {
		t.Fatalf("NewAPI: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// browser is a full-ICE pion peer standing in for a browser in a room: PCMU
// audio, a VP8 camera (unless camera is false) and the server's offers
// answered on its own goroutine, the way patchbay.js does.
type browser struct {
	t   testing.TB
	id  string
	pc  *webrtc.PeerConnection
	cam *webrtc.TrackLocalStaticRTP
	// screen, if set, is a second video section (withScreen), sent on while sharing is set.
	screen  *webrtc.TrackLocalStaticRTP
	sharing atomic.Bool
	peer    *media.Peer
	offer   chan string // server offers, answered by run

	mu       sync.Mutex
	received map[string]*atomic.Int64 // stream id (member id) → RTP packets received
	plis     atomic.Int64             // PLIs the server sent to our camera
	answers  atomic.Int64

	stop chan struct{}
	wg   sync.WaitGroup
}

func newBrowser(t testing.TB, a *media.API, id string, camera bool) *browser {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(media.PCMU.Codec(), webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	if err := me.RegisterCodec(media.VP8Codec(), webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, id: id, pc: pc, offer: make(chan string, 8), received: map[string]*atomic.Int64{}, stop: make(chan struct{})}
	mic, err := webrtc.NewTrackLocalStaticRTP(media.PCMU.Codec().RTPCodecCapability, "mic", id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(mic); err != nil {
		t.Fatal(err)
	}
	if camera {
		b.cam, err = webrtc.NewTrackLocalStaticRTP(media.VP8Codec().RTPCodecCapability, "cam", id)
		if err != nil {
			t.Fatal(err)
		}
		sender, err := pc.AddTrack(b.cam)
		if err != nil {
			t.Fatal(err)
		}
		b.wg.Add(1)
		go func() { // count the server's key frame requests
			defer b.wg.Done()
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if _, ok := p.(*rtcp.PictureLossIndication); ok {
						b.plis.Add(1)
					}
				}
			}
		}()
	} else if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		b.mu.Lock()
		n := b.received[tr.StreamID()]
		if n == nil {
			n = &atomic.Int64{}
			b.received[tr.StreamID()] = n
		}
		b.mu.Unlock()
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			n.Add(1)
		}
	})
	t.Cleanup(b.close)
	return b
}

// connect makes the join offer, has the server answer it and joins the room.
func (b *browser) connect(ctx context.Context, a *media.API, r *Room) {
	b.t.Helper()
	b.connectPeer(ctx, a)
	b.startAnswering(func(ctx context.Context, sdp string) error { return r.Answer(ctx, b.id, sdp) })
	if err := r.Join(ctx, b.id, b.peer, b.memberOptions()); err != nil {
		b.t.Fatalf("%s: Join: %v", b.id, err)
	}
}

// connectPeer makes the join offer and has the server answer it.
func (b *browser) connectPeer(ctx context.Context, a *media.API) {
	b.t.Helper()
	o, err := b.pc.CreateOffer(nil)
	if err != nil {
		b.t.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(o); err != nil {
		b.t.Fatal(err)
	}
	<-g
	p, answer, err := a.Answer(ctx, b.pc.LocalDescription().SDP, media.PeerOptions{Logger: quietLog()})
	if err != nil {
		b.t.Fatalf("%s: Answer: %v", b.id, err)
	}
	b.peer = p
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) startAnswering(answer func(ctx context.Context, sdp string) error) {
	b.wg.Add(2)
	go b.answerOffers(answer)
	go b.send()
}

func (b *browser) memberOptions() MemberOptions {
	return MemberOptions{Offer: func(sdp string) error {
		select {
		case b.offer <- sdp:
			return nil
		default:
			return errors.New("offer queue full")
		}
	}}
}

func (b *browser) answerOffers(answer func(ctx context.Context, sdp string) error) {
	defer b.wg.Done()
	for {
		select {
		case <-b.stop:
			return
		case sdp := <-b.offer:
			if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
				if !b.stopped() {
					b.t.Errorf("%s: apply server offer: %v", b.id, err)
				}
				return
			}
			ans, err := b.pc.CreateAnswer(nil)
			if err == nil {
				err = b.pc.SetLocalDescription(ans)
			}
			if err != nil {
				if !b.stopped() {
					b.t.Errorf("%s: answer server offer: %v", b.id, err)
				}
				return
			}
			// A renegotiation answered after the member left (its Leave raced the room's offer) finds no member.
			if err := answer(context.Background(), b.pc.LocalDescription().SDP); err != nil && !errors.Is(err, ErrRoomClosed) && !errors.Is(err, ErrUnknownMember) {
				b.t.Errorf("%s: room.Answer: %v", b.id, err)
			}
			b.answers.Add(1)
		}
	}
}

// send plays 20 ms of audio and a video packet every 20 ms.
func (b *browser) send() {
	defer b.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true}, Payload: make([]byte, 160)}
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		pkt.SequenceNumber++
		pkt.Timestamp += 1800
		if b.cam != nil {
			_ = b.cam.WriteRTP(pkt)
		}
		if b.screen != nil && b.sharing.Load() {
			_ = b.screen.WriteRTP(pkt)
		}
	}
}

func (b *browser) got(from string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := b.received[from]; n != nil {
		return n.Load()
	}
	return 0
}

func (b *browser) stopped() bool {
	select {
	case <-b.stop:
		return true
	default:
		return false
	}
}

func (b *browser) close() {
	select {
	case <-b.stop:
		return
	default:
	}
	close(b.stop)
	_ = b.pc.Close()
	if b.peer != nil {
		_ = b.peer.Close()
	}
	b.wg.Wait()
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receives waits until b has fresh packets from each of from.
func receives(t testing.TB, b *browser, from ...string) {
	t.Helper()
	for _, f := range from {
		start := b.got(f)
		waitFor(t, fmt.Sprintf("%s to receive video from %s", b.id, f), 10*time.Second, func() bool { return b.got(f) > start+5 })
	}
}

func stats(t testing.TB, r *Room) map[string]MemberStats {
	t.Helper()
	st, err := r.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func receiving(t testing.TB, r *Room, id string) []string {
	return stats(t, r)[id].Receiving
}

func TestRoomForwardsAndRenegotiatesOnJoinAndLeave(t *testing.T) {
	checkGoroutines(t)
	a := newAPI(t)
	r := NewRoom("r1", Options{Logger: quietLog()})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	alice := newBrowser(t, a, "alice", true)
	alice.connect(ctx, a, r)
	bob := newBrowser(t, a, "bob", true)
	bob.connect(ctx, a, r)
	receives(t, alice, "bob")
	receives(t, bob, "alice")

	carol := newBrowser(t, a, "carol", true)
	carol.connect(ctx, a, r)
	receives(t, carol, "alice", "bob")
	receives(t, alice, "carol")
	receives(t, bob, "carol")
	if got := receiving(t, r, "alice"); !slices.Equal(got, []string{"bob", "carol"}) {
		t.Fatalf("alice receives %v", got)
	}

	// Bob leaves: the others get an offer without his camera and keep the rest.
	before := alice.answers.Load()
	if err := r.Leave(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	bob.close()
	waitFor(t, "alice to answer the leave offer", 5*time.Second, func() bool { return alice.answers.Load() > before })
	waitFor(t, "alice to stop receiving bob", 5*time.Second, func() bool {
		return slices.Equal(receiving(t, r, "alice"), []string{"carol"})
	})
	receives(t, alice, "carol")
	receives(t, carol, "alice")
	if n := stats(t, r)["carol"].Receiving; !slices.Equal(n, []string{"alice"}) {
		t.Fatalf("carol receives %v after bob left", n)
	}
	// Leaving again is harmless.
	if err := r.Leave(ctx, "bob"); err != nil {
		t.Fatal(err)
	}

	// A newcomer reuses the transceiver bob's camera had: m-lines do not pile up.
	dave := newBrowser(t, a, "dave", true)
	dave.connect(ctx, a, r)
	receives(t, alice, "dave")
	receives(t, dave, "alice", "carol")
	if n := len(alice.pc.GetTransceivers()); n != 3 {
		t.Errorf("alice has %d transceivers, want 3 (audio, own camera + carol, dave in bob's old slot)", n)
	}
	ids, _ := r.Members(ctx)
	if !slices.Equal(ids, []string{"alice", "carol", "dave"}) {
		t.Fatalf("members %v", ids)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Join(ctx, "eve", alice.peer, MemberOptions{Offer: func(string) error { return nil }}); !errors.Is(err, ErrRoomClosed) {
		t.Fatalf("join after close: %v", err)
	}
	for _, b := range []*browser{alice, carol, dave} {
		b.close()
	}
}

func TestKeyframesOnJoinAndForwardedFromViewers(t *testing.T) {
	checkGoroutines(t)
	a := newAPI(t)
	var hookPLIs, tracks atomic.Int64
	r := NewRoom("r2", Options{Logger: quietLog(), KeyframeInterval: 100 * time.Millisecond,
		KeyframeBurst: 300 * time.Millisecond, MinKeyframeGap: 50 * time.Millisecond,
		OnKeyframeRequest: func() { hookPLIs.Add(1) }, OnVideoTrack: func(d int) { tracks.Add(int64(d)) }})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	alice := newBrowser(t, a, "alice", true)
	alice.connect(ctx, a, r)
	// Publishing asks for a key frame at once, before anyone watches.
	waitFor(t, "a PLI when alice's camera is published", 5*time.Second, func() bool { return alice.plis.Load() >= 1 })
	time.Sleep(300 * time.Millisecond)
	quiet := alice.plis.Load()
	time.Sleep(300 * time.Millisecond)
	if n := alice.plis.Load(); n != quiet {
		t.Fatalf("PLIs kept coming with no new viewer: %d then %d", quiet, n)
	}

	// A new viewer: a burst of PLIs to the camera it watches.
	bob := newBrowser(t, a, "bob", false)
	bob.connect(ctx, a, r)
	receives(t, bob, "alice")
	waitFor(t, "PLIs for bob", 5*time.Second, func() bool { return alice.plis.Load() >= quiet+2 })
	if st := stats(t, r)["alice"]; st.KeyframeRequests < 3 || st.ForwardedPackets == 0 {
		t.Fatalf("alice stats %+v", st)
	} else if hookPLIs.Load() < int64(st.KeyframeRequests) || tracks.Load() != 1 {
		t.Fatalf("hooks heard %d PLIs and %d tracks; stats say %d PLIs and one camera", hookPLIs.Load(), tracks.Load(), st.KeyframeRequests)
	}
	if st := stats(t, r)["bob"]; st.Publishing {
		t.Fatalf("bob has no camera but publishes: %+v", st)
	}

	// The viewer's own PLI reaches the camera.
	time.Sleep(400 * time.Millisecond) // the burst is over
	before := alice.plis.Load()
	var ssrc uint32
	for _, tr := range bob.pc.GetTransceivers() {
		if tr.Receiver() != nil && tr.Kind() == webrtc.RTPCodecTypeVideo {
			if tracks := tr.Receiver().Tracks(); len(tracks) > 0 && tracks[0].StreamID() == "alice" {
				ssrc = uint32(tracks[0].SSRC())
			}
		}
	}
	if ssrc == 0 {
		t.Fatal("bob has no track from alice")
	}
	if err := bob.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob's PLI to reach alice", 5*time.Second, func() bool { return alice.plis.Load() > before })
	r.Close()
	alice.close()
	bob.close()
	if tracks.Load() != 0 {
		t.Errorf("track gauge %d after the room closed", tracks.Load())
	}
}

func TestAudioOnlyMemberGetsNoOffers(t *testing.T) {
	checkGoroutines(t)
	a := newAPI(t)
	r := NewRoom("r3", Options{Logger: quietLog()})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice := newBrowser(t, a, "alice", true)
	alice.connect(ctx, a, r)

	// An audio-only browser: its offer has no video section.
	me := &webrtc.MediaEngine{}
	_ = me.RegisterCodec(media.PCMU.Codec(), webrtc.RTPCodecTypeAudio)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, answer, err := a.Answer(ctx, offer.SDP, media.PeerOptions{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Video() || strings.Contains(answer, "m=video") {
		t.Fatalf("audio-only peer has video:\n%s", answer)
	}
	offers := 0
	if err := r.Join(ctx, "phoneish", p, MemberOptions{Offer: func(string) error { offers++; return nil }}); err != nil {
		t.Fatal(err)
	}
	if err := r.Join(ctx, "phoneish", p, MemberOptions{Offer: func(string) error { return nil }}); !errors.Is(err, ErrDuplicateMember) {
		t.Fatalf("duplicate join: %v", err)
	}
	waitFor(t, "alice publishing", 5*time.Second, func() bool { return stats(t, r)["alice"].Publishing })
	if err := r.Answer(ctx, "phoneish", answer); !errors.Is(err, ErrNoOffer) {
		t.Fatalf("stale answer: %v", err)
	}
	if err := r.Answer(ctx, "nobody", answer); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("answer from stranger: %v", err)
	}
	if err := r.Leave(ctx, "phoneish"); err != nil {
		t.Fatal(err)
	}
	if offers != 0 {
		t.Fatalf("audio-only member got %d offers", offers)
	}
	r.Close()
	alice.close()
}

func TestUnansweredOfferFailsMember(t *testing.T) {
	checkGoroutines(t)
	a := newAPI(t)
	r := NewRoom("r4", Options{Logger: quietLog(), AnswerTimeout: 200 * time.Millisecond, KeyframeInterval: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice := newBrowser(t, a, "alice", true)
	alice.connect(ctx, a, r)
	waitFor(t, "alice publishing", 5*time.Second, func() bool { return stats(t, r)["alice"].Publishing })

	// A browser that connects but never answers the server's offers.
	mute := newBrowser(t, a, "mute", false)
	mute.connectPeer(ctx, a)
	p := mute.peer
	failed := make(chan error, 1)
	var offers []string
	if err := r.Join(ctx, "mute", p, MemberOptions{
		Offer:  func(sdp string) error { offers = append(offers, sdp); return nil },
		Failed: func(err error) { failed <- err },
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-failed:
		if !errors.Is(err, ErrAnswerTimeout) {
			t.Fatalf("Failed(%v), want ErrAnswerTimeout", err)
		}
	case <-ctx.Done():
		t.Fatal("Failed never called")
	}
	// Offers wait for the connection; the one unanswered offer went out twice, unchanged.
	if len(offers) != 2 || offers[0] != offers[1] {
		t.Fatalf("%d offers (want the same one twice)", len(offers))
	}
	if err := r.Leave(ctx, "mute"); err != nil {
		t.Fatal(err)
	}
	r.Close()
	alice.close()
	mute.close()
}

// TestForwardPacketDoesNotAllocate: the per-packet path (parse, strip
// extensions, write to the shared track) allocates nothing.
func TestForwardPacketDoesNotAllocate(t *testing.T) {
	local, err := webrtc.NewTrackLocalStaticRTP(media.VP8Codec().RTPCodecCapability, "v", "s")
	if err != nil {
		t.Fatal(err)
	}
	p := &publication{owner: &member{id: "x", log: quietLog()}}
	p.local.Store(local)
	src := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 5, Extension: true,
		ExtensionProfile: rtp.ExtensionProfileOneByte}, Payload: make([]byte, 1000)}
	if err := src.SetExtension(3, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	b, err := src.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var pkt rtp.Packet
	_ = p.forwardPacket(&pkt, b)
	if n := testing.AllocsPerRun(1000, func() { _ = p.forwardPacket(&pkt, b) }); n != 0 {
		t.Fatalf("forwardPacket allocates %.1f times per packet", n)
	}
	if pkt.Extension || len(pkt.Extensions) != 0 {
		t.Fatal("extensions not stripped")
	}
}

func TestWantsKeyframe(t *testing.T) {
	mk := func(ps ...rtcp.Packet) []byte {
		b, err := rtcp.Marshal(ps)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rr := &rtcp.ReceiverReport{SSRC: 1}
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"pli", mk(&rtcp.PictureLossIndication{MediaSSRC: 1}), true},
		{"fir after RR", mk(rr, &rtcp.FullIntraRequest{MediaSSRC: 1, FIR: []rtcp.FIREntry{{SSRC: 1}}}), true},
		{"rr only", mk(rr), false},
		{"nack", mk(&rtcp.TransportLayerNack{MediaSSRC: 1, Nacks: []rtcp.NackPair{{PacketID: 1}}}), false},
		{"garbage", []byte{0xff, 0, 0}, false},
		{"truncated", []byte{0x80, 201, 0xff, 0xff, 0, 0, 0, 0}, false},
		{"empty", nil, false},
	} {
		if got := wantsKeyframe(tc.b); got != tc.want {
			t.Errorf("%s: wantsKeyframe = %v", tc.name, got)
		}
	}
}

// checkGoroutines fails the test if it leaves goroutines behind. Register it
// first, so it runs after every other cleanup.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines left (was %d):\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
	})
}
