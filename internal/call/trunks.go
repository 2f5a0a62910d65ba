package call

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/wire"
)

// Outside calls go out over the trunks the router chose, in failover order (browser_out.go, phone_pstn.go,
// api.go share this). Each attempt: a channel slot on the trunk (a trunk at max_channels is skipped), the caller ID
// that trunk presents (skipped when it can present none), the trunk leg created in Stasis with it, bridged when
// the call has a bridge, and dialled; a timer passes the call on when the trunk does not ring within
// dialplan.pstn.failover_timeout. A leg that ends before the answer with an outcome the policy names (503,
// CONGESTION, CHANUNAVAIL by default) passes the call to the next trunk while every other leg of the call stays.

// trunkPlan is an outside call's trunks and what it presents, owned by the call goroutine.
type trunkPlan struct {
	d        dialplan.Decision
	left     []string // trunks not tried yet, in order
	current  string
	release  func() // the current trunk's channel slot
	callerID string // the caller's permitted caller ID (E.164)
	name     string // caller name, if any
	// presentOn is the channel whose caller ID the trunk leg's connected line copies in the bridge (the browser's
	// externalMedia channel or the phone); "" when the call has no bridge (an API call).
	presentOn string
	formats   string
	timer     *time.Timer
	last      *Refusal // why the last trunk could not be used, for the final refusal
}

func newTrunkPlan(d dialplan.Decision, callerID, name string) *trunkPlan {
	trunks := d.Trunks
	if len(trunks) == 0 && d.Trunk != "" {
		trunks = []string{d.Trunk}
	}
	return &trunkPlan{d: d, left: trunks, callerID: callerID, name: name}
}

// dialTrunk tries the next usable trunk: it creates the trunk leg, bridges it when the call has a bridge, and
// dials it. It returns an ending when no trunk is left.
func (c *Call) dialTrunk() error {
	p := c.trunks
	r := c.m.o.Router
	for len(p.left) > 0 {
		trunk := p.left[0]
		p.left = p.left[1:]
		max := 0
		if t, ok := r.Trunk(trunk); ok {
			max = t.MaxChannels
		}
		release, ok := c.m.o.TrunkChannels.Acquire(trunk, max)
		if !ok {
			c.log.Info("trunk at its channel limit: trying the next", "trunk", trunk, "max_channels", max)
			p.last = refuse(wire.CodeUnavailable, "every trunk for this number is at its channel limit; try again later")
			continue
		}
		presented, err := r.PresentCallerID(trunk, p.callerID)
		if err != nil {
			release()
			c.log.Info("trunk cannot present the caller ID: trying the next", "trunk", trunk, "err", err)
			p.last = refuse(wire.CodeForbiddenCallerID, "no trunk for this number accepts your caller ID")
			continue
		}
		endpoint, err := r.TrunkEndpoint(p.d, trunk)
		if err != nil {
			release()
			return fmt.Errorf("endpoint of trunk %s: %w", trunk, err)
		}
		p.current, p.release = trunk, release
		c.obs.rec.Trunk, c.obs.rec.CallerID = trunk, presented
		if err := c.attemptTrunk(endpoint, presented); err != nil {
			return err
		}
		c.log.Info("dialling out", "trunk", trunk, "presented", presented)
		return nil
	}
	if p.last != nil {
		return &ending{cause: wire.CauseSwitchCongestion, code: p.last.Code, text: p.last.Message}
	}
	return &ending{cause: wire.CauseSwitchCongestion}
}

// attemptTrunk makes, bridges and dials one trunk leg.
func (c *Call) attemptTrunk(endpoint, presented string) error {
	p := c.trunks
	ctx, cancel := c.setupCtx()
	defer cancel()
	if p.presentOn != "" {
		// Joining the bridge copies this channel's caller ID into the trunk leg's connected line, which is what
		// PJSIP sends in From and P-Asserted-Identity: it must present the same identity.
		if err := presentAs(ctx, c.a, p.presentOn, identity{num: presented, name: p.name}); err != nil {
			return err
		}
	}
	far, err := c.createLeg(ctx, "trunk", ari.CreateRequest{Endpoint: endpoint, Formats: p.formats, Variables: callerVars(presented, p.name)})
	far.trunk = true
	c.far = far
	if err != nil {
		return err
	}
	if c.bridge != "" {
		if err := c.bridgeAdd(ctx, far.id); err != nil {
			return err
		}
	}
	if err := c.a.Channel(far.id).Dial(ctx, "", c.m.o.DialTimeout); err != nil {
		return fmt.Errorf("dial trunk %s: %w", p.current, err)
	}
	if d := c.m.o.Router.FailoverTimeout(); d > 0 && len(p.left) > 0 {
		p.timer = time.NewTimer(d)
	}
	return nil
}

// trunkProgress stops the failover timer once the trunk rings or answers.
func (c *Call) trunkProgress() {
	if p := c.trunks; p != nil && p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}

// trunkFailed decides, for a trunk leg that ended before the answer, whether the call passes to the next trunk;
// it reports false when the call should end with the leg's cause.
func (c *Call) trunkFailed(o dialplan.TrunkOutcome) bool {
	p := c.trunks
	if p == nil || !c.answered.IsZero() || c.ctx.Err() != nil {
		return false
	}
	c.releaseTrunk()
	if len(p.left) == 0 || !c.m.o.Router.Failover(o) {
		return false
	}
	c.log.Warn("trunk failed: passing the call to the next", "trunk", p.current, "dial_status", o.DialStatus,
		"cause", o.Cause, "sip", o.SIPCode, "timed_out", o.TimedOut, "next", p.left[0])
	if err := c.dialTrunk(); err != nil {
		c.setupFailed(err)
	}
	return true
}

// onTrunkTimeout: the trunk did not ring in time; its leg is hung up and the next trunk tried.
func (c *Call) onTrunkTimeout() {
	p := c.trunks
	p.timer = nil
	c.log.Warn("trunk did not ring in time", "trunk", p.current, "failover_timeout", c.m.o.Router.FailoverTimeout())
	if c.far != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), c.m.o.CloseTimeout)
		if err := c.far.hangup(ctx, c.a, "normal"); err != nil && !ari.IsNotFound(err) {
			c.log.Warn("hang up the silent trunk leg; the sweep retries", "err", err)
			c.a.SweepSoon()
		}
		cancel()
	}
	if !c.trunkFailed(dialplan.TrunkOutcome{TimedOut: true}) {
		c.endWith(wire.CauseNoUserResponse)
	}
}

// releaseTrunk frees the current trunk's channel slot, once.
func (c *Call) releaseTrunk() {
	if p := c.trunks; p != nil && p.release != nil {
		p.release()
		p.release = nil
	}
}

func trunkTimerC(p *trunkPlan) <-chan time.Time {
	if p == nil || p.timer == nil {
		return nil
	}
	return p.timer.C
}

// routeMessage is what a refusal by the router says to the caller, without the log's prefix.
func routeMessage(err error) string {
	var re *dialplan.RouteError
	if errors.As(err, &re) {
		return re.Message()
	}
	return err.Error()
}
