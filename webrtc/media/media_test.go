package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestAPI(t testing.TB, o Options) *API {
	t.Helper()
	o.ICEAddress = "127.0.0.1"
	o.IncludeLoopback = true
	o.Logger = quietLog()
	a, err := NewAPI(o)
	if err != nil {
		t.Fatalf("NewAPI: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// client is a full-ICE pion peer standing in for a browser.
type client struct {
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
}

func newClient(t testing.TB, codecs ...webrtc.RTPCodecParameters) *client {
	t.Helper()
	return newClientRole(t, webrtc.DTLSRoleAuto, codecs...)
}

// newClientRole makes a client that answers as the given DTLS role (pion answers an ICE-lite offer as DTLS
// server unless told; browsers answer as client).
func newClientRole(t testing.TB, role webrtc.DTLSRole, codecs ...webrtc.RTPCodecParameters) *client {
	t.Helper()
	me := &webrtc.MediaEngine{}
	for _, c := range codecs {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	if role != webrtc.DTLSRoleAuto {
		if err := se.SetAnsweringDTLSRole(role); err != nil {
			t.Fatal(err)
		}
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	c := &client{pc: pc}
	if len(codecs) > 0 {
		c.track, err = webrtc.NewTrackLocalStaticRTP(codecs[0].RTPCodecCapability, "a", "c")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTrack(c.track); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *client) offer(t testing.TB) string {
	t.Helper()
	o, err := c.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-g
	return c.pc.LocalDescription().SDP
}

// chanHandler is an RTPHandler that copies what it gets onto a channel.
type chanHandler struct{ ch chan []byte }

func (h *chanHandler) HandleRTP(pkt []byte) {
	select {
	case h.ch <- append([]byte(nil), pkt...):
	default:
	}
}
func (h *chanHandler) FlushRTP() {}

func TestAnswerCarriesAudioBothWays(t *testing.T) {
	// Firefox numbers Opus 109: the answer and what is sent must keep the offer's number.
	opus := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 109}
	cases := []struct {
		name     string
		offer    []webrtc.RTPCodecParameters // the client's, in its preference order
		wideband bool
		want     Codec
		pt       uint8
	}{
		// Opus offered first: a narrowband far end skips it for the G.711 law.
		{"PCMU", []webrtc.RTPCodecParameters{PCMU.Codec(), opus}, false, PCMU, 0},
		{"PCMA", []webrtc.RTPCodecParameters{PCMA.Codec(), opus}, false, PCMA, 8},
		// A browser at the far end: Opus, though G.711 is offered too.
		{"opus", []webrtc.RTPCodecParameters{opus, PCMU.Codec()}, true, Opus, 109},
	}
	for _, tc := range cases {
		law := tc.want
		for _, mode := range []Mode{ModeLean, ModePion} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				a := newTestAPI(t, Options{PionMedia: mode == ModePion})
				c := newClient(t, tc.offer...)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()

				srvTrack := make(chan *webrtc.TrackRemote, 1)
				c.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { srvTrack <- tr })
				p, answer, err := a.Answer(ctx, c.offer(t), PeerOptions{Wideband: tc.wideband})
				if err != nil {
					t.Fatalf("Answer: %v", err)
				}
				defer p.Close()
				if p.Codec() != law {
					t.Fatalf("codec = %s, want %s", p.Codec(), law)
				}
				if p.Mode() != mode {
					t.Fatalf("mode = %s, want %s", p.Mode(), mode)
				}
				if !strings.Contains(answer, "a=ice-lite") || !strings.Contains(answer, "a=candidate:") {
					t.Fatalf("answer lacks ice-lite or candidates:\n%s", answer)
				}
				if law != Opus && strings.Contains(answer, "opus") {
					t.Fatalf("answer offers opus:\n%s", answer)
				}
				if law == Opus && (!strings.Contains(answer, "a=rtpmap:109 opus/48000/2") || !strings.Contains(answer, "useinbandfec=1") ||
					strings.Contains(answer, "PCMU") || strings.Contains(answer, "usedtx=1")) {
					t.Fatalf("answer is not Opus 109 alone with FEC and without DTX:\n%s", answer)
				}
				h := &chanHandler{ch: make(chan []byte, 64)}
				p.SetRTPHandler(h)
				if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
					t.Fatal(err)
				}

				// Send until both directions have delivered a packet.
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					tick := time.NewTicker(20 * time.Millisecond)
					defer tick.Stop()
					pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 160)}
					b := NewBatch(1)
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						pkt.SequenceNumber++
						pkt.Timestamp += 160
						_ = c.track.WriteRTP(pkt)
						if mode == ModePion {
							_ = p.LocalTrack().WriteRTP(pkt)
						} else if err := p.AppendRTP(b, pkt.SequenceNumber, pkt.Timestamp, false, pkt.Payload, time.Now()); err == nil {
							_ = b.Flush()
						}
					}
				}()
				defer func() { close(stop); <-done }()

				if mode == ModePion {
					rt, err := p.RemoteTrack(ctx)
					if err != nil {
						t.Fatalf("server never got the browser track: %v", err)
					}
					if got := rt.Codec().MimeType; got != law.MimeType() {
						t.Fatalf("server track codec %s, want %s", got, law.MimeType())
					}
					if _, _, err := rt.ReadRTP(); err != nil {
						t.Fatalf("server read: %v", err)
					}
				} else {
					select {
					case pkt := <-h.ch:
						var rp rtp.Packet
						if err := rp.Unmarshal(pkt); err != nil || rp.PayloadType != tc.pt || len(rp.Payload) != 160 {
							t.Fatalf("server got %v (PT %d, %d bytes)", err, rp.PayloadType, len(rp.Payload))
						}
					case <-ctx.Done():
						t.Fatal("server never got the browser's RTP on the lean path")
					}
				}
				select {
				case ct := <-srvTrack:
					pk, _, err := ct.ReadRTP()
					if err != nil {
						t.Fatalf("client read: %v", err)
					}
					if pk.PayloadType != tc.pt || len(pk.Payload) != 160 {
						t.Fatalf("client got PT %d len %d", pk.PayloadType, len(pk.Payload))
					}
					if mode == ModePion { // the browser's receiver report reaches Quality (read once the mode is known)
						rr := &rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: uint32(ct.SSRC()), FractionLost: 64, TotalLost: 3}}}
						for p.Quality().Reports == 0 && ctx.Err() == nil {
							_ = c.pc.WriteRTCP([]rtcp.Packet{rr})
							time.Sleep(20 * time.Millisecond)
						}
						if q := p.Quality(); q.Reports == 0 || q.TotalLost != 3 || q.FractionLost != 0.25 {
							t.Fatalf("pion path: quality from the browser's receiver reports %+v", q)
						}
					}
				case <-ctx.Done():
					t.Fatal("client never got the server track")
				}
				if mode == ModeLean {
					st := p.RTCPStats()
					if st.FromBrowser.Packets == 0 || st.ToBrowser.Packets == 0 || st.Undecryptable != 0 {
						t.Fatalf("lean stats %+v", st)
					}
				}
				if err := p.Close(); err != nil {
					t.Fatalf("close: %v", err)
				}
				select {
				case <-p.Done():
				case <-time.After(time.Second):
					t.Fatal("Done not closed after Close")
				}
			})
		}
	}
}

func TestOfferForIncomingCall(t *testing.T) {
	for _, tc := range []struct {
		role webrtc.DTLSRole
		want Mode
	}{{webrtc.DTLSRoleClient, ModeLean}, {webrtc.DTLSRoleServer, ModePion}} {
		t.Run(tc.role.String(), func(t *testing.T) { testOfferForIncomingCall(t, tc.role, tc.want) })
	}
}

// testOfferForIncomingCall: a browser answering as DTLS client (setup:active, as browsers do) gets the lean path;
// one answering as server keeps pion's.
func testOfferForIncomingCall(t *testing.T, role webrtc.DTLSRole, want Mode) {
	a := newTestAPI(t, Options{})
	c := newClientRole(t, role, PCMA.Codec())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, offer, err := a.Offer(ctx, PCMA, PeerOptions{})
	if err != nil {
		t.Fatalf("Offer: %v", err)
	}
	defer p.Close()
	if !strings.Contains(offer, "PCMA/8000") || strings.Contains(offer, "PCMU") {
		t.Fatalf("offer not restricted to PCMA:\n%s", offer)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	ans, err := c.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	<-g
	connected := make(chan struct{}, 1)
	c.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			connected <- struct{}{}
		}
	})
	if err := p.SetAnswer(c.pc.LocalDescription().SDP); err != nil {
		t.Fatal(err)
	}
	if p.Mode() != want {
		t.Fatalf("incoming-call peer mode %s, want %s", p.Mode(), want)
	}
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatal("incoming-call peer never connected")
	}
}

func TestPublicIPAdvertised(t *testing.T) {
	a := newTestAPI(t, Options{PublicIPs: []string{"127.0.0.77"}})
	c := newClient(t, PCMU.Codec())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, answer, err := a.Answer(ctx, c.offer(t), PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !strings.Contains(answer, "127.0.0.77") || strings.Contains(answer, " 127.0.0.1 ") {
		t.Fatalf("answer must advertise only the public IP:\n%s", answer)
	}
}

func TestRefusedOffers(t *testing.T) {
	a := newTestAPI(t, Options{})
	dcOnly := func(t *testing.T) string {
		c := newClient(t)
		if _, err := c.pc.CreateDataChannel("x", nil); err != nil {
			t.Fatal(err)
		}
		return c.offer(t)
	}
	tests := []struct {
		name  string
		offer func(t *testing.T) string
		want  *Error
	}{
		{"G.722 only", func(*testing.T) string {
			return "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 9\r\na=rtpmap:9 G722/8000\r\n"
		}, ErrUnsupportedMedia},
		{"opus at 16k", func(*testing.T) string {
			return "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 opus/16000\r\n"
		}, ErrUnsupportedMedia},
		{"data channel only", dcOnly, ErrNoAudio},
		{"garbage", func(*testing.T) string { return "v=banana" }, ErrInvalidSDP},
		{"audio rejected", func(*testing.T) string {
			return "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\n"
		}, ErrNoAudio},
		{"pcmu at 16k", func(*testing.T) string {
			return "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 PCMU/16000\r\n"
		}, ErrUnsupportedMedia},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _, err := a.Answer(context.Background(), tc.offer(t), PeerOptions{})
			if p != nil {
				_ = p.Close()
			}
			if !errors.Is(err, tc.want) || ErrorCode(err) != tc.want.Code {
				t.Fatalf("err = %v (code %q), want %s", err, ErrorCode(err), tc.want.Code)
			}
		})
	}
}

func TestChooseLaw(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	tests := []struct {
		name string
		m    string
		want Law
	}{
		{"static pcmu without rtpmap", "m=audio 9 RTP/AVP 0\r\n", PCMU},
		{"pcma preferred", "m=audio 9 RTP/AVP 111 8 0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n", PCMA},
		{"video then audio", "m=video 9 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\nm=audio 9 RTP/AVP 0\r\n", PCMU},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := OfferedLaw(head + tc.m)
			if err != nil || got != tc.want {
				t.Fatalf("OfferedLaw = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestChooseCodec(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	const chrome = "m=audio 9 RTP/AVP 111 63 9 0 8 13\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=rtpmap:9 G722/8000\r\n" +
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n"
	tests := []struct {
		name     string
		m        string
		wideband bool
		want     Codec
	}{
		{"browser far end takes Opus", chrome, true, Opus},
		{"phone far end takes G.711 though Opus comes first", chrome, false, PCMU},
		{"Opus only to a phone: transcoded", "m=audio 9 RTP/AVP 109\r\na=rtpmap:109 OPUS/48000/2\r\n", false, Opus},
		{"G.711 only to a browser", "m=audio 9 RTP/AVP 8 0\r\n", true, PCMA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ChooseCodec(head+tc.m, tc.wideband)
			if err != nil || got != tc.want {
				t.Fatalf("ChooseCodec = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestNewAPIRejectsBadPublicIP(t *testing.T) {
	if _, err := NewAPI(Options{PublicIPs: []string{"example.com"}, ICEAddress: "127.0.0.1", Logger: quietLog()}); err == nil {
		t.Fatal("NewAPI accepted a host name as public IP")
	}
}

func TestCloseIdempotentAndNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	a, err := NewAPI(Options{ICEAddress: "127.0.0.1", IncludeLoopback: true, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, PCMU.Codec())
	p, _, err := a.Answer(context.Background(), c.offer(t), PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := p.Close(); err != nil {
			t.Fatalf("peer close: %v", err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("api close: %v", err)
		}
	}
	_ = c.pc.Close()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines left (was %d):\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestVideoOption(t *testing.T) {
	for _, video := range []bool{false, true} {
		t.Run(fmt.Sprint("video=", video), func(t *testing.T) {
			a := newTestAPI(t, Options{Video: video})
			vp8 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}
			me := &webrtc.MediaEngine{}
			_ = me.RegisterCodec(PCMU.Codec(), webrtc.RTPCodecTypeAudio)
			_ = me.RegisterCodec(vp8, webrtc.RTPCodecTypeVideo)
			pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio); err != nil {
				t.Fatal(err)
			}
			if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo); err != nil {
				t.Fatal(err)
			}
			offer, err := pc.CreateOffer(nil)
			if err != nil {
				t.Fatal(err)
			}
			p, answer, err := a.Answer(context.Background(), offer.SDP, PeerOptions{})
			if err != nil {
				t.Fatalf("Answer: %v", err)
			}
			defer p.Close()
			if got := strings.Contains(answer, "VP8/90000"); got != video {
				t.Fatalf("VP8 in answer = %v, want %v:\n%s", got, video, answer)
			}
			if !strings.Contains(answer, "PCMU/8000") {
				t.Fatalf("audio missing from answer:\n%s", answer)
			}
		})
	}
}

func TestICEServersCopied(t *testing.T) {
	a := newTestAPI(t, Options{ICEServers: []webrtc.ICEServer{{URLs: []string{"turn:127.0.0.1:3478"}, Username: "u", Credential: "p"}}})
	s := a.ICEServers()
	s[0].URLs[0] = "changed"
	if a.ICEServers()[0].URLs[0] != "turn:127.0.0.1:3478" || a.ICEServers()[0].Credential != "p" {
		t.Fatal("ICEServers leaks its internal slice")
	}
	if a.ICEPort() == 0 {
		t.Fatal("ICEPort not reported")
	}
}

// TestDoneWhenICEDies: the browser vanishes without a goodbye; the server
// peer must report it so the call owner can end the call.
func TestDoneWhenICEDies(t *testing.T) {
	a := newTestAPI(t, Options{DisconnectedTimeout: 300 * time.Millisecond, FailedTimeout: 800 * time.Millisecond})
	c := newClient(t, PCMU.Codec())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var states []webrtc.ICEConnectionState
	p, answer, err := a.Answer(ctx, c.offer(t), PeerOptions{OnICEState: func(s webrtc.ICEConnectionState) {
		mu.Lock()
		states = append(states, s)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	connected := make(chan struct{})
	var once sync.Once
	c.pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatal("never connected")
	}
	// Silence the browser without closing DTLS: its packets stop arriving.
	t0 := time.Now()
	if err := c.pc.GetSenders()[0].Transport().ICETransport().Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		mu.Lock()
		t.Logf("Done %v after the browser went silent; ICE states %v", time.Since(t0), states)
		mu.Unlock()
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("Done never closed; ICE states %v", states)
	}
}

// TestRenegotiationAPI: video tracks are added only to peers that negotiated
// video, and only one server offer may be outstanding.
func TestRenegotiationAPI(t *testing.T) {
	a := newTestAPI(t, Options{Video: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vp8 := VP8Codec()
	fwd, err := webrtc.NewTrackLocalStaticRTP(vp8.RTPCodecCapability, "v", "other")
	if err != nil {
		t.Fatal(err)
	}

	// Audio-only offer on a video-enabled API: no video, nothing to add.
	audioOnly, _, err := a.Answer(ctx, newClient(t, PCMU.Codec()).offer(t), PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer audioOnly.Close()
	if audioOnly.Video() {
		t.Fatal("audio-only peer reports video")
	}
	if _, err := audioOnly.AddTrack(fwd); !errors.Is(err, ErrNoVideo) {
		t.Fatalf("AddTrack on audio-only peer: %v", err)
	}

	// A browser offering audio and video.
	me := &webrtc.MediaEngine{}
	_ = me.RegisterCodec(PCMU.Codec(), webrtc.RTPCodecTypeAudio)
	_ = me.RegisterCodec(vp8, webrtc.RTPCodecTypeVideo)
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(k); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	p, answer, err := a.Answer(ctx, offer.SDP, PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	if !p.Video() {
		t.Fatal("audio+video peer reports no video")
	}
	audioTrack, err := webrtc.NewTrackLocalStaticRTP(PCMU.Codec().RTPCodecCapability, "a", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.AddTrack(audioTrack); err == nil {
		t.Fatal("AddTrack accepted an audio track")
	}
	sender, err := p.AddTrack(fwd)
	if err != nil {
		t.Fatal(err)
	}
	reoffer, err := p.Renegotiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(reoffer, "msid:other v") || !strings.Contains(reoffer, "VP8/90000") || !strings.Contains(reoffer, "a=sendrecv") {
		t.Fatalf("renegotiation offer lacks the forwarded track:\n%s", reoffer)
	}
	if _, err := p.Renegotiate(ctx); !errors.Is(err, ErrNotStable) {
		t.Fatalf("second offer while one is outstanding: %v", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: reoffer}); err != nil {
		t.Fatal(err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	if err := p.SetAnswer(ans.SDP); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveTrack(sender); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Renegotiate(ctx); err != nil {
		t.Fatalf("offer after the answer: %v", err)
	}
	// RemoteVideo gives up when the peer closes.
	_ = p.Close()
	if _, err := p.RemoteVideo(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("RemoteVideo after close: %v", err)
	}
}
