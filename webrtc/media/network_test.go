package media

import (
	"context"
	"regexp"
	"strings"
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

// flow sends RTP both ways every 20 ms until stop and counts what each side receives.
type flow struct {
	toServer, toClient atomic.Int64
	stop               chan struct{}
	done               chan struct{}
}

func startFlow(t *testing.T, ctx context.Context, c *client, p *Peer) *flow {
	t.Helper()
	f := &flow{stop: make(chan struct{}), done: make(chan struct{})}
	clientTrack := make(chan *webrtc.TrackRemote, 1)
	c.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { clientTrack <- tr })
	go func() {
		defer close(f.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 160)}
		for {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			pkt.SequenceNumber++
			pkt.Timestamp += 160
			_ = c.track.WriteRTP(pkt)
			_ = p.LocalTrack().WriteRTP(pkt)
		}
	}()
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
	a := newTestAPI(t, Options{ICETCP: true, PublicIPs: []string{"127.0.0.77"}, PionMedia: true})
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

func TestICETCPCarriesAudio(t *testing.T) {
	a := newTestAPI(t, Options{ICETCP: true, PionMedia: true})
	c := newTCPClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p, _ := answerAndApply(t, ctx, a, c)
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
}

func TestRestartKeepsDTLSAndMedia(t *testing.T) {
	a := newTestAPI(t, Options{PionMedia: true})
	c := newClient(t, PCMU.Codec())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var states []webrtc.PeerConnectionState
	stateCh := make(chan webrtc.PeerConnectionState, 16)
	p, answer, err := a.Answer(ctx, c.offer(t), PeerOptions{OnState: func(s webrtc.PeerConnectionState) { stateCh <- s }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	f := startFlow(t, ctx, c, p)
	f.waitMore(t, "before restart", 5*time.Second)
	oldUfrag := ufrag(answer)

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
	for {
		select {
		case s := <-stateCh:
			states = append(states, s)
			continue
		default:
		}
		break
	}
	for _, s := range states {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			t.Fatalf("peer went %s during the restart: %v", s, states)
		}
	}
	select {
	case <-p.Done():
		t.Fatal("peer marked dead by the restart")
	default:
	}
	if _, err := p.Restart(ctx, "v=0\r\nnot sdp"); err == nil {
		t.Fatal("garbage restart offer accepted")
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
