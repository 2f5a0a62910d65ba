package call

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	pion "github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/internal/limits"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Kind is what a call is, which decides only how its legs are made.
type Kind string

// Kinds of call.
const (
	KindBrowserOut Kind = "browser_out" // a browser calls an extension or an outside number
	KindPhoneIn    Kind = "phone_in"    // a phone (or a DID) calls a browser user
	KindRoom       Kind = "room"        // a browser in a room
	KindPhoneRoom  Kind = "phone_room"  // a phone (or a DID) in a room
	KindPhonePSTN  Kind = "phone_pstn"  // a softphone calls an outside number
	KindAPI        Kind = "api"         // the REST API calls a number, then a room or a browser user
	KindTransfer   Kind = "transfer"    // a party handed on by a browser's transfer, with its new party (transfer.go)
	KindSupervise  Kind = "supervise"   // a supervisor listening, whispering or barging into a call (supervise.go)
)

// inboundKind says what reached a call from outside its goroutine.
type inboundKind int

const (
	inBrowser     inboundKind = iota // a message from a browser session
	inSessionGone                    // a browser's connection closed
	inResumed                        // a browser's connection came back (resume)
	inKicked                         // removed from its room, or the room ended
	inHandOff                        // another call takes this call's far party (attended transfer, transfer.go)
	inRecord                         // the API starts or stops recording the call (record.go)
)

type inbound struct {
	kind    inboundKind
	session *signal.Session
	msg     *signal.Message // a pointer: the inbox is per call, and a Message is ~600 bytes
	reason  string
	handoff *handoff   // inHandOff
	record  *recordReq // inRecord
}

// ending is why a call ends: the hang-up cause every party is told, and, when the browser must learn why in words,
// an error code and message sent before its hangup. It travels as the call context's cancel cause.
type ending struct {
	cause string // wire.Cause*
	code  string // wire.Code* or "" (no error message)
	text  string
	// quiet: the browser ended it (hangup message or closed socket), so no hangup is sent back to it.
	quiet bool
}

func (e *ending) Error() string { return "call ended: " + e.cause }

// Call is one conversation: legs joined by a bridge (a browser's media, a phone's or trunk's channel, a room
// membership), owned from birth to close by one goroutine. Everything it makes in Asterisk is claimed before the
// request that makes it and released in close, in an order that keeps stale media out of the next call: far legs,
// the room, the browser's media, its externalMedia channel, the bridge, the relay port. Anything close cannot
// remove (Asterisk frozen, a DELETE timing out) is left to the ARI sweep, never forgotten.
type Call struct {
	id   string
	kind Kind
	m    *Manager
	a    *ari.Client
	// base logs from any goroutine; log is the call goroutine's own and grows fields as the call learns them.
	base *slog.Logger
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelCauseFunc
	inbox  chan inbound
	closed atomic.Bool

	// Everything below belongs to the call goroutine.
	sub     *ari.Subscription
	claimed []string // ARI IDs claimed, released in close

	started  time.Time
	answered time.Time // far end answered (or the room was joined)

	near    party       // who hears the far end's progress (nil: nobody, e.g. a room)
	browser *browserLeg // the browser's media once it has one
	offers  map[string]*offer
	far     *chanLeg // the Asterisk channel of the other party, if any
	phone   *chanLeg // a phone that came from the dialplan (phone_pstn, phone_room), if any
	bridge  string   // ID of the call's own two-party bridge; "" if it has none
	// inDialplan is the extension the browser's own channel runs (no far leg, no bridge); dialplanCause the
	// Q.850 cause of its hang-up request.
	inDialplan    string
	dialplanCause int
	member        *rooms.Member
	room          roomState
	lease         *limits.Lease
	api           *apiCall
	obs           obs
	trunks        *trunkPlan // an outside call's trunks (trunks.go)
	clusterKey    string     // a call rung on several nodes: its cluster-wide key (cluster.go)

	// cti is the call's contact-center state (hold, transfer, recording, supervision; cti.go); live is what
	// consoles see of the call, published by the call goroutine for any goroutine to read.
	cti  ctiState
	live atomic.Pointer[liveInfo]

	// Flow hooks: what the far end's progress means for this kind of call.
	onFarAnswered func() // after the generic handling (browser told, time noted)
	onMedia       func() // once, when the browser's media first reaches Asterisk

	maxDur   *time.Timer
	noMedia  *time.Timer // browser media must flow before this fires
	ringTime *time.Timer
	grace    *time.Timer // a detached browser (socket lost) must come back before this fires
	detached bool
}

func (m *Manager) newCall(kind Kind, log *slog.Logger) *Call {
	id := ari.NewID()[3:] // the same 128 random bits, without the resource prefix: this is a call ID
	// Calls end only when told (end): a stopping manager tells each with server_shutdown, so the cause is right.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(m.runCtx()))
	l := log.With("call", id, "kind", string(kind))
	return &Call{
		id: id, kind: kind, m: m, a: m.o.ARI,
		base: l, log: l,
		ctx: ctx, cancel: cancel,
		inbox:   make(chan inbound, 64),
		started: time.Now(),
		offers:  map[string]*offer{},
	}
}

// ID is the call's own ID (also the call_id of an incoming call, and the API's call ID).
func (c *Call) ID() string { return c.id }

// Context is cancelled when the call starts ending; everything the call starts hangs off it.
func (c *Call) Context() context.Context { return c.ctx }

// end asks the call to end with e. Safe from any goroutine and more than once: the first reason counts. An error
// code that ends a call carries its one cause (wire.CauseForCode): the browser's hangup, Asterisk's hang-up reason
// and the call record all say the same.
func (c *Call) end(e *ending) {
	if e.code != "" && wire.EndsCall(e.code) {
		e.cause = wire.CauseForCode(e.code)
	}
	c.cancel(e)
}

// endWith is end for the common case of a cause alone.
func (c *Call) endWith(cause string) { c.end(&ending{cause: cause}) }

// ended returns why the call is ending (a normal clearing if nothing was said).
func (c *Call) ended() *ending {
	var e *ending
	if errors.As(context.Cause(c.ctx), &e) {
		return e
	}
	return &ending{cause: wire.CauseNormalClearing}
}

// post hands an event to the call goroutine without blocking the caller (a signalling read loop, the ARI
// dispatcher, a room). A full inbox means the call stopped reading: it is ending, and its events are moot.
func (c *Call) post(in inbound) {
	select {
	case c.inbox <- in:
	default:
		typ := ""
		if in.msg != nil {
			typ = in.msg.Type
		}
		c.base.Warn("call inbox full: event dropped", "kind", in.kind, "type", typ)
	}
}

// claim marks ARI IDs as this call's before the requests that create them (see ari.Client.Claim).
func (c *Call) claim(ids ...string) {
	c.a.Claim(ids...)
	c.claimed = append(c.claimed, ids...)
	if c.sub != nil {
		c.sub.Add(ids...)
	}
}

// setupCtx bounds one step of setup: the call's context, cut at the configured setup timeout, so a slow or frozen
// Asterisk fails the call with a clear cause instead of holding it.
func (c *Call) setupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(c.ctx, c.m.o.SetupTimeout, errSetupTimeout)
}

var errSetupTimeout = errors.New("Asterisk did not answer within the setup timeout (overloaded or frozen?)")

// run is the call goroutine: it makes the legs with setup, serves events until the call ends, then closes.
func (c *Call) run(setup func() error) {
	defer c.m.unregister(c)
	defer c.close()
	// A call gets a handful of events a second; 256 queued is minutes of a stalled call goroutine, at 4 KiB a call
	// (the client's default of 4096 cost 64 KiB per call).
	c.sub = c.a.Subscribe(ari.Filter{Name: "call-" + c.id, IDs: []string{"call-" + c.id}, QueueSize: 256})
	defer c.sub.Close()
	if err := setup(); err != nil {
		c.setupFailed(err)
		return
	}
	if c.ctx.Err() == nil {
		c.loop()
	}
}

// setupFailed turns a failed setup step into the call's ending, unless something already ended it.
func (c *Call) setupFailed(err error) {
	if c.ctx.Err() != nil {
		if e := c.ended(); e.cause != "" {
			c.log.Info("call ended during setup", "cause", e.cause, "step_err", err)
			return
		}
	}
	var e *ending
	if errors.As(err, &e) {
		c.end(e)
		return
	}
	c.log.Error("call setup failed", "err", err)
	text := "could not set the call up in Asterisk; try again"
	if errors.Is(err, errSetupTimeout) || errors.Is(err, context.DeadlineExceeded) {
		text = "Asterisk did not answer in time (overloaded?); try again"
	}
	c.end(&ending{cause: wire.CauseTemporaryFailure, code: wire.CodeUnavailable, text: text})
}

// loop serves the call's events until it ends.
func (c *Call) loop() {
	if d := c.maxDuration(); d > 0 {
		c.maxDur = time.NewTimer(d)
		defer c.maxDur.Stop()
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		// An ending call stops here: select picks at random among ready cases, and a closed peer (ready for good)
		// would otherwise be handled, and logged as a media failure, again and again before ctx.Done is chosen.
		if c.ctx.Err() != nil {
			return
		}
		var peerDone <-chan struct{}
		var firstMedia <-chan struct{}
		if c.browser != nil && c.browser.peer != nil {
			peerDone = c.browser.peer.Done()
			if !c.browser.mediaSeen {
				firstMedia = c.browser.firstMedia()
			}
		}
		var memberEvents <-chan rooms.Event
		if c.member != nil {
			memberEvents = c.member.Events()
		}
		select {
		case <-c.ctx.Done():
			return
		case in := <-c.inbox:
			c.onInbound(in)
		case ev, ok := <-c.sub.Events():
			if !ok {
				c.endWith(wire.CauseTemporaryFailure)
				continue
			}
			c.onARI(ev)
		case <-firstMedia:
			c.onFirstMedia()
		case <-peerDone:
			c.onPeerDone()
		case ev := <-memberEvents:
			c.onRoomEvent(ev)
		case <-timerC(c.maxDur):
			c.log.Warn("security: call reached its maximum duration", "max", c.maxDuration())
			c.end(&ending{cause: wire.CauseNormalClearing, code: wire.CodeMaxDuration, text: "the call reached its maximum duration"})
		case <-timerC(c.noMedia):
			c.log.Warn("no media from the browser: ending the call", "waited", c.m.o.NoMediaTimeout)
			c.end(&ending{cause: wire.CauseMediaTimeout, code: wire.CodeNoAudio,
				text: "no audio from your browser reached the server: check the microphone and that the network allows UDP (or TURN)"})
		case <-timerC(c.ringTime):
			c.log.Info("nobody answered in time", "ring_timeout", c.m.o.RingTimeout)
			c.endWith(wire.CauseNoAnswer)
		case <-timerC(c.grace):
			c.log.Info("browser did not come back within the resume grace")
			c.end(&ending{cause: wire.CauseSignallingLost, quiet: true})
		case <-trunkTimerC(c.trunks):
			c.onTrunkTimeout()
		case <-tick.C:
			c.onTick()
		}
	}
}

// onPeerDone: the browser's peer connection is over. A browser that closed it (DTLS close_notify, as a page does
// after its hangup message, which may arrive second) has left; one whose ICE failed lost its network.
func (c *Call) onPeerDone() {
	if c.browser.peer.State() == pion.PeerConnectionStateClosed {
		c.log.Info("the browser closed its media")
		c.end(&ending{cause: wire.CauseNormalClearing, quiet: true})
		return
	}
	c.log.Warn("browser media (ICE/DTLS) failed")
	c.end(&ending{cause: wire.CauseMediaTimeout})
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// onInbound handles what other goroutines posted.
func (c *Call) onInbound(in inbound) {
	switch in.kind {
	case inSessionGone:
		c.onSessionGone(in.session)
	case inResumed:
		c.onResumed(in.session)
	case inKicked:
		c.log.Info("removed from the room", "reason", in.reason)
		c.endWith(wire.CauseNormalClearing)
	case inBrowser:
		c.onBrowserMessage(in.session, *in.msg)
	case inHandOff:
		c.onHandOff(in.handoff)
	case inRecord:
		c.onRecordRequest(in.record)
	}
}

// onARI handles an event about the call's resources: the far leg's progress and end, the phone's end, the
// browser's externalMedia channel or the bridge vanishing, talk detection, resources lost while the events socket
// was down.
func (c *Call) onARI(ev ari.Event) {
	c.onCTIEvent(ev) // hold keys and transfers by the far party may replace it first (cti.go)
	if c.far != nil {
		if st, cause := c.far.observe(ev); st != legNoChange {
			c.onFarProgress(st, cause)
		}
		if d, ok := ev.(*ari.ChannelDtmfReceived); ok && d.Channel.ID == c.far.id && c.near != nil {
			c.near.dtmf(c, d.Digit)
		}
	}
	if c.phone != nil {
		if st, cause := c.phone.observe(ev); st == legGone {
			c.log.Info("phone hung up", "cause", cause)
			c.end(&ending{cause: cause, quiet: c.kind != KindPhoneIn})
		}
	}
	if c.inDialplan != "" {
		c.onDialplanEvent(ev)
		return
	}
	switch e := ev.(type) {
	case *ari.ChannelDestroyed:
		if c.browser != nil && e.Channel.ID == c.browser.emID {
			c.log.Warn("the browser's externalMedia channel was destroyed under the call", "cause", e.Cause, "cause_txt", e.CauseTxt)
			c.endWith(wire.CauseTemporaryFailure)
		}
	case *ari.BridgeDestroyed:
		if e.Bridge.ID == c.bridge {
			c.log.Warn("the call's bridge was destroyed under it")
			c.bridge = "" // nothing to delete any more
			c.endWith(wire.CauseTemporaryFailure)
		}
	case *ari.ChannelTalkingStarted:
		if c.member != nil {
			c.member.SetTalking(true)
		}
	case *ari.ChannelTalkingFinished:
		if c.member != nil {
			c.member.SetTalking(false)
		}
	case *ari.Reconciled:
		if gone := c.goneIn(e); gone != "" {
			c.log.Warn("call resources vanished while the ARI events socket was down", "gone", gone)
			c.end(&ending{cause: wire.CauseAsteriskLost})
		}
	}
}

// goneIn names one of the call's resources that a reconcile found gone, or "".
func (c *Call) goneIn(e *ari.Reconciled) string {
	for _, id := range c.claimed {
		if slices.Contains(e.GoneChannels, id) || slices.Contains(e.GoneBridges, id) {
			return id
		}
	}
	if c.phone != nil && slices.Contains(e.GoneChannels, c.phone.id) {
		return c.phone.id
	}
	if c.far != nil && c.far.adopted && slices.Contains(e.GoneChannels, c.far.id) {
		return c.far.id
	}
	return ""
}

// onFarProgress reacts to the far leg ringing, answering or ending.
func (c *Call) onFarProgress(st legState, cause string) {
	switch st {
	case legRinging:
		c.trunkProgress()
		if c.near != nil {
			c.near.ringing(c)
		}
	case legAnswered:
		if !c.answered.IsZero() {
			return
		}
		c.answered = time.Now()
		c.obs.rec.FarAnsweredAt = c.answered
		c.trunkProgress()
		c.log.Info("answered", "after", c.answered.Sub(c.started).Round(time.Millisecond))
		if c.near != nil {
			c.near.answered(c)
		}
		if c.onFarAnswered != nil {
			c.onFarAnswered()
		}
		c.ctiAnswered()
	case legGone:
		if c.far != nil && c.far.trunk && c.trunkFailed(c.far.outcome()) {
			return // the next trunk carries the call
		}
		cause = c.clusterCause(cause) // a tab on another node may have taken the call (cluster.go)
		c.log.Info("far end hung up", "cause", cause)
		c.endWith(cause)
	}
}

// onTick runs twice a second: the media watchdog and what the observer learns of the media.
func (c *Call) onTick() {
	if c.browser != nil {
		c.browser.watch(c)
	}
	now := time.Now()
	c.observeTick(now)
	c.repeatStops(now)
}

// maxDuration is how long the call may last: the configured maximum, shortened to what is left of the caller's
// daily budget. 0: no limit.
func (c *Call) maxDuration() time.Duration {
	d := c.m.o.MaxDuration
	if c.lease != nil && c.lease.Budget > 0 && (d == 0 || c.lease.Budget < d) {
		d = c.lease.Budget
	}
	return d
}

// close releases everything the call made, once, under a context that outlives the call's own. Order: tell the
// browser; far legs (so the far party hears the end at once); the room; the browser's media; its externalMedia
// channel; the bridge; the relay port; the claims. A removal that fails is left to the sweep.
func (c *Call) close() {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	e := c.ended()
	c.cancel(e) // a call that returned from setup without a reason still ends now
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), c.m.o.CloseTimeout)
	defer cancel()
	failed := false
	note := func(what, id string, err error) {
		if err != nil && !ari.IsNotFound(err) {
			failed = true
			c.log.Warn("close: "+what+" failed; the sweep retries", "id", id, "err", err)
		}
	}

	c.tellBrowsers(e)
	reason := ariReason(e.cause)
	if c.far != nil {
		note("hang up far leg", c.far.id, c.far.hangup(ctx, c.a, reason))
	}
	if c.phone != nil {
		note("hang up phone", c.phone.id, c.phone.hangup(ctx, c.a, reason))
	}
	c.leaveRoom(ctx, e.cause)
	for _, o := range c.offers {
		o.close()
	}
	if c.browser != nil {
		c.browser.closeMedia()
		if c.browser.emMade {
			note("hang up externalMedia channel", c.browser.emID, c.a.Channel(c.browser.emID).Hangup(ctx, "normal"))
		}
	}
	if c.bridge != "" {
		note("delete bridge", c.bridge, c.a.Bridge(c.bridge).Delete(ctx))
	}
	if c.browser != nil {
		c.browser.releasePort()
	}
	c.releaseTrunk()
	c.trunkProgress()
	c.a.Release(c.claimed...)
	if failed {
		c.a.SweepSoon()
	}
	c.observeEnd(e)
	c.ctiClosed(e)
	c.finish(e)
}

// finish does the bookkeeping of an ended call: the limits lease with the talk time, the API call's state, the
// log line.
func (c *Call) finish(e *ending) {
	var talked time.Duration
	if !c.answered.IsZero() {
		talked = time.Since(c.answered)
	}
	c.lease.End(talked)
	if c.api != nil {
		c.m.apiEnded(c.api, e.cause)
	}
	attrs := []any{"cause", e.cause, "code", wire.CauseCode(e.cause), "duration", time.Since(c.started).Round(time.Millisecond)}
	if e.code != "" {
		attrs = append(attrs, "error", e.code)
	}
	if c.browser != nil && c.browser.rl != nil {
		st := c.browser.rl.Stats()
		attrs = append(attrs, "to_asterisk_pkts", st.ToAsterisk.Packets, "to_browser_pkts", st.ToBrowser.Packets)
	}
	c.log.Info("call ended", attrs...)
}
