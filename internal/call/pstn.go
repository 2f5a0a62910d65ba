package call

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/limits"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// PSTNOptions configure outside calls through the trunk, click-to-call and the limits on both. The zero value
// allows no outside call without a caller ID and applies no limits.
type PSTNOptions struct {
	// Per-caller limits: browser users (token subject), API keys and softphones. Nil: unlimited.
	TokenLimits, APIKeyLimits, PhoneLimits *limits.Limiter
	// PhoneCallerIDs maps a softphone's endpoint name to the E.164 caller ID its outside calls present.
	PhoneCallerIDs map[string]string
	// DefaultCallerID is presented when a caller has none of its own; empty: such outside calls are refused.
	DefaultCallerID string
	// DIDs maps an inbound number to "user:NAME" or "ext:NUMBER"; other DIDs go to the rooms' number store.
	DIDs map[string]string
	// APICallerIDs maps an API key's name to the caller IDs its calls may present; APIDial to its grants.
	APICallerIDs, APIDial map[string][]string
	// Tickets issues one-time join tickets for API calls connected to a room; TicketTTL is their lifetime.
	Tickets   TicketIssuer
	TicketTTL time.Duration
	// Webhooks receives progress events of API calls; nil: none are sent.
	Webhooks Notifier
}

// pstnState is the Manager's bookkeeping for limits and API calls, kept beside the Call structs.
type pstnState struct {
	mu       sync.Mutex
	leases   map[string]*limits.Lease // call ID → admitted lease
	answered map[string]time.Time     // call ID → when the far end answered
	api      map[string]*apiCall      // API call ID → state
}

func (m *Manager) pstn() *pstnState {
	m.pstnOnce.Do(func() {
		m.pstnSt = &pstnState{leases: map[string]*limits.Lease{}, answered: map[string]time.Time{}, api: map[string]*apiCall{}}
	})
	return m.pstnSt
}

// callerIDRe is what a caller ID presented to a carrier may be: E.164 or a plain national number.
var callerIDRe = regexp.MustCompile(`^\+?[1-9][0-9]{1,14}$`)

// refusalCode maps a limits refusal to its signalling/API code.
func refusalCode(err error) (code, text string) {
	var r *limits.Refusal
	if errors.As(err, &r) {
		return r.Code, r.Message
	}
	return wire.CodeInternal, err.Error()
}

// admitBrowserCall applies the token's limits and, for outside numbers, checks that the token carries a caller
// ID. It reports false after telling the browser why.
func (m *Manager) admitBrowserCall(s *signal.Session, msg signal.Message, d dialplan.Decision) (*limits.Lease, bool) {
	ctx := s.Context()
	fail := func(code, text string) {
		m.log.Warn("security: call refused", "session", s.ID(), "user", s.User(), "code", code, "kind", d.Kind, "number", d.Number, "reason", text)
		_ = s.Send(ctx, signal.ErrorMessage(msg.CallID, code, text))
		m.obsRefused(cdr.DirBrowserOut, code, s.User(), msg.To, s.User()) // METRICS-HOOK
	}
	if d.Kind == dialplan.KindPSTN {
		if _, err := m.browserCallerID(s.Claims()); err != nil {
			fail(wire.CodeForbiddenCallerID, err.Error())
			return nil, false
		}
	}
	lease, err := m.o.PSTN.TokenLimits.Start("token:"+s.User(), d.Kind == dialplan.KindPSTN)
	if err != nil {
		code, text := refusalCode(err)
		fail(code, text)
		return nil, false
	}
	return lease, true
}

// browserCallerID is the caller ID a browser's outside call presents: the first of the token's caller_ids
// (chosen by the backend that signed it, never by the browser), else the configured default.
func (m *Manager) browserCallerID(cl *auth.Claims) (string, error) {
	if cl != nil && len(cl.CallerIDs) > 0 {
		id := cl.CallerIDs[0]
		if !callerIDRe.MatchString(id) {
			return "", fmt.Errorf("the token's caller ID %q is not a phone number; have the backend mint the token with E.164 caller_ids", id)
		}
		return id, nil
	}
	if m.o.PSTN.DefaultCallerID != "" {
		return m.o.PSTN.DefaultCallerID, nil
	}
	return "", errors.New("outside calls need a caller ID: have the backend mint the token with caller_ids")
}

// holdLease remembers a call's admission so that endCall releases it.
func (m *Manager) holdLease(callID string, l *limits.Lease) {
	if l == nil {
		return
	}
	st := m.pstn()
	st.mu.Lock()
	st.leases[callID] = l
	st.mu.Unlock()
}

// endCall releases the call's lease, charging its talk time to the daily budget. Safe to call more than once.
func (m *Manager) endCall(callID string) {
	st := m.pstn()
	st.mu.Lock()
	l := st.leases[callID]
	at, answered := st.answered[callID]
	delete(st.leases, callID)
	delete(st.answered, callID)
	st.mu.Unlock()
	var talked time.Duration
	if answered {
		talked = time.Since(at)
	}
	l.End(talked)
}

// noteAnswered records when a call was answered (for the budget).
func (m *Manager) noteAnswered(callID string) {
	st := m.pstn()
	st.mu.Lock()
	if _, ok := st.answered[callID]; !ok {
		st.answered[callID] = time.Now()
	}
	st.mu.Unlock()
}

// maxDuration is how long a call may last: the configured maximum, shortened to what is left of the caller's
// daily budget. 0: no limit.
func (m *Manager) maxDuration(callID string) time.Duration {
	d := m.o.MaxDuration
	st := m.pstn()
	st.mu.Lock()
	l := st.leases[callID]
	st.mu.Unlock()
	if l != nil && l.Budget > 0 && (d == 0 || l.Budget < d) {
		d = l.Budget
	}
	return d
}

// farEndpoint is what Patchbay originates for d: outside numbers go straight to their trunk (so the caller ID
// set on the channel is what the carrier sees in From and P-Asserted-Identity), everything else through the
// router's Local channel. Both are built from the router's validated number and trunk names only.
func farEndpoint(d dialplan.Decision) string {
	if d.Kind == dialplan.KindPSTN && d.Trunk != "" {
		return "PJSIP/" + d.Number + "@" + d.Trunk
	}
	return d.Endpoint
}

// callerVars sets the identity a far leg presents. CALLERID is what the dialplan and CDRs see; CONNECTEDLINE on
// an outgoing PJSIP channel is what goes into From and P-Asserted-Identity ("i": set without sending an update).
func callerVars(num, name string) map[string]string {
	v := map[string]string{}
	if num != "" {
		v["CALLERID(num)"] = num
		v["CONNECTEDLINE(num,i)"] = num
	}
	if name != "" {
		v["CALLERID(name)"] = name
		v["CONNECTEDLINE(name,i)"] = name
	}
	return v
}

// presentAs sets the caller ID of a channel already in (or about to join) the far leg's bridge: a two-party
// bridge copies each channel's caller ID into its peer's connected line, and an outgoing PJSIP channel's connected
// line is what goes into From and P-Asserted-Identity.
func presentAs(ctx context.Context, a *ari.Client, channelID, num, name string) error {
	for k, v := range map[string]string{"CALLERID(num)": num, "CALLERID(name)": name} {
		if v == "" {
			continue
		}
		if err := a.Channel(channelID).SetVariable(ctx, k, v); err != nil {
			return fmt.Errorf("set %s on %s: %w", k, channelID, err)
		}
	}
	return nil
}

// pstnStasisStart handles channels the dialplan sent for outside calls ("outbound,<number>" from softphones) and
// DIDs configured for a user or an extension ("did,<number>"). It reports whether it took the channel; other DIDs
// are left to the rooms' number store.
func (m *Manager) pstnStasisStart(ctx context.Context, e *ari.StasisStart) bool {
	if len(e.Args) < 1 {
		return false
	}
	arg := ""
	if len(e.Args) > 1 {
		arg = e.Args[1]
	}
	switch e.Args[0] {
	case "outbound":
		m.phoneOutbound(ctx, e.Channel, arg)
		return true
	case "did":
		return m.didToUserOrExt(ctx, e.Channel, arg)
	}
	return false
}

// phoneEndpoint returns the PJSIP endpoint of a channel name such as "PJSIP/101-0000002a".
func phoneEndpoint(channelName string) string {
	rest, ok := strings.CutPrefix(channelName, "PJSIP/")
	if !ok {
		return ""
	}
	if i := strings.LastIndexByte(rest, '-'); i > 0 {
		return rest[:i]
	}
	return rest
}

// phoneOutbound applies the number rules, the phone's caller ID and limits to a softphone's outside call, then
// bridges it with a trunk leg. Refused calls are hung up with a cause the phone can show.
func (m *Manager) phoneOutbound(ctx context.Context, ch ari.Channel, number string) {
	phone := phoneEndpoint(ch.Name)
	log := m.log.With("channel", ch.ID, "phone", phone, "dialled", number)
	refuse := func(code, reason, text string) {
		log.Warn("security: phone's outside call refused", "code", code, "cause", reason, "reason", text)
		m.hangupAsync(ctx, ch.ID, reason, log)
	}
	d, err := m.o.Router.Route(number)
	if err != nil {
		var re *dialplan.RouteError
		if errors.As(err, &re) && re.Code == wire.CodeForbiddenDestination {
			refuse(re.Code, "rejected", err.Error())
		} else {
			refuse(wire.CodeInvalidNumber, "number_incomplete", err.Error())
		}
		return
	}
	if d.Kind != dialplan.KindPSTN {
		refuse(wire.CodeInvalidNumber, "unallocated", "only outside numbers reach Patchbay this way")
		return
	}
	callerID := m.o.PSTN.PhoneCallerIDs[phone]
	if callerID == "" {
		callerID = m.o.PSTN.DefaultCallerID
	}
	if callerID == "" {
		refuse(wire.CodeForbiddenCallerID, "rejected", "no caller ID configured for this phone (dialplan.phone_caller_ids)")
		return
	}
	lease, err := m.o.PSTN.PhoneLimits.Start("phone:"+phone, true)
	if err != nil {
		code, text := refusalCode(err)
		reason := "congestion"
		if code == wire.CodeBudgetExhausted {
			reason = "rejected"
		}
		refuse(code, reason, text)
		return
	}
	c := m.newCall(ctx, m.log.With("channel", ch.ID, "phone", phone))
	c.farID = "pb-trunk-" + c.id
	if err := m.register(c); err != nil {
		lease.End(0)
		m.hangupAsync(ctx, ch.ID, "congestion", log)
		return
	}
	m.holdLease(c.id, lease)
	go c.runPhoneOutbound(ch, d, callerID)
}

// runPhoneOutbound owns a softphone's outside call: a mixing bridge holding the phone and a trunk leg.
func (c *Call) runPhoneOutbound(ch ari.Channel, d dialplan.Decision, callerID string) {
	ctx, cancel := context.WithCancel(c.ctx)
	c.ctx = ctx
	defer func() {
		cancel()
		c.m.endCall(c.id)
		c.m.unregister(c)
	}()
	c.log = c.log.With("to", d.Number, "trunk", d.Trunk, "caller_id", callerID)
	c.log.Info("phone's outside call")
	a := c.m.o.ARI
	sub := a.Subscribe(ari.Filter{Name: "phone-pstn-" + c.id, IDs: []string{ch.ID, c.farID, c.bridgeID}})
	defer sub.Close()
	phoneGone, bridged := false, false
	cause := wire.CauseNormalClearing
	defer func() {
		hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer hcancel()
		if !c.farGone {
			if err := a.Channel(c.farID).Hangup(hctx, "normal"); err != nil && !ari.IsNotFound(err) {
				c.log.Warn("hang up trunk leg", "err", err)
			}
		}
		if !phoneGone {
			if err := a.Channel(ch.ID).Hangup(hctx, ariReason(cause)); err != nil && !ari.IsNotFound(err) {
				c.log.Warn("hang up phone", "err", err)
			}
		}
		if bridged {
			if err := a.Bridge(c.bridgeID).Delete(hctx); err != nil && !ari.IsNotFound(err) {
				c.log.Warn("delete bridge", "err", err)
			}
		}
		c.log.Info("phone's outside call ended", "cause", cause, "duration", time.Since(c.started).Round(time.Millisecond))
	}()

	setupCtx, setupCancel := context.WithTimeout(ctx, 10*time.Second)
	// proxy_media keeps the audio in Asterisk's core: a native RTP bridge set up while the phone is still
	// ringing sometimes left a plain-RTP phone hearing nothing once answered.
	_, err := a.Bridges().Create(setupCtx, ari.BridgeRequest{ID: c.bridgeID, Type: "mixing,proxy_media", Name: "patchbay-" + c.id})
	if err == nil {
		bridged = true
		// The phone presents the configured caller ID toward the trunk leg (see presentAs), never its extension.
		err = presentAs(setupCtx, a, ch.ID, callerID, "")
	}
	if err == nil {
		err = a.Bridge(c.bridgeID).AddChannel(setupCtx, ari.AddChannelOptions{}, ch.ID)
	}
	if err == nil {
		_, err = a.Channels().Create(setupCtx, ari.CreateRequest{
			Endpoint: farEndpoint(d), App: a.Application(), AppArgs: "leg," + c.id, ChannelID: c.farID,
			Variables: callerVars(callerID, ""),
		})
	}
	if err == nil {
		err = waitStasisStart(setupCtx, sub, c.farID)
	}
	if err == nil {
		err = a.Bridge(c.bridgeID).AddChannel(setupCtx, ari.AddChannelOptions{}, c.farID)
	}
	setupCancel()
	if err == nil {
		err = a.Channel(c.farID).Dial(ctx, "", c.m.o.DialTimeout)
	}
	if err != nil {
		c.log.Error("set up trunk leg", "err", err)
		cause = wire.CauseTemporaryFailure
		return
	}
	var maxDur <-chan time.Time
	if dur := c.m.maxDuration(c.id); dur > 0 {
		t := time.NewTimer(dur)
		defer t.Stop()
		maxDur = t.C
	}
	answered := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-maxDur:
			c.log.Warn("security: call reached the maximum duration", "max", c.m.maxDuration(c.id))
			return
		case in := <-c.inbox:
			if in.kind == kindShutdown {
				cause = wire.CauseCongestion
				return
			}
		case ev := <-sub.Events():
			switch e := ev.(type) {
			case *ari.Dial:
				if e.Peer.ID != c.farID {
					continue
				}
				switch e.Dialstatus {
				case "RINGING", "PROGRESS":
					if err := a.Channel(ch.ID).Ring(ctx); err != nil {
						c.log.Debug("ring phone", "err", err)
					}
				case "ANSWER", "":
				default:
					cause = dialStatusCause(e.Dialstatus)
					return
				}
			case *ari.ChannelStateChange:
				if e.Channel.ID == c.farID && e.Channel.State == "Up" && !answered {
					answered = true
					c.m.noteAnswered(c.id)
					if err := a.Channel(ch.ID).Answer(ctx); err != nil {
						c.log.Warn("answer phone", "err", err)
					}
					c.log.Info("answered", "after", time.Since(c.started).Round(time.Millisecond))
				}
			case *ari.ChannelDestroyed:
				switch e.Channel.ID {
				case c.farID:
					c.farGone = true
					if cause = wire.CauseName(e.Cause); e.Cause == 0 {
						cause = wire.CauseNormalClearing
					}
					return
				case ch.ID:
					phoneGone = true
					return
				}
			case *ari.StasisEnd:
				// The phone came from the dialplan: Asterisk reports nothing more about it once it leaves the
				// application (not even ChannelDestroyed), so StasisEnd is its hang-up.
				if e.Channel.ID == ch.ID {
					phoneGone = true
					return
				}
			case *ari.BridgeDestroyed:
				bridged = false
				cause = wire.CauseTemporaryFailure
				return
			case *ari.Reconciled:
				if goneAny(e, ch.ID, c.farID, c.bridgeID) {
					cause = wire.CauseTemporaryFailure
					return
				}
			}
		}
	}
}

// didToUserOrExt routes a DID from the trunk that dialplan.dids sends to a browser user (rung like any incoming
// call) or to an extension (the channel continues in the internal context, never in from-patchbay, so an inbound
// call cannot be turned around to the trunk). It reports false for DIDs it does not know.
func (m *Manager) didToUserOrExt(ctx context.Context, ch ari.Channel, did string) bool {
	num, err := dialplan.NormalizeNumber(did)
	if err != nil {
		return false
	}
	target, ok := m.o.PSTN.DIDs[num]
	if !ok {
		return false
	}
	log := m.log.With("channel", ch.ID, "did", num, "caller", ch.Caller.Number, "target", target)
	kind, name, _ := strings.Cut(target, ":")
	switch kind {
	case "user":
		log.Info("DID rings a browser user")
		m.incoming(ctx, ch, name, log)
	case "ext":
		d, err := m.o.Router.Route(name)
		if err != nil || d.Kind != dialplan.KindExtension {
			log.Error("DID maps to something that is not an extension; fix dialplan.dids", "err", err)
			m.hangupAsync(ctx, ch.ID, "unallocated", log)
			return true
		}
		log.Info("DID continues to an extension")
		go func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := m.o.ARI.Channel(ch.ID).Continue(cctx, ari.ContinueOptions{Context: "internal", Extension: d.Number, Priority: 1}); err != nil && !ari.IsNotFound(err) {
				log.Warn("continue DID to extension", "err", err)
				m.hangupAsync(ctx, ch.ID, "failure", log)
			}
		}()
	default:
		log.Error("unknown DID target; fix dialplan.dids")
		m.hangupAsync(ctx, ch.ID, "unallocated", log)
	}
	return true
}
