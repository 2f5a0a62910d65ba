package testenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/patchbay/patchbay/tools/bench"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// A browser on Asterisk's own WebRTC, for baselines (the lip-sync harness beside Asterisk's ConfBridge video): the
// page's RTCPeerConnection runs ICE, DTLS-SRTP and media with Asterisk itself (chan_pjsip, webrtc=yes), as it
// would under JsSIP or SIP.js; only the SIP signalling is done here, in Go, over Asterisk's WSS listener: REGISTER,
// INVITE with the page's offer, the 200 OK's answer given back to the page, ACK, the re-INVITEs Asterisk sends
// (ConfBridge's SFU adds a stream for each participant's video) answered by the page, and BYE. Patchbay is not
// involved.

// NativeWebRTC says how to reach Asterisk's WebRTC endpoints.
type NativeWebRTC struct {
	WSS  string      // Asterisk's TLS HTTP listener, host:port; SIP goes to wss://WSS/ws
	TLS  *tls.Config // trusts Asterisk's certificate
	User string      // the endpoint (and auth) name
	Pass string
}

// NativeCall is one call from a page to Asterisk; Hangup ends it.
type NativeCall struct {
	ua     *sipgo.UserAgent
	cl     *sipgo.Client
	srv    *sipgo.Server
	dlg    *sipgo.DialogClientSession
	n      NativeWebRTC
	server sip.Uri

	mu       sync.Mutex
	reinvite int   // re-INVITEs answered
	lastErr  error // of the last re-INVITE the page could not answer
}

// nativeCallJS defines window.__native (on a page prepared with PrepareLipSync): offer(send) makes the page's
// RTCPeerConnection (send: the lip-sync source's audio and video; else the microphone and a receive-only video
// section) and returns its complete offer (no trickle ICE: SIP carries one SDP); answer(sdp) applies Asterisk's
// answer; reoffer(sdp) answers one of Asterisk's re-INVITEs. Every received video track gets a <video> element
// (class native-video) and the audio plays in <audio id="native-audio">.
const nativeCallJS = `(() => {
  if (window.__native) return true;
  const gathered = (pc) => new Promise((r) => {
    if (pc.iceGatheringState === "complete") return r();
    const t = setTimeout(r, 3000);
    pc.addEventListener("icegatheringstatechange", () => { if (pc.iceGatheringState === "complete") { clearTimeout(t); r(); } });
  });
  let pc = null;
  const offer = async (send, srcJS) => {
    // Media access also lifts Chrome's mDNS masking of host candidates, which Asterisk cannot resolve.
    const mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
    pc.ontrack = (e) => {
      if (e.track.kind === "audio") {
        let a = document.getElementById("native-audio");
        if (!a) { a = document.createElement("audio"); a.id = "native-audio"; a.autoplay = true; document.body.append(a); }
        a.srcObject = new MediaStream([e.track]);
        a.play().catch(() => {});
        return;
      }
      const v = document.createElement("video");
      v.className = "native-video";
      v.muted = true;
      v.autoplay = true;
      v.playsInline = true;
      v.style.width = "160px";
      v.srcObject = new MediaStream([e.track]);
      document.body.append(v);
      v.play().catch(() => {});
    };
    if (send) {
      const src = await srcJS();
      window.__syncSource = src;
      for (const t of mic.getTracks()) t.stop();
      const s = new MediaStream([...src.audio.getAudioTracks(), ...src.video.getVideoTracks()]);
      for (const t of s.getTracks()) pc.addTrack(t, s);
    } else {
      for (const t of mic.getAudioTracks()) pc.addTrack(t, mic);
      pc.addTransceiver("video", { direction: "recvonly" });
    }
    await pc.setLocalDescription();
    await gathered(pc);
    return pc.localDescription.sdp;
  };
  const answer = async (sdp) => { await pc.setRemoteDescription({ type: "answer", sdp }); return true; };
  const reoffer = async (sdp) => {
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription();
    await gathered(pc);
    return pc.localDescription.sdp;
  };
  const hangup = () => { if (pc) pc.close(); return true; };
  window.__native = { offer, answer, reoffer, hangup };
  return true;
})()`

// DialNative has the page call to through Asterisk's WebRTC (see NativeWebRTC): with send, its media is the
// lip-sync source s; without, its microphone and a receive-only video section. It returns once the call is
// answered and the page has Asterisk's answer; Asterisk's re-INVITEs are answered by the page from then on.
func (p *Page) DialNative(ctx context.Context, n NativeWebRTC, to string, send bool, s SyncSource) (*NativeCall, error) {
	if err := p.Eval(ctx, nativeCallJS, nil); err != nil {
		return nil, err
	}
	var offer string
	if err := p.Eval(ctx, fmt.Sprintf(`window.__native.offer(%v, () => %s)`, send, s.sourceJS()), &offer); err != nil {
		return nil, fmt.Errorf("%s: native offer: %w", p.Name, err)
	}
	c, err := newNativeCall(n)
	if err != nil {
		return nil, err
	}
	c.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var ans string
		err := p.Eval(rctx, fmt.Sprintf(`window.__native.reoffer(%q)`, string(req.Body())), &ans)
		c.mu.Lock()
		c.reinvite++
		if err != nil {
			c.lastErr = err
		}
		c.mu.Unlock()
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
			return
		}
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", []byte(ans))
		res.AppendHeader(c.contact())
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		_ = tx.Respond(res)
	})
	c.srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	c.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	c.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	if err := c.register(ctx, 300); err != nil {
		c.close()
		return nil, err
	}
	dc := sipgo.NewDialogClientCache(c.cl, *c.contact())
	uri := c.server
	uri.User = to
	ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	d, err := dc.Invite(ictx, uri, []byte(offer), sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		c.close()
		return nil, fmt.Errorf("%s: INVITE %s: %w", p.Name, to, err)
	}
	c.dlg = d
	if err := d.WaitAnswer(ictx, sipgo.AnswerOptions{Username: n.User, Password: n.Pass}); err != nil {
		c.close()
		return nil, fmt.Errorf("%s: INVITE %s: %w", p.Name, to, err)
	}
	if err := d.Ack(ictx); err != nil {
		c.close()
		return nil, fmt.Errorf("%s: ACK: %w", p.Name, err)
	}
	if err := p.Eval(ctx, fmt.Sprintf(`window.__native.answer(%q)`, string(d.InviteResponse.Body())), nil); err != nil {
		c.close()
		return nil, fmt.Errorf("%s: apply Asterisk's answer: %w", p.Name, err)
	}
	return c, nil
}

func newNativeCall(n NativeWebRTC) (*NativeCall, error) {
	server, err := bench.WSSServerURI(n.WSS)
	if err != nil {
		return nil, err
	}
	ua, err := bench.NewWSSUserAgent(n.User, n.TLS)
	if err != nil {
		return nil, fmt.Errorf("native %s: user agent: %w", n.User, err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		_ = ua.Close()
		return nil, fmt.Errorf("native %s: server: %w", n.User, err)
	}
	cl, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		_ = ua.Close()
		return nil, fmt.Errorf("native %s: client: %w", n.User, err)
	}
	return &NativeCall{ua: ua, cl: cl, srv: srv, n: n, server: server}, nil
}

func (c *NativeCall) contact() *sip.ContactHeader {
	h := &sip.ContactHeader{Address: sip.Uri{User: c.n.User, Host: "127.0.0.1", UriParams: sip.NewParams()}}
	h.Address.UriParams.Add("transport", "ws")
	return h
}

// register sends REGISTER (expires 0 unregisters), answering a digest challenge.
func (c *NativeCall) register(ctx context.Context, expires int) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := bench.Register(rctx, c.cl, c.server, *c.contact(), c.n.User, c.n.Pass, expires); err != nil {
		return fmt.Errorf("native %s: %w", c.n.User, err)
	}
	return nil
}

// Reinvites is how many re-INVITEs from Asterisk the page answered, and the error of the last it could not.
func (c *NativeCall) Reinvites() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reinvite, c.lastErr
}

// Hangup sends BYE and unregisters; safe to call twice.
func (c *NativeCall) Hangup(ctx context.Context) error {
	var errs []error
	if c.dlg != nil {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if c.dlg.InviteResponse != nil && c.dlg.InviteResponse.IsSuccess() {
			if err := c.dlg.Bye(bctx); err != nil {
				errs = append(errs, fmt.Errorf("native %s: BYE: %w", c.n.User, err))
			}
		}
		cancel()
		_ = c.dlg.Close()
		c.dlg = nil
	}
	if c.ua != nil {
		if err := c.register(context.WithoutCancel(ctx), 0); err != nil {
			errs = append(errs, err)
		}
	}
	c.close()
	return errors.Join(errs...)
}

func (c *NativeCall) close() {
	if c.ua == nil {
		return
	}
	_ = c.srv.Close()
	_ = c.cl.Close()
	_ = c.ua.Close()
	c.ua = nil
}
