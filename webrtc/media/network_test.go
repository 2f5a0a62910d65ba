package media

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// newTCPClient is a full-ICE pion peer that may only use ICE-TCP (active), as a browser behind a UDP-blocking
// firewall does.
func newTCPClient(t testing.TB) *client {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(PCMU.Codec(), webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	c := &client{pc: pc}
	c.track, err = webrtc.NewTrackLocalStaticRTP(PCMU.Codec().RTPCodecCapability, "a", "c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(c.track); err != nil {
		t.Fatal(err)
	}
	return c
}

// flow sends RTP both ways every 20 ms until stop and counts what each side receives, on whichever path the peer
// took: the tap (an RTPHandler and AppendRTP) on the lean path, the tracks on pion's.
type flow struct {
	toServer, toClient atomic.Int64
	stop               chan struct{}
	done               chan struct{}
}

// countingHandler counts the RTP a lean peer hands over.
type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) HandleRTP([]byte) { h.n.Add(1) }
func (h countingHandler) FlushRTP()        {}

func startFlow(t *testing.T, ctx context.Context, c *client, p *Peer) *flow {
	t.Helper()
	f := &flow{stop: make(chan struct{}), done: make(chan struct{})}
	clientTrack := make(chan *webrtc.TrackRemote, 1)
	c.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { clientTrack <- tr })
	lean := p.Mode() == ModeLean
	if lean {
		p.SetRTPHandler(countingHandler{&f.toServer})
	}
	go func() {
		defer close(f.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 160)}
		b := NewBatch(1)
		for {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			pkt.SequenceNumber++
			pkt.Timestamp += 160
			_ = c.track.WriteRTP(pkt)
			if lean {
				if err := p.AppendRTP(b, pkt.SequenceNumber, pkt.Timestamp, false, pkt.Payload, time.Now()); err == nil {
					_ = b.Flush()
				}
			} else {
				_ = p.LocalTrack().WriteRTP(pkt)
			}
		}
	}()
	if !lean {
		go func() {
			rt, err := p.RemoteTrack(ctx)
			if err != nil {
				return
			}
			for {
				if _, _, err := rt.ReadRTP(); err != nil {
					return
				}
				f.toServer.Add(1)
			}
		}()
	}
	go func() {
		select {
		case tr := <-clientTrack:
			for {
				if _, _, err := tr.ReadRTP(); err != nil {
					return
				}
				f.toClient.Add(1)
			}
		case <-ctx.Done():
		}
	}()
	t.Cleanup(func() { close(f.stop); <-f.done })
	return f
}

// waitMore waits until both directions have received more packets than they had.
func (f *flow) waitMore(t *testing.T, what string, d time.Duration) {
	t.Helper()
	s0, c0 := f.toServer.Load(), f.toClient.Load()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f.toServer.Load() > s0+5 && f.toClient.Load() > c0+5 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: audio did not flow both ways within %s (to server %d→%d, to client %d→%d)",
		what, d, s0, f.toServer.Load(), c0, f.toClient.Load())
}

func answerAndApply(t *testing.T, ctx context.Context, a *API, c *client) (*Peer, string) {
	t.Helper()
	p, answer, err := a.Answer(ctx, c.offer(t), PeerOptions{})
	if err != nil {
		t.Fatalf("Answer: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	return p, answer
}

var candLine = regexp.MustCompile(`(?m)^a=candidate:\S+ (\d) (\S+) \d+ (\S+) (\d+) typ host(.*)$`)

func TestICETCPCandidatesCarryPublicIPs(t *testing.T) {
	a := newTestAPI(t, Options{ICETCP: true, PublicIPs: []string{"127.0.0.77"}})
	if a.ICETCPPort() == 0 {
		t.Fatal("no ICE TCP port bound")
	}
	c := newClient(t, PCMU.Codec())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, answer := answerAndApply(t, ctx, a, c)
	var udp, tcp int
	for _, m := range candLine.FindAllStringSubmatch(answer, -1) {
		if m[1] != "1" {
			t.Errorf("component %s candidate in the answer (rtcp-mux is required): %s", m[1], m[0])
		}
		if m[3] != "127.0.0.77" {
			t.Errorf("candidate with a private address instead of the public IP: %s", m[0])
		}
		switch strings.ToLower(m[2]) {
		case "udp":
			udp++
		case "tcp":
			tcp++
			if !strings.Contains(m[5], "tcptype passive") || m[4] != itoa(a.ICETCPPort()) {
				t.Errorf("TCP candidate not passive on the ICE TCP port %d: %s", a.ICETCPPort(), m[0])
			}
		}
	}
	if udp == 0 || tcp == 0 {
		t.Fatalf("want UDP and TCP host candidates, got %d and %d:\n%s", udp, tcp, answer)
	}
}

func itoa(n int) string { return fmtInt(n) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestICETCPCarriesAudio: a client that can only use ICE-TCP gets audio both ways on either path: the lean tap
// reads and writes its SRTP on the TCP connection (the default for an audio-only call), pion's path its tracks.
func TestICETCPCarriesAudio(t *testing.T) {
	for _, mode := range []Mode{ModeLean, ModePion} {
		t.Run(mode.String(), func(t *testing.T) {
			a := newTestAPI(t, Options{ICETCP: true, PionMedia: mode == ModePion})
			c := newTCPClient(t)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			p, _ := answerAndApply(t, ctx, a, c)
			if p.Mode() != mode {
				t.Fatalf("mode %s, want %s", p.Mode(), mode)
			}
			f := startFlow(t, ctx, c, p)
			select {
			case <-p.Connected():
			case <-ctx.Done():
				t.Fatal("no connection over ICE-TCP")
			}
			f.waitMore(t, "ICE-TCP", 5*time.Second)
			if pair, err := c.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
				if pair.Local.Protocol != webrtc.ICEProtocolTCP {
					t.Fatalf("selected pair is %s, want TCP", pair.Local.Protocol)
				}
			}
			if mode == ModeLean {
				if r := p.tap.dst.Load(); r == nil || r.tcp == nil {
					t.Fatalf("lean route %+v, want the TCP connection", r)
				}
				if st := p.RTCPStats(); st.FromBrowser.Packets == 0 || st.ToBrowser.Packets == 0 || st.Undecryptable != 0 {
					t.Fatalf("lean stats %+v", st)
				}
			}
		})
	}
}

// iceStates records a peer's ICE states as reported to its owner.
type iceStates struct {
	mu sync.Mutex
	s  []webrtc.ICEConnectionState
}

func (r *iceStates) add(s webrtc.ICEConnectionState) {
	r.mu.Lock()
	r.s = append(r.s, s)
	r.mu.Unlock()
}

func (r *iceStates) has(s webrtc.ICEConnectionState) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.s, s)
}

func (r *iceStates) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.s)
}

// TestICETCPLiveness: a browser on ICE-TCP is watched like one on UDP (pion's ICE timeouts are off): while media
// flows for longer than both timeouts together it is never failed, and once it vanishes it is reported
// disconnected, then failed, and the peer is done.
func TestICETCPLiveness(t *testing.T) {
	for _, mode := range []Mode{ModeLean, ModePion} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel() // each waits out timeouts
			a := newTestAPI(t, Options{ICETCP: true, PionMedia: mode == ModePion,
				DisconnectedTimeout: 500 * time.Millisecond, FailedTimeout: 700 * time.Millisecond})
			c := newTCPClient(t)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			var states iceStates
			p, answer, err := a.Answer(ctx, c.offer(t), PeerOptions{OnICEState: states.add})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
				t.Fatal(err)
			}
			f := startFlow(t, ctx, c, p)
			f.waitMore(t, "ICE-TCP", 5*time.Second)
			f.waitMore(t, "ICE-TCP, a while later", 5*time.Second)
			time.Sleep(1500 * time.Millisecond) // over both timeouts together, media flowing
			f.waitMore(t, "ICE-TCP, past the timeouts", 5*time.Second)
			// (A disconnected report here would be a stall of the loaded test host, not of the path: not checked.)
			if states.has(webrtc.ICEConnectionStateFailed) {
				t.Fatalf("peer with media flowing reported %v", &states)
			}
			select {
			case <-p.Done():
				t.Fatalf("peer with media flowing is done; ICE states %v", &states)
			default:
			}
			// The browser vanishes: its ICE agent stops, nothing more arrives.
			t0 := time.Now()
			if err := c.pc.SCTP().Transport().ICETransport().Stop(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.Done():
				t.Logf("done %v after the browser went silent; ICE states %v", time.Since(t0).Round(time.Millisecond), &states)
			case <-ctx.Done():
				t.Fatalf("a vanished ICE-TCP browser was never failed; ICE states %v", &states)
			}
			if !states.has(webrtc.ICEConnectionStateDisconnected) || !states.has(webrtc.ICEConnectionStateFailed) {
				t.Fatalf("ICE states %v, want disconnected then failed", &states)
			}
		})
	}
}

// TestRestartKeepsDTLSAndMedia: a browser's ICE restart (new ufrag/pwd) gets an answer with new server
// credentials; the browser moves to a new address (UDP: a new port; ICE-TCP: a new connection) and audio resumes
// both ways on the same path, with the same DTLS association (no new handshake; on the lean path the same SRTP
// contexts), and the watchdog follows it there (it is not failed for the silence of its old address).
func TestRestartKeepsDTLSAndMedia(t *testing.T) {
	for _, tc := range []struct {
		name string
		tcp  bool
		mode Mode
	}{{"udp/lean", false, ModeLean}, {"tcp/lean", true, ModeLean}, {"udp/pion", false, ModePion}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each waits out timeouts
			a := newTestAPI(t, Options{ICETCP: tc.tcp, PionMedia: tc.mode == ModePion,
				DisconnectedTimeout: time.Second, FailedTimeout: time.Second})
			c := newClient(t, PCMU.Codec())
			if tc.tcp {
				c = newTCPClient(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var states iceStates
			var mu sync.Mutex
			var pcStates, dtlsStates []string
			p, answer, err := a.Answer(ctx, c.offer(t), PeerOptions{
				OnICEState: states.add,
				OnState: func(s webrtc.PeerConnectionState) {
					mu.Lock()
					pcStates = append(pcStates, s.String())
					mu.Unlock()
				}})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if p.Mode() != tc.mode {
				t.Fatalf("mode %s, want %s", p.Mode(), tc.mode)
			}
			lean := tc.mode == ModeLean
			c.pc.SCTP().Transport().OnStateChange(func(s webrtc.DTLSTransportState) {
				mu.Lock()
				dtlsStates = append(dtlsStates, s.String())
				mu.Unlock()
			})
			if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
				t.Fatal(err)
			}
			f := startFlow(t, ctx, c, p)
			f.waitMore(t, "before restart", 5*time.Second)
			oldUfrag, oldRoute := ufrag(answer), route{}
			if lean {
				oldRoute = *p.tap.dst.Load()
			}
			p.tap.inMu.Lock()
			keys := p.tap.in
			p.tap.inMu.Unlock()
			mu.Lock()
			dtlsBefore := len(dtlsStates)
			mu.Unlock()

			o, err := c.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
			if err != nil {
				t.Fatal(err)
			}
			g := webrtc.GatheringCompletePromise(c.pc)
			if err := c.pc.SetLocalDescription(o); err != nil {
				t.Fatal(err)
			}
			<-g
			restartAnswer, err := p.Restart(ctx, c.pc.LocalDescription().SDP)
			if err != nil {
				t.Fatalf("Restart: %v", err)
			}
			if nu := ufrag(restartAnswer); nu == "" || nu == oldUfrag {
				t.Fatalf("restart answer keeps the ufrag %q", nu)
			}
			if !strings.Contains(restartAnswer, "a=candidate:") || !strings.Contains(restartAnswer, "a=ice-lite") {
				t.Fatalf("restart answer lacks candidates or ice-lite:\n%s", restartAnswer)
			}
			if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: restartAnswer}); err != nil {
				t.Fatal(err)
			}
			f.waitMore(t, "after restart", 5*time.Second)
			if lean {
				newRoute := *p.tap.dst.Load()
				if newRoute.same(&oldRoute) {
					t.Fatalf("media still on the old route %+v after the restart: the browser did not move", oldRoute)
				}
				if (newRoute.tcp != nil) != tc.tcp {
					t.Fatalf("route %+v after the restart, want TCP %v", newRoute, tc.tcp)
				}
				t.Logf("moved from %s to %s", oldRoute.addr, newRoute.addr)
			}
			time.Sleep(2500 * time.Millisecond) // longer than both timeouts: the old address is silent
			f.waitMore(t, "well after restart", 5*time.Second)

			p.tap.inMu.Lock()
			same := p.tap.in == keys
			p.tap.inMu.Unlock()
			if !same || p.Mode() != tc.mode {
				t.Fatalf("SRTP keys replaced (%v) or path changed (%s): the restart must keep DTLS", !same, p.Mode())
			}
			mu.Lock()
			if len(dtlsStates) != dtlsBefore {
				t.Errorf("the browser's DTLS transport changed state during the restart: %v", dtlsStates[dtlsBefore:])
			}
			for _, s := range pcStates {
				if s == webrtc.PeerConnectionStateFailed.String() || s == webrtc.PeerConnectionStateClosed.String() {
					t.Errorf("peer went %s during the restart: %v", s, pcStates)
				}
			}
			mu.Unlock()
			if states.has(webrtc.ICEConnectionStateFailed) {
				t.Fatalf("peer failed after the restart: ICE states %v", &states)
			}
			select {
			case <-p.Done():
				t.Fatal("peer marked dead by the restart")
			default:
			}
			if _, err := p.Restart(ctx, "v=0\r\nnot sdp"); err == nil {
				t.Fatal("garbage restart offer accepted")
			}
			if tc.mode == ModePion {
				// After the restart the watchdog watches the new address: a browser vanishing from it is failed.
				if err := c.pc.SCTP().Transport().ICETransport().Stop(); err != nil {
					t.Fatal(err)
				}
				select {
				case <-p.Done():
				case <-ctx.Done():
					t.Fatalf("a browser that vanished after its restart was never failed; ICE states %v", &states)
				}
			}
		})
	}
}

func ufrag(sdp string) string {
	for _, l := range strings.Split(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}
