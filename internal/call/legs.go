package call

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/relay"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// party is whoever hears the far end's progress: a browser (signalling messages), a phone's channel (ring,
// answer) or an API client (call state, webhooks).
type party interface {
	ringing(c *Call)
	answered(c *Call)
	dtmf(c *Call, digits string)
}

// ---- the browser's media ----

// browserLeg is a browser in a call: its signalling session and call_id, its peer connection, the relay socket
// toward Asterisk, the relay, and the externalMedia channel that carries its audio into Asterisk.
type browserLeg struct {
	s        *signal.Session // nil while detached (its socket is gone, a resume may bring it back)
	clientID string          // the call_id the browser knows the call by
	// live mirrors s for senders on other goroutines (the SFU's renegotiation offers).
	live atomic.Pointer[signal.Session]

	peer *media.Peer
	sock *relay.Socket
	rl   mediaRelay // RTP (G.711) or a media WebSocket (Opus): codec.go

	emID   string
	emMade bool // the externalMedia request was sent: close must hang it up

	mediaSeen bool      // the first packet from the browser has reached Asterisk
	lastIn    uint64    // packets toward Asterisk at the last watchdog tick
	lastInAt  time.Time // when that count last moved
	saidBye   bool      // the browser hung up itself: no hangup message back
}

func newBrowserLeg(s *signal.Session, clientID string) *browserLeg {
	b := &browserLeg{clientID: clientID}
	b.setSession(s)
	return b
}

// setSession attaches the browser's session (nil: detached).
func (b *browserLeg) setSession(s *signal.Session) {
	b.s = s
	b.live.Store(s)
}

// sendAsync is send for other goroutines; a detached browser misses the message.
func (b *browserLeg) sendAsync(msg signal.Message) {
	if s := b.live.Load(); s != nil {
		_ = s.Send(s.Context(), msg)
	}
}

// send delivers msg to the browser if it is attached. A lost socket is not an error: the call learns of it
// through SessionClosed.
func (b *browserLeg) send(c *Call, msg signal.Message) {
	if b == nil || b.s == nil {
		return
	}
	msg.CallID = b.clientID
	if err := b.s.Send(b.s.Context(), msg); err != nil {
		c.log.Debug("send to browser failed", "type", msg.Type, "err", err)
	}
}

func (b *browserLeg) ringing(c *Call) { b.send(c, signal.Message{Type: signal.TypeRinging}) }
func (b *browserLeg) answered(c *Call) {
	b.send(c, signal.Message{Type: signal.TypeAnswered})
}
func (b *browserLeg) dtmf(c *Call, d string) {
	b.send(c, signal.Message{Type: signal.TypeDTMF, Digits: d})
}

// firstMedia is closed when browser media reaches Asterisk.
func (b *browserLeg) firstMedia() <-chan struct{} {
	if b.rl == nil {
		return nil
	}
	return b.rl.FirstPacket()
}

// acquirePort takes a relay socket. It comes first, before anything is made in Asterisk, so a server at capacity
// refuses the call with nothing to undo.
func (b *browserLeg) acquirePort(c *Call) error {
	sock, err := c.m.o.Ports.Acquire()
	if err != nil {
		if errors.Is(err, relay.ErrAtCapacity) {
			c.log.Warn("at capacity: refusing the call", "err", err)
			return &ending{cause: wire.CauseSwitchCongestion, code: wire.CodeUnavailable,
				text: "the server is at capacity (media.max_calls calls carry media); try again later"}
		}
		return fmt.Errorf("take a relay port: %w", err)
	}
	b.sock = sock
	return nil
}

// identity is who a channel presents itself as (caller ID); the zero value presents nothing.
type identity struct{ num, name string }

// vars are the caller ID as channel variables (those not empty), for a channel's creation or presentAs.
func (p identity) vars() map[string]string {
	v := map[string]string{}
	if p.num != "" {
		v["CALLERID(num)"] = p.num
	}
	if p.name != "" {
		v["CALLERID(name)"] = p.name
	}
	if len(v) == 0 {
		return nil
	}
	return v
}

// attach creates the externalMedia channel in the peer's G.711 law (so nothing is transcoded) toward the relay
// socket, then starts the relay between them; the relay owns whatever goroutine it needs and stops in closeMedia.
// The channel is not bridged here: the call's flow puts it in a bridge, a room, or the dialplan. The peer's media
// path (lean or pion's) is decided by the time Answer or SetAnswer returned, so the relay is made after them.
// An Opus peer goes over a media WebSocket instead (attachWS, codec.go). The channel presents itself as present.
func (b *browserLeg) attach(ctx context.Context, c *Call, present identity) error {
	if b.peer.Codec() == media.Opus {
		if err := b.attachWS(ctx, c); err != nil {
			return err
		}
		return presentAs(ctx, c.a, b.emID, present)
	}
	law := b.peer.Law()
	rl, err := relay.New(b.sock, b.peer, relay.Options{PayloadType: law.PayloadType(), Logger: c.log})
	if err != nil {
		return fmt.Errorf("make the relay: %w", err)
	}
	b.rl = rl
	b.emID = c.a.ResourceID("em")
	c.claim(b.emID)
	b.emMade = true
	// The caller ID rides on the creation (Asterisk sets creation variables as the dialplan's Set() would, functions
	// included): two round trips fewer to an Asterisk that, under load, answers each one late.
	em, err := c.a.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{
		App:          c.a.Application(),
		ExternalHost: b.sock.ExternalHost(),
		Format:       law.Format(),
		ChannelID:    b.emID,
		Variables:    present.vars(),
	})
	if err != nil {
		return fmt.Errorf("create the browser's externalMedia channel: %w", err)
	}
	ap, err := netip.ParseAddrPort(em.LocalAddrPort())
	if err != nil {
		return fmt.Errorf("externalMedia channel %s gave no usable UNICASTRTP address %q: %w", b.emID, em.LocalAddrPort(), err)
	}
	rl.SetAsterisk(ap)
	if err := rl.Start(); err != nil {
		return fmt.Errorf("start the relay: %w", err)
	}
	return nil
}

// armNoMedia starts the wait for the browser's first packet (see Options.NoMediaTimeout).
func (c *Call) armNoMedia() {
	if c.browser == nil || c.browser.mediaSeen || c.noMedia != nil {
		return
	}
	c.noMedia = time.NewTimer(c.m.o.NoMediaTimeout)
}

// onFirstMedia: browser media reaches Asterisk. Flows waiting for it (dial, answer the phone) go on.
func (c *Call) onFirstMedia() {
	b := c.browser
	b.mediaSeen = true
	b.lastInAt = time.Now()
	c.obs.rec.FirstMediaAt = b.lastInAt
	if c.noMedia != nil {
		c.noMedia.Stop()
		c.noMedia = nil
	}
	c.log.Debug("browser media flows", "after", time.Since(c.started).Round(time.Millisecond))
	if c.onMedia != nil {
		f := c.onMedia
		c.onMedia = nil
		f()
	}
}

// watch is the per-second media watchdog of a browser in a call. Mid-call silence alone ends nothing (a network
// blink may pause media for seconds; a dead browser fails ICE, which ends the call through the peer). But a browser
// whose socket is gone and whose media stopped too has gone for good: its call ends without waiting out the resume
// grace.
func (b *browserLeg) watch(c *Call) {
	if b.rl == nil || !b.mediaSeen {
		return
	}
	now := time.Now()
	if n := b.rl.Stats().ToAsterisk.Packets; n != b.lastIn {
		b.lastIn, b.lastInAt = n, now
		return
	}
	if c.detached && now.Sub(b.lastInAt) >= detachedSilence {
		c.log.Info("browser gone: no socket and no media", "silent_for", now.Sub(b.lastInAt).Round(time.Second))
		c.end(&ending{cause: wire.CauseNormalClearing, quiet: true})
	}
}

// detachedSilence is how long a browser without a socket may also send no media before its call ends.
const detachedSilence = 3 * time.Second

// closeMedia stops the relay (and waits for whatever it runs), then the peer.
func (b *browserLeg) closeMedia() {
	if b.rl != nil {
		_ = b.rl.Close()
	}
	if b.peer != nil {
		_ = b.peer.Close()
	}
}

// releasePort hands the call's handle on the shared socket back (media.max_calls counts them). It comes last, after
// Asterisk stopped sending to it.
func (b *browserLeg) releasePort() {
	if b.sock != nil {
		b.sock.Release()
		b.sock = nil
	}
}

// ---- an offer to a browser (an incoming call ringing it) ----

// offer is one browser session rung by an incoming call, with the peer made for it.
type offer struct {
	s    *signal.Session
	peer *media.Peer
}

func (o *offer) close() {
	if o.peer != nil {
		_ = o.peer.Close()
	}
}

// ---- Asterisk channels ----

type legState int

const (
	legNoChange legState = iota
	legRinging
	legAnswered
	legGone
)

// chanLeg is an Asterisk channel in a call: one Patchbay created (its ID is ours, made before the request) or
// one the dialplan handed over (a phone or trunk call that ran Stasis).
type chanLeg struct {
	id string
	// adopted: entered Stasis from the dialplan. Asterisk reports nothing about such a channel once it leaves the
	// application (not even ChannelDestroyed), so StasisEnd is its hang-up.
	adopted bool
	made    bool // created by us: the create request was sent
	gone    bool
	up      bool
	cause   int // Q.850 cause of a hang-up request, if one was seen
	// trunk: a leg to a carrier. Its failure is only decided on ChannelDestroyed, which carries the SIP response
	// (tech_cause) the failover policy may name; dialStatus and sip keep what was seen.
	trunk      bool
	dialStatus string
	sip        int
}

// outcome is how a trunk leg that ended before the answer failed, for the failover policy.
func (l *chanLeg) outcome() dialplan.TrunkOutcome {
	return dialplan.TrunkOutcome{DialStatus: l.dialStatus, Cause: l.cause, SIPCode: l.sip}
}

// observe updates the leg from an ARI event and reports a change of state with the hang-up cause name.
func (l *chanLeg) observe(ev ari.Event) (legState, string) {
	if l.gone {
		return legNoChange, ""
	}
	switch e := ev.(type) {
	case *ari.Dial:
		if e.Peer.ID != l.id {
			return legNoChange, ""
		}
		switch e.Dialstatus {
		case "RINGING", "PROGRESS":
			return legRinging, ""
		case "ANSWER":
			return l.answer()
		case "", "PROCEEDING", "EARLYMEDIA":
			return legNoChange, ""
		default:
			// BUSY, NOANSWER, CONGESTION, CHANUNAVAIL, CANCEL…: the dial status says why better than the
			// channel's cause. The channel may linger: close hangs it up all the same. A trunk leg waits for its
			// ChannelDestroyed, which tells the SIP response too.
			l.dialStatus = e.Dialstatus
			if l.trunk {
				return legNoChange, ""
			}
			return legGone, dialStatusCause(e.Dialstatus)
		}
	case *ari.ChannelStateChange:
		if e.Channel.ID == l.id && e.Channel.State == "Up" {
			return l.answer()
		}
	case *ari.ChannelHangupRequest:
		if e.Channel.ID == l.id && e.Cause != 0 {
			l.cause = e.Cause
		}
	case *ari.ChannelDestroyed:
		if e.Channel.ID == l.id {
			l.gone = true
			// A hang-up request's cause says why the far side ended; a normal clearing at destruction can be the
			// generic cause of whatever finished the channel off. A Local channel whose ;2 ran Hangup(17) asked
			// ;1 to hang up with 17, and ;1 was now and then destroyed with 16.
			if e.Cause != 0 && (e.Cause != normalClearing || l.cause == 0) {
				l.cause = e.Cause
			}
			l.sip = e.TechCause
			if l.dialStatus != "" && !l.up {
				return legGone, dialStatusCause(l.dialStatus)
			}
			return legGone, causeOf(l.cause)
		}
	case *ari.StasisEnd:
		if e.Channel.ID == l.id && l.adopted {
			l.gone = true
			return legGone, causeOf(l.cause)
		}
	}
	return legNoChange, ""
}

func (l *chanLeg) answer() (legState, string) {
	if l.up {
		return legNoChange, ""
	}
	l.up = true
	return legAnswered, ""
}

// normalClearing is Q.850 cause 16.
var normalClearing = wire.CauseCode(wire.CauseNormalClearing)

// causeOf names a Q.850 cause, a normal clearing when Asterisk gave none.
func causeOf(code int) string {
	if code == 0 {
		return wire.CauseNormalClearing
	}
	return wire.CauseName(code)
}

// hangup hangs the channel up unless it is already gone (or was never made).
func (l *chanLeg) hangup(ctx context.Context, a *ari.Client, reason string) error {
	if l.gone || (!l.made && !l.adopted) {
		return nil
	}
	l.gone = true
	return a.Channel(l.id).Hangup(ctx, reason)
}

// create makes a channel in Stasis (not yet dialled) and waits until it is there, so that adding it to a bridge
// cannot race its StasisStart. The ID is claimed before the request.
func (c *Call) createLeg(ctx context.Context, kind string, r ari.CreateRequest) (*chanLeg, error) {
	l := &chanLeg{id: c.a.ResourceID(kind)}
	r.ChannelID, r.App = l.id, c.a.Application()
	if strings.HasPrefix(r.Endpoint, "Local/") {
		r.OtherChannelID = l.id + "-2" // the dialplan half is ours too, for the sweep
		c.claim(l.id, r.OtherChannelID)
	} else {
		c.claim(l.id)
	}
	if r.AppArgs == "" {
		r.AppArgs = "leg," + c.id
	}
	l.made = true
	wait := c.a.Subscribe(ari.Filter{Name: "create-" + l.id, IDs: []string{l.id}, QueueSize: 16})
	defer wait.Close()
	if _, err := c.a.Channels().Create(ctx, r); err != nil {
		return l, err
	}
	if err := ari.WaitStasisStart(ctx, wait, l.id); err != nil {
		return l, err
	}
	return l, nil
}

// nativeFormat reads a channel's native audio format (to offer the caller's own G.711 law). It is a hint, so it
// gets a short time of its own: a slow answer must not eat the setup step that follows.
func (c *Call) nativeFormat(ctx context.Context, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.a.Channel(id).Variable(ctx, "CHANNEL(audionativeformat)")
}

// adopt takes a channel the dialplan handed over: it is claimed (no sweep touches it while the call lives) and
// followed.
func (c *Call) adopt(ch ari.Channel) *chanLeg {
	c.claim(ch.ID)
	return &chanLeg{id: ch.ID, adopted: true, up: ch.State == "Up"}
}

// makeBridge creates the call's two-party mixing bridge. The ID is claimed before the request.
func (c *Call) makeBridge(ctx context.Context, typ string) error {
	id := c.a.ResourceID("br")
	c.claim(id)
	c.bridge = id
	if _, err := c.a.Bridges().Create(ctx, ari.BridgeRequest{ID: id, Type: typ, Name: "patchbay-" + c.id}); err != nil {
		return fmt.Errorf("create bridge: %w", err)
	}
	return nil
}

// bridgeAdd puts channels in the call's bridge.
func (c *Call) bridgeAdd(ctx context.Context, ids ...string) error {
	if err := c.a.Bridge(c.bridge).AddChannel(ctx, ari.AddChannelOptions{}, ids...); err != nil {
		return fmt.Errorf("add %s to the call's bridge: %w", strings.Join(ids, ","), err)
	}
	return nil
}
