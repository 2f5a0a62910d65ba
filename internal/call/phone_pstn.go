package call

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/wire"
)

// A softphone dials an outside number: the dialplan hands its channel to Patchbay ("outbound,<number>"), which
// applies the same number rules, caller ID and limits as to a browser. Legs, in order: a two-party bridge (media
// proxied in Asterisk's core), the phone in it, the trunk leg created in Stasis with the phone's caller ID, added
// and dialled. The trunk's progress rings and answers the phone.

// phoneParty is a phone's channel as the party that hears the trunk's progress.
type phoneParty struct{ id string }

func (p phoneParty) ringing(c *Call) {
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := c.a.Channel(p.id).Ring(ctx); err != nil {
		c.log.Debug("ring phone", "err", err)
	}
}

func (p phoneParty) answered(c *Call) {
	ctx, cancel := c.setupCtx()
	defer cancel()
	if err := c.a.Channel(p.id).Answer(ctx); err != nil {
		// The trunk is up and talking to nobody: end the call rather than leave the phone ringing.
		c.setupFailed(fmt.Errorf("answer the phone: %w", err))
	}
}

// dtmf: DTMF between a phone and the trunk passes through Asterisk's bridge by itself.
func (phoneParty) dtmf(*Call, string) {}

// phoneDialsOut admits a softphone's outside call; refusals hang the phone up with a cause it can show.
func (m *Manager) phoneDialsOut(ctx context.Context, ch ari.Channel, number string) {
	phone := phoneEndpoint(ch.Name)
	log := m.log.With("channel", ch.ID, "phone", phone, "dialled", number)
	refuseWith := func(code, reason, text string) {
		log.Warn("security: phone's outside call refused", "code", code, "cause", reason, "reason", text)
		m.observeRefused(KindPhonePSTN, code, cdr.Record{From: phone, To: number})
		m.hangupAsync(ctx, ch.ID, reason, log)
	}
	d, err := m.o.Router.Route(number)
	if err != nil {
		log = log.With(routeAttrs(err)...)
		var re *dialplan.RouteError
		if errors.As(err, &re) && re.Code == wire.CodeForbiddenDestination {
			refuseWith(re.Code, "rejected", err.Error())
		} else {
			refuseWith(wire.CodeInvalidNumber, "number_incomplete", err.Error())
		}
		return
	}
	if d.Kind != dialplan.KindPSTN {
		refuseWith(wire.CodeInvalidNumber, "unallocated", "only outside numbers reach Patchbay this way")
		return
	}
	callerID := m.o.PSTN.PhoneCallerIDs[phone]
	if callerID == "" {
		callerID = m.o.PSTN.DefaultCallerID
	}
	if callerID == "" {
		refuseWith(wire.CodeForbiddenCallerID, "rejected", "no caller ID configured for this phone (dialplan.phone_caller_ids)")
		return
	}
	if why := m.unavailable(); why != "" {
		refuseWith(wire.CodeUnavailable, "congestion", why)
		return
	}
	lease, err := m.o.PSTN.PhoneLimits.Start("phone:"+phone, true)
	if err != nil {
		r := limitRefusal(err)
		reason := "congestion"
		if r.Code == wire.CodeBudgetExhausted {
			reason = "rejected"
		}
		refuseWith(r.Code, reason, r.Message)
		return
	}
	c := m.newCall(KindPhonePSTN, m.log.With("channel", ch.ID, "phone", phone, "to", d.Number, "trunk", d.Trunk, "caller_id", callerID))
	c.phone = c.adoptLater(ch)
	c.near = phoneParty{id: ch.ID}
	c.lease = lease
	c.obs.rec.From, c.obs.rec.To, c.obs.rec.CallerID, c.obs.rec.Trunk = phone, d.Number, callerID, d.Trunk
	if err := m.start(c, func() error { return c.setupPhonePSTN(d, callerID) }); err != nil {
		lease.End(0)
		m.hangupAsync(ctx, ch.ID, "congestion", log)
	}
}

func (c *Call) setupPhonePSTN(d dialplan.Decision, callerID string) error {
	c.claim(c.phone.id)
	c.log.Info("phone's outside call")
	ctx, cancel := c.setupCtx()
	defer cancel()
	// proxy_media keeps the audio in Asterisk's core: a native RTP bridge set up while the phone is still
	// ringing sometimes left a plain-RTP phone hearing nothing once answered.
	if err := c.makeBridge(ctx, "mixing,proxy_media"); err != nil {
		return err
	}
	if err := c.bridgeAdd(ctx, c.phone.id); err != nil {
		return err
	}
	// The phone presents the configured caller ID toward the trunk leg, never its extension (trunks.go).
	c.trunks = newTrunkPlan(d, callerID, "")
	c.trunks.presentOn = c.phone.id
	return c.dialTrunk()
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

// presentAs sets the caller ID of a channel in (or about to join) the far leg's bridge: a two-party bridge copies
// each channel's caller ID into its peer's connected line, and an outgoing PJSIP channel's connected line is what
// goes into From and P-Asserted-Identity.
func presentAs(ctx context.Context, a *ari.Client, channelID string, who identity) error {
	vars := who.vars()
	for _, k := range slices.Sorted(maps.Keys(vars)) { // in a fixed order, for the logs and the tests
		if err := a.Channel(channelID).SetVariable(ctx, k, vars[k]); err != nil {
			return fmt.Errorf("set %s on %s: %w", k, channelID, err)
		}
	}
	return nil
}
