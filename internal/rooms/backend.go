package rooms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/patchbay/patchbay/ari"
)

// Backend mixes one room's audio. Attach puts a participant's channel (already in Stasis, in the room's G.711
// law) into the mix; the returned Attachment takes it out again. Close releases what the backend made.
type Backend interface {
	Kind() string
	Attach(ctx context.Context, participantID, channelID, format string) (Attachment, error)
	Close(ctx context.Context) error
}

// Attachment is one participant in a backend's mix. Detach is idempotent.
type Attachment interface {
	Detach(ctx context.Context) error
}

// ConfBridgeContext is the dialplan context (asterisk-configs/extensions.conf.tmpl) whose extension "s" runs
// ConfBridge(${PB_ROOM}).
const ConfBridgeContext = "patchbay-confbridge"

func ignoreGone(err error) error {
	var ae *ari.Error
	if err == nil || ari.IsNotFound(err) || (errors.As(err, &ae) && (ae.Status == 422 || ae.Status == 409)) {
		return nil
	}
	// removeChannel answers 400 "Channel not found" for a channel that has already hung up.
	if errors.As(err, &ae) && ae.Status == 400 && strings.Contains(strings.ToLower(ae.Message), "not found") {
		return nil
	}
	return err
}

// bridgeBackend mixes the room in one ARI mixing bridge, created on the first join.
type bridgeBackend struct {
	a        *ari.Client
	id, name string

	mu      sync.Mutex
	created bool

	onCreate func(room, bridgeID string) // Options.OnBridge
	room     string
}

func newBridgeBackend(a *ari.Client, roomID string) *bridgeBackend {
	return &bridgeBackend{a: a, id: a.NamedID("room", roomID), name: "patchbay-room-" + roomID, room: roomID}
}

func (b *bridgeBackend) Kind() string { return BackendBridge }

// ensure creates the room's bridge on the first join; made reports that this call created it.
func (b *bridgeBackend) ensure(ctx context.Context) (made bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.created {
		return false, nil
	}
	// Claimed before the request and from then on until Close, whatever the request's outcome: a bridge that a
	// timed-out request made after all is the sweep's once released.
	b.a.Claim(b.id)
	b.created = true
	if _, err := b.a.Bridges().Create(ctx, ari.BridgeRequest{ID: b.id, Type: "mixing", Name: b.name}); err != nil {
		return false, fmt.Errorf("create room bridge %s: %w", b.id, err)
	}
	return true, nil
}

func (b *bridgeBackend) Attach(ctx context.Context, _, channelID, _ string) (Attachment, error) {
	first, err := b.ensure(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.a.Bridge(b.id).AddChannel(ctx, ari.AddChannelOptions{}, channelID); err != nil {
		return nil, fmt.Errorf("add channel %s to room bridge %s: %w", channelID, b.id, err)
	}
	if first && b.onCreate != nil {
		b.onCreate(b.room, b.id)
	}
	return &bridgeAttachment{b: b, ch: channelID}, nil
}

func (b *bridgeBackend) Close(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.created {
		return nil
	}
	b.created = false
	defer b.a.Release(b.id)
	if err := ignoreGone(b.a.Bridge(b.id).Delete(ctx)); err != nil {
		b.a.SweepSoon()
		return fmt.Errorf("delete room bridge %s (the sweep retries): %w", b.id, err)
	}
	return nil
}

type bridgeAttachment struct {
	b    *bridgeBackend
	ch   string
	once sync.Once
}

func (t *bridgeAttachment) Detach(ctx context.Context) error {
	var err error
	t.once.Do(func() {
		err = ignoreGone(t.b.a.Bridge(t.b.id).RemoveChannel(ctx, t.ch))
	})
	return err
}

// confBackend mixes the room in Asterisk's ConfBridge named after the room. Each participant gets a two-party
// bridge holding its channel and the Stasis half of a Local channel whose other half runs ConfBridge; phones that
// Asterisk sends to ConfBridge(room) directly land in the same conference.
type confBackend struct {
	a    *ari.Client
	room string
}

func (c *confBackend) Kind() string { return BackendConfBridge }

func (c *confBackend) Attach(ctx context.Context, pid, channelID, format string) (Attachment, error) {
	t := &confAttachment{a: c.a, bridge: c.a.NamedID("cbp", pid), local: c.a.NamedID("cbl", pid)}
	c.a.Claim(t.bridge, t.local, t.local+"-2")
	sub := c.a.Subscribe(ari.Filter{Name: "confleg-" + pid, IDs: []string{t.local}})
	defer sub.Close()
	ok := false
	defer func() {
		if !ok {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = t.Detach(dctx)
			cancel()
		}
	}()
	if _, err := c.a.Bridges().Create(ctx, ari.BridgeRequest{ID: t.bridge, Type: "mixing", Name: "patchbay-confleg-" + pid}); err != nil {
		return nil, fmt.Errorf("create ConfBridge leg bridge %s: %w", t.bridge, err)
	}
	t.bridgeMade = true
	if format == "" {
		format = "ulaw"
	}
	if _, err := c.a.Channels().Create(ctx, ari.CreateRequest{
		Endpoint:       "Local/s@" + ConfBridgeContext,
		App:            c.a.Application(),
		AppArgs:        "leg,confbridge," + pid,
		ChannelID:      t.local,
		OtherChannelID: t.local + "-2",
		Formats:        format,
		Variables:      map[string]string{"PB_ROOM": c.room},
	}); err != nil {
		return nil, fmt.Errorf("create Local channel into ConfBridge %s: %w", c.room, err)
	}
	t.localMade = true
	if err := ari.WaitStasisStart(ctx, sub, t.local); err != nil {
		return nil, err
	}
	if err := c.a.Bridge(t.bridge).AddChannel(ctx, ari.AddChannelOptions{}, channelID, t.local); err != nil {
		return nil, fmt.Errorf("bridge channel %s with the ConfBridge leg: %w", channelID, err)
	}
	if err := c.a.Channel(t.local).Dial(ctx, "", 10*time.Second); err != nil {
		return nil, fmt.Errorf("start the ConfBridge leg of room %s (is context %s in extensions.conf?): %w", c.room, ConfBridgeContext, err)
	}
	// Dial returns at once; the leg may still fail (ConfBridge refused, context missing). Wait until it answers
	// so a failed leg is not left in the bridge beside the participant.
	if err := waitUp(ctx, sub, t.local); err != nil {
		return nil, fmt.Errorf("the ConfBridge leg of room %s did not come up (is context %s in extensions.conf?): %w", c.room, ConfBridgeContext, err)
	}
	ok = true
	return t, nil
}

func (c *confBackend) Close(context.Context) error { return nil } // ConfBridge ends with its last member

type confAttachment struct {
	a                     *ari.Client
	bridge, local         string
	bridgeMade, localMade bool
	once                  sync.Once
}

func (t *confAttachment) Detach(ctx context.Context) error {
	var errs []error
	t.once.Do(func() {
		defer t.a.Release(t.bridge, t.local, t.local+"-2")
		if t.localMade {
			if err := ignoreGone(t.a.Channel(t.local).Hangup(ctx, "normal")); err != nil {
				errs = append(errs, fmt.Errorf("hang up ConfBridge leg %s: %w", t.local, err))
			}
		}
		if t.bridgeMade {
			if err := ignoreGone(t.a.Bridge(t.bridge).Delete(ctx)); err != nil {
				errs = append(errs, fmt.Errorf("delete ConfBridge leg bridge %s: %w", t.bridge, err))
			}
		}
		if len(errs) > 0 {
			t.a.SweepSoon()
		}
	})
	return errors.Join(errs...)
}

// waitUp waits for the ConfBridge leg to answer (ChannelStateChange to Up, or a Dial ANSWER) or fail.
func waitUp(ctx context.Context, sub *ari.Subscription, id string) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-sub.Events():
			if !ok {
				return errors.New("subscription closed")
			}
			switch e := ev.(type) {
			case *ari.ChannelStateChange:
				if e.Channel.ID == id && e.Channel.State == "Up" {
					return nil
				}
			case *ari.Dial:
				if e.Peer.ID == id && e.Dialstatus == "ANSWER" {
					return nil
				}
				if e.Peer.ID == id && e.Dialstatus != "" && e.Dialstatus != "RINGING" && e.Dialstatus != "PROGRESS" {
					return fmt.Errorf("dial status %s", e.Dialstatus)
				}
			case *ari.ChannelDestroyed:
				if e.Channel.ID == id {
					return fmt.Errorf("hung up (cause %d %s)", e.Cause, e.CauseTxt)
				}
			}
		}
	}
}
