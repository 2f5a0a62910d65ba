package media

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestConnectsWithoutBrowserCandidates: the server is ICE-lite and only answers the browser's checks, so it needs
// none of the browser's candidates (they may be mDNS .local names, or arrive late): it learns the browser's address
// from the checks themselves as a peer-reflexive candidate. That is why the server resolves no mDNS at all.
func TestConnectsWithoutBrowserCandidates(t *testing.T) {
	a := newTestAPI(t, Options{})
	c := newClient(t, PCMU.Codec())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offer := regexp.MustCompile(`(?m)^a=(candidate|end-of-candidates).*\r\n`).ReplaceAllString(c.offer(t), "")
	p, answer, err := a.Answer(ctx, offer, PeerOptions{})
	if err != nil {
		t.Fatalf("Answer: %v", err)
	}
	defer p.Close()
	h := &chanHandler{ch: make(chan []byte, 8)}
	p.SetRTPHandler(h)
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 160)}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				pkt.SequenceNumber++
				_ = c.track.WriteRTP(pkt)
			}
		}
	}()
	select {
	case <-h.ch:
	case <-ctx.Done():
		t.Fatal("no media from a browser that sent no candidates")
	}
}
