package ari

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// tracker remembers which channels and bridges this client owns, so that after
// a reconnect it can tell which vanished while events were not flowing.
type tracker struct {
	mu       sync.Mutex
	channels map[string]struct{}
	bridges  map[string]struct{}
}

func newTracker() *tracker {
	return &tracker{channels: map[string]struct{}{}, bridges: map[string]struct{}{}}
}

func (t *tracker) addChannel(id string) {
	if id == "" {
		return
	}
	t.mu.Lock()
	t.channels[id] = struct{}{}
	t.mu.Unlock()
}

func (t *tracker) removeChannel(id string) {
	t.mu.Lock()
	delete(t.channels, id)
	t.mu.Unlock()
}

func (t *tracker) addBridge(id string) {
	if id == "" {
		return
	}
	t.mu.Lock()
	t.bridges[id] = struct{}{}
	t.mu.Unlock()
}

func (t *tracker) removeBridge(id string) {
	t.mu.Lock()
	delete(t.bridges, id)
	t.mu.Unlock()
}

func (t *tracker) snapshot() (chans, bridges []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.channels {
		chans = append(chans, id)
	}
	for id := range t.bridges {
		bridges = append(bridges, id)
	}
	slices.Sort(chans)
	slices.Sort(bridges)
	return chans, bridges
}

// observe updates the tracked set from an event of our application.
func (t *tracker) observe(ev Event) {
	switch e := ev.(type) {
	case *StasisStart:
		t.addChannel(e.Channel.ID)
		if e.ReplaceChannel != nil {
			t.removeChannel(e.ReplaceChannel.ID)
		}
	case *StasisEnd:
		t.removeChannel(e.Channel.ID)
	case *ChannelDestroyed:
		t.removeChannel(e.Channel.ID)
	case *BridgeDestroyed:
		t.removeBridge(e.Bridge.ID)
	}
}

// Tracked returns the channel and bridge IDs the client currently believes it
// owns (entered our Stasis app or created through this client, not yet gone).
func (c *Client) Tracked() (channels, bridges []string) { return c.track.snapshot() }

// Owned lists what belongs to our Stasis application on Asterisk right now.
type Owned struct {
	Channels []Channel
	Bridges  []Bridge
}

// Owned asks Asterisk what belongs to our application: channels sitting in
// Stasis(app) per their dialplan location or tracked by this client, and
// bridges the app is subscribed to (GET /applications/{app}) or tracked. It works whether or not the
// events socket is connected (the app may then be unknown to Asterisk).
func (c *Client) Owned(ctx context.Context) (*Owned, error) {
	app := c.cfg.Application
	brSet := map[string]bool{}
	if a, err := c.Applications().Get(ctx, app); err == nil {
		for _, id := range a.BridgeIDs {
			brSet[id] = true
		}
	} else if !IsNotFound(err) {
		return nil, fmt.Errorf("list resources of app %s: %w", app, err)
	}
	chans, err := c.Channels().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list resources of app %s: %w", app, err)
	}
	bridges, err := c.Bridges().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list resources of app %s: %w", app, err)
	}
	tracked := map[string]bool{}
	tc, tb := c.track.snapshot()
	for _, id := range tc {
		tracked[id] = true
	}
	for _, id := range tb {
		tracked[id] = true
	}
	out := &Owned{}
	for _, ch := range chans {
		// The app's channel_ids also lists channels it merely watches (e.g. the
		// ;2 half of a Local channel it originated), so only a channel in
		// Stasis(app) or one we track counts as owned.
		if ch.InStasis(app) || tracked[ch.ID] {
			out.Channels = append(out.Channels, ch)
		}
	}
	for _, b := range bridges {
		// Asterisk 22 reports creator "Stasis" for every ARI bridge, whatever
		// the app, so bridge_class alone cannot attribute a bridge to us.
		if brSet[b.ID] || tracked[b.ID] {
			out.Bridges = append(out.Bridges, b)
		}
	}
	return out, nil
}

// Orphans returns what Owned finds that the client does not track: channels
// and bridges of our app left behind by a crash, or that entered Stasis while
// the socket was down. The caller decides whether to adopt or hang them up.
func (c *Client) Orphans(ctx context.Context) (*Owned, error) {
	owned, err := c.Owned(ctx)
	if err != nil {
		return nil, err
	}
	tc, tb := c.track.snapshot()
	out := &Owned{}
	for _, ch := range owned.Channels {
		if !slices.Contains(tc, ch.ID) {
			out.Channels = append(out.Channels, ch)
		}
	}
	for _, b := range owned.Bridges {
		if !slices.Contains(tb, b.ID) {
			out.Bridges = append(out.Bridges, b)
		}
	}
	return out, nil
}

// reconcile compares tracked resources with Asterisk's lists and publishes
// Reconciled. Vanished resources are forgotten.
func (c *Client) reconcile(ctx context.Context) *Reconciled {
	ev := &Reconciled{EventBase: EventBase{Type: TypeReconciled, Application: c.cfg.Application, Timestamp: Time{time.Now()}}}
	tc, tb := c.track.snapshot()
	chans, err := c.Channels().List(ctx)
	if err != nil {
		ev.Err = fmt.Errorf("reconcile after reconnect: %w", err)
		ev.AliveChannels, ev.AliveBridges = tc, tb
		return ev
	}
	bridges, err := c.Bridges().List(ctx)
	if err != nil {
		ev.Err = fmt.Errorf("reconcile after reconnect: %w", err)
		ev.AliveChannels, ev.AliveBridges = tc, tb
		return ev
	}
	liveC := map[string]bool{}
	for _, ch := range chans {
		liveC[ch.ID] = true
	}
	liveB := map[string]bool{}
	for _, b := range bridges {
		liveB[b.ID] = true
	}
	for _, id := range tc {
		if liveC[id] {
			ev.AliveChannels = append(ev.AliveChannels, id)
		} else {
			ev.GoneChannels = append(ev.GoneChannels, id)
			c.track.removeChannel(id)
		}
	}
	for _, id := range tb {
		if liveB[id] {
			ev.AliveBridges = append(ev.AliveBridges, id)
		} else {
			ev.GoneBridges = append(ev.GoneBridges, id)
			c.track.removeBridge(id)
		}
	}
	if orph, err := c.Orphans(ctx); err == nil {
		for _, ch := range orph.Channels {
			ev.UnknownChannels = append(ev.UnknownChannels, ch.ID)
		}
		for _, b := range orph.Bridges {
			ev.UnknownBridges = append(ev.UnknownBridges, b.ID)
		}
	} else {
		ev.Err = fmt.Errorf("reconcile after reconnect: list orphans: %w", err)
	}
	return ev
}
