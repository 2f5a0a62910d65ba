package synth

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/webrtc/media"
)

// Exchanger sends an offer to the far end by some signalling of its own (a SIP INVITE, say) and returns the
// answer SDP.
type Exchanger func(ctx context.Context, offer string) (answer string, err error)

// CallSDP places a call whose offer/answer goes through exchange instead of Patchbay's signalling: the same
// caller, tone, echo matching and report as Call, so a bench can compare paths. The offer carries every
// candidate (no trickle) and names the first host candidate in its c= and m= lines, as SIP peers such as Asterisk
// expect (pion's 0.0.0.0 and port 9 read as "on hold" there). When loopbackOnly is set, the answer's candidates
// off loopback are dropped, so media never leaves the host. The call runs until ctx ends (or o.Duration when
// positive); hang-up is the exchanger's business.
func (e *Engine) CallSDP(ctx context.Context, exchange Exchanger, loopbackOnly bool, o CallOptions) (*Report, error) {
	o.NoTrickle = true
	c, err := e.newCall(o)
	if err != nil {
		return nil, err
	}
	defer c.close()
	law := c.o.Law
	if law != media.PCMA {
		law = media.PCMU
	}
	if err := c.addTrack(law); err != nil {
		return c.report(), err
	}
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return c.report(), fmt.Errorf("synth: create offer: %w", err)
	}
	sdp, err := c.localSDP(ctx, offer)
	if err != nil {
		return c.report(), err
	}
	sdp, err = sipReadyOffer(sdp)
	if err != nil {
		return c.report(), err
	}
	c.start = time.Now()
	c.rep.Start = c.start
	answer, err := exchange(ctx, sdp)
	if err != nil {
		return c.report(), fmt.Errorf("synth: offer/answer: %w", err)
	}
	c.rep.AnswerAfter = time.Since(c.start)
	if loopbackOnly {
		answer = loopbackCandidates(answer)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return c.report(), fmt.Errorf("synth: apply answer: %w", err)
	}
	var hangupT <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			c.drainEchoes()
			c.rep.HungUpBy = "local"
			return c.report(), fmt.Errorf("synth call %s: %w", c.o.CallID, ctx.Err())
		case <-c.cands: // all were gathered into the offer already
		case s := <-c.states:
			switch s {
			case webrtc.PeerConnectionStateConnected:
				if c.rep.ConnectedAfter == 0 {
					c.rep.ConnectedAfter = time.Since(c.start)
					c.startSender()
					if c.o.OnConnected != nil {
						c.o.OnConnected(c.o.CallID)
					}
					if c.o.Duration > 0 {
						hangupT = time.After(c.o.Duration)
					}
				}
			case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
				return c.report(), fmt.Errorf("synth call %s: ICE/DTLS %s", c.o.CallID, s)
			}
		case <-hangupT:
			c.drainEchoes()
			c.rep.HungUpBy = "local"
			return c.report(), nil
		}
	}
}

var candRE = regexp.MustCompile(`(?m)^a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host`)

// sipReadyOffer puts the first host candidate's address in the c= line and its port in the m= line.
func sipReadyOffer(sdp string) (string, error) {
	m := candRE.FindStringSubmatch(sdp)
	if m == nil {
		return "", fmt.Errorf("synth: offer has no host UDP candidate to name in c= and m=")
	}
	sdp = strings.Replace(sdp, "c=IN IP4 0.0.0.0", "c=IN IP4 "+m[1], -1)
	return strings.Replace(sdp, "m=audio 9 ", "m=audio "+m[2]+" ", 1), nil
}

// loopbackCandidates drops the answer's candidates that are not on 127.0.0.0/8.
func loopbackCandidates(sdp string) string {
	var out []string
	for _, line := range strings.SplitAfter(sdp, "\n") {
		if strings.HasPrefix(line, "a=candidate:") {
			f := strings.Fields(line)
			if len(f) < 6 {
				continue
			}
			if a, err := netip.ParseAddr(f[4]); err != nil || !a.IsLoopback() {
				continue
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "")
}
