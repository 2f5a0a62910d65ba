package ari

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Patchbay owns every channel and bridge it creates, across crashes: their IDs carry a prefix naming this
// instance ("pb.<instance>."), and channels that enter its Stasis application from the dialplan are its own
// while they sit there. A live call or room claims what it holds; a sweep hangs up or deletes whatever of ours no
// one claims: left behind by a crash (kill -9, power loss), by a teardown whose DELETE timed out, or created while
// the events socket was down. Resources of another instance sharing the same Asterisk carry another prefix (and
// another Stasis application) and are never touched.

// Sweep defaults applied by New for zero Config fields.
const (
	DefaultSweepInterval = 30 * time.Second
	DefaultSweepMinAge   = 5 * time.Second
)

var instanceRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,23}$`)

// ValidInstance reports whether id may name an instance: 1-24 of a-z 0-9 and '-', not starting with '-'. The
// alphabet keeps the prefix unambiguous: "pb.a." never starts "pb.a-b.".
func ValidInstance(id string) bool { return instanceRe.MatchString(id) }

// instanceFromApp derives a default instance ID from the Stasis application name, which is already unique per
// instance on one Asterisk (two instances on one application would split each other's events).
func instanceFromApp(app string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(app) {
		if b.Len() == 24 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if s == "" {
		s = "patchbay"
	}
	return s
}

// owner is the set of resources live calls and rooms claim, and the sweep's state.
type owner struct {
	prefix  string
	started time.Time

	mu      sync.Mutex
	claimed map[string]int // ID → claims (a channel may be claimed by a call and a room at once)

	kick chan struct{} // SweepSoon
}

func newOwner(instance string) *owner {
	return &owner{prefix: "pb." + instance + ".", started: time.Now(), claimed: map[string]int{}, kick: make(chan struct{}, 1)}
}

// Instance is the ID that prefixes every resource this client creates (Config.Instance).
func (c *Client) Instance() string { return c.cfg.Instance }

// ResourceID returns a new ID for a channel or bridge of this instance: "pb.<instance>.<kind>.<random>". kind is
// a short word for logs ("br", "em", "far"…).
func (c *Client) ResourceID(kind string) string {
	return c.own.prefix + kind + "." + strings.TrimPrefix(NewID(), "pb-")
}

// NamedID returns the ID of a resource of this instance with a stable name, e.g. a room's bridge:
// "pb.<instance>.<kind>.<name>". name must be safe in a URL path segment (it is escaped anyway).
func (c *Client) NamedID(kind, name string) string { return c.own.prefix + kind + "." + name }

// Ours reports whether id was made by ResourceID of this instance.
func (c *Client) Ours(id string) bool { return strings.HasPrefix(id, c.own.prefix) }

// Claim marks ids as held by a live call or room, so no sweep touches them. Claim an ID before the request that
// creates it: a request that times out may still have created the resource, and the claim's release then leaves
// it to the next sweep. Each Claim needs one Release.
func (c *Client) Claim(ids ...string) {
	c.own.mu.Lock()
	defer c.own.mu.Unlock()
	for _, id := range ids {
		if id != "" {
			c.own.claimed[id]++
		}
	}
}

// Release drops a claim made by Claim. What is released but still exists in Asterisk is swept.
func (c *Client) Release(ids ...string) {
	c.own.mu.Lock()
	defer c.own.mu.Unlock()
	for _, id := range ids {
		if n := c.own.claimed[id]; n > 1 {
			c.own.claimed[id] = n - 1
		} else {
			delete(c.own.claimed, id)
		}
	}
}

// Claimed reports whether some live call or room holds id.
func (c *Client) Claimed(id string) bool {
	c.own.mu.Lock()
	defer c.own.mu.Unlock()
	return c.own.claimed[id] > 0
}

// SweepSoon asks Run to sweep at once rather than at the next interval (e.g. after a teardown DELETE failed).
func (c *Client) SweepSoon() {
	select {
	case c.own.kick <- struct{}{}:
	default:
	}
}

// SweepReport says what one sweep found and did.
type SweepReport struct {
	Channels, Bridges int // hung up, deleted
	Failed            int // hang-ups or deletes that failed (retried at the next sweep)
	Took              time.Duration
	// Spared is when the youngest unclaimed channel spared for its age becomes old enough to sweep; zero if none.
	Spared time.Time
}

// Sweep hangs up the channels and deletes the bridges of this instance that no live call or room claims. A
// channel the dialplan handed over after this client started is left alone until it is SweepMinAge old, so one
// whose StasisStart is still on its way to its call is never taken for an orphan. It publishes a Swept event.
func (c *Client) Sweep(ctx context.Context) (SweepReport, error) { return c.sweep(ctx, false) }

// SweepAll is Sweep without the age rule, for shutdown: with every call closed, nothing of ours is in flight.
func (c *Client) SweepAll(ctx context.Context) (SweepReport, error) { return c.sweep(ctx, true) }

func (c *Client) sweep(ctx context.Context, all bool) (SweepReport, error) {
	start := time.Now()
	var rep SweepReport
	chans, err := c.Channels().List(ctx)
	if err != nil {
		return rep, fmt.Errorf("sweep: list channels: %w", err)
	}
	bridges, err := c.Bridges().List(ctx)
	if err != nil {
		return rep, fmt.Errorf("sweep: list bridges: %w", err)
	}
	old := func(created Time) bool {
		// Asterisk reports milliseconds from its own clock (this host's, or a LAN neighbour's): "before this client
		// started" keeps a margin for both. A missing time counts as old.
		return all || created.IsZero() || created.Before(c.own.started.Add(-2*time.Second)) ||
			time.Since(created.Time) >= c.cfg.SweepMinAge
	}
	var errs []error
	for _, ch := range chans {
		// Our own IDs are claimed before the request that creates them, so an unclaimed one is an orphan at any
		// age; a channel the dialplan handed over is claimed only once its StasisStart reached its call.
		adopted := !c.Ours(ch.ID) && ch.InStasis(c.cfg.Application)
		if !(c.Ours(ch.ID) || adopted) || c.Claimed(ch.ID) {
			continue
		}
		if adopted && !old(ch.CreationTime) {
			if at := ch.CreationTime.Add(c.cfg.SweepMinAge); rep.Spared.IsZero() || at.Before(rep.Spared) {
				rep.Spared = at
			}
			continue
		}
		err := c.Channel(ch.ID).Hangup(ctx, "normal")
		switch {
		case err == nil || IsNotFound(err):
			rep.Channels++
			c.log.Warn("sweep: hung up a channel no call holds", "channel", ch.ID, "name", ch.Name, "state", ch.State,
				"age", time.Since(ch.CreationTime.Time).Round(time.Second))
		default:
			rep.Failed++
			errs = append(errs, err)
		}
	}
	for _, b := range bridges {
		if !c.Ours(b.ID) || c.Claimed(b.ID) {
			continue
		}
		err := c.Bridge(b.ID).Delete(ctx)
		switch {
		case err == nil || IsNotFound(err):
			rep.Bridges++
			c.log.Warn("sweep: deleted a bridge no call holds", "bridge", b.ID, "channels", len(b.Channels))
		default:
			rep.Failed++
			errs = append(errs, err)
		}
	}
	rep.Took = time.Since(start)
	c.bus.publish(&Swept{EventBase: c.synthetic(TypeSwept), Report: rep})
	if len(errs) > 0 {
		return rep, fmt.Errorf("sweep: %d of %d removals failed (retried at the next sweep): %w",
			rep.Failed, rep.Failed+rep.Channels+rep.Bridges, errors.Join(errs...))
	}
	return rep, nil
}

// sweepLoop sweeps once at once (start or reconnect: whatever a crash or an outage left), then every
// SweepInterval and whenever SweepSoon asks, until ctx ends (the connection's context).
func (c *Client) sweepLoop(ctx context.Context) {
	if c.cfg.SweepInterval < 0 {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.own.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rep, err := c.Sweep(sctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			c.log.Warn("ari sweep incomplete", "err", err)
		} else if rep.Channels+rep.Bridges > 0 {
			c.log.Info("ari sweep removed resources no call held", "channels", rep.Channels, "bridges", rep.Bridges, "took", rep.Took.Round(time.Millisecond))
		}
		next := c.cfg.SweepInterval
		if !rep.Spared.IsZero() {
			// A channel was too young to judge: look again as soon as it is not.
			next = min(next, max(time.Until(rep.Spared), 100*time.Millisecond))
		}
		t.Reset(next)
	}
}
