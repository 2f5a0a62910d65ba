package relay

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/webrtc/media"
)

// netClient is a full-ICE pion peer standing in for a browser that may only use the given network.
type netClient struct {
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
	heard atomic.Int64 // packets from Asterisk with the expected payload
}

func newNetClient(t *testing.T, network webrtc.NetworkType) *netClient {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(media.PCMU.Codec(), webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{network})
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	c := &netClient{pc: pc}
	c.track, err = webrtc.NewTrackLocalStaticRTP(media.PCMU.Codec().RTPCodecCapability, "a", "c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(c.track); err != nil {
		t.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if bytes.Equal(p.Payload, payload(160, 0xA5)) {
				c.heard.Add(1)
			}
		}
	})
	return c
}

// offer makes an offer (an ICE restart when restart is set) with every candidate in it.
func (c *netClient) offer(t *testing.T, restart bool) string {
	t.Helper()
	o, err := c.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: restart})
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

func (c *netClient) answer(t *testing.T, sdp string) {
	t.Helper()
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		t.Fatal(err)
	}
}

// TestRelayOverNetworkPaths: a real media peer and the relay, with Asterisk played by a UDP socket: a browser on
// ICE-TCP gets audio both ways on the lean path (the default for an audio-only call) and on pion's, and a browser
// whose ICE restart moves it to a new UDP address keeps audio both ways on the lean path, without the relay or
// "Asterisk" noticing anything.
func TestRelayOverNetworkPaths(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network webrtc.NetworkType
		mode    media.Mode
		restart bool
	}{
		{"tcp/lean", webrtc.NetworkTypeTCP4, media.ModeLean, false},
		{"tcp/pion", webrtc.NetworkTypeTCP4, media.ModePion, false},
		{"udp/lean restart", webrtc.NetworkTypeUDP4, media.ModeLean, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api, err := media.NewAPI(media.Options{ICEAddress: "127.0.0.1", IncludeLoopback: true, ICETCP: true,
				PionMedia: tc.mode == media.ModePion, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = api.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c := newNetClient(t, tc.network)
			peer, answer, err := api.Answer(ctx, c.offer(t, false), media.PeerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = peer.Close() })
			if peer.Mode() != tc.mode {
				t.Fatalf("mode %s, want %s", peer.Mode(), tc.mode)
			}

			// The relay starts before ICE has picked a path, as call control starts it.
			pool, ast := newPool(t), listen(t)
			sock, err := pool.Acquire()
			if err != nil {
				t.Fatal(err)
			}
			r, err := New(sock, peer, Options{Asterisk: addrOf(ast), PayloadType: 0})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Close(); sock.Release() })
			c.answer(t, answer)

			// Both ends send a frame every 20 ms: "Asterisk" toward the relay socket, the browser on its track.
			var fromBrowser atomic.Int64
			stop, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				toAst := &rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 0xA57}, Payload: payload(160, 0xA5)}
				toRelay := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload(160, 0xB0)}
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					toAst.SequenceNumber++
					toAst.Timestamp += 160
					_, _ = ast.WriteToUDPAddrPort(marshal(t, toAst), pool.Addr())
					toRelay.SequenceNumber++
					toRelay.Timestamp += 160
					_ = c.track.WriteRTP(toRelay)
				}
			}()
			defer func() { close(stop); <-done }()
			go func() {
				buf := make([]byte, 1500)
				for {
					n, _, err := ast.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					var p rtp.Packet
					if p.Unmarshal(buf[:n]) == nil && bytes.Equal(p.Payload, payload(160, 0xB0)) {
						fromBrowser.Add(1)
					}
				}
			}()
			both := func(what string) {
				t.Helper()
				b0, a0 := fromBrowser.Load(), c.heard.Load()
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					if fromBrowser.Load() > b0+10 && c.heard.Load() > a0+10 {
						return
					}
				}
				t.Fatalf("%s: audio did not flow both ways through the relay (browser→Asterisk %d→%d, Asterisk→browser %d→%d)",
					what, b0, fromBrowser.Load(), a0, c.heard.Load())
			}
			both("connected")
			if pair, err := c.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair(); err != nil || pair == nil ||
				pair.Local.Protocol.String() != tc.network.Protocol() {
				t.Fatalf("selected pair %v (%v), want %s", pair, err, tc.network.Protocol())
			}
			if tc.restart {
				before, _ := c.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
				ans, err := peer.Restart(ctx, c.offer(t, true))
				if err != nil {
					t.Fatalf("restart: %v", err)
				}
				c.answer(t, ans)
				both("after the ICE restart")
				after, _ := c.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
				if after == nil || before == nil || after.Local.Port == before.Local.Port {
					t.Fatalf("the browser did not move: selected pair %v before, %v after", before, after)
				}
			}
			st := r.Stats()
			if st.Lean != (tc.mode == media.ModeLean) || st.ToAsterisk.Drops != 0 {
				t.Fatalf("relay stats %+v", st)
			}
			if st.Lean && (st.RTCP.Undecryptable != 0 || st.RTCP.FromBrowser.Packets == 0) {
				t.Fatalf("lean RTCP stats %+v", st.RTCP)
			}
			select {
			case <-peer.Done():
				t.Fatal("peer done while media flows")
			default:
			}
		})
	}
}
