package ari

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DefaultAppCheckInterval is how often, by default, the client proves that its application still receives
// events (see Config.AppCheckInterval).
const DefaultAppCheckInterval = 5 * time.Second

// canaryPrefix starts the name of the user events the client sends itself. They are never published.
const canaryPrefix = "pb-canary-"

// errDeaf ends an events socket that is open and answers pings but no longer carries the application's events.
var errDeaf = errors.New("ari: the events socket carries no events for the application (Asterisk deactivated it, " +
	"which it does when a stale socket of the same application closes after a newer one registered); reconnecting re-registers it")

// canaries matches the user events the client sends itself to the checks waiting for them.
type canaries struct {
	mu      sync.Mutex
	waiting map[string]chan struct{}
}

func (cs *canaries) add(name string) chan struct{} {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.waiting == nil {
		cs.waiting = make(map[string]chan struct{})
	}
	ch := make(chan struct{})
	cs.waiting[name] = ch
	return ch
}

func (cs *canaries) remove(name string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.waiting, name)
}

// arrived reports whether name is one of the client's canaries (so it is not published) and wakes its check.
func (cs *canaries) arrived(name string) bool {
	if !strings.HasPrefix(name, canaryPrefix) {
		return false
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if ch, ok := cs.waiting[name]; ok {
		close(ch)
		delete(cs.waiting, name)
	}
	return true
}

// appCheckLoop proves, right after a connect and then every AppCheckInterval, that Asterisk still delivers
// the application's events on this socket: it asks Asterisk for a user event addressed to the application
// and waits for it. A socket that stays open and answers pings can still be deaf: Asterisk deactivates an
// application when any socket that registered it closes, even after a newer socket took it over (a reconnect
// while Asterisk was frozen leaves such stale sockets behind). Then every channel sent to Stasis fails and no
// call can start. A missed canary calls deaf, which drops the socket so that reconnecting registers again.
func (c *Client) appCheckLoop(ctx context.Context, deaf func(error)) {
	every := c.cfg.AppCheckInterval
	if every < 0 {
		return
	}
	t := time.NewTimer(time.Second) // let a freshly replaced registration settle first
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.checkApp(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			deaf(err) // Run logs it as the reason the socket was lost
			return
		}
		t.Reset(every)
	}
}

// checkApp sends one canary and waits up to DeadAfter for it. It returns nil when the canary arrived or when
// Asterisk could not be asked (a dead or frozen Asterisk is the socket's keepalive's business, not this).
func (c *Client) checkApp(ctx context.Context) error {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	name := canaryPrefix + hex.EncodeToString(nonce[:])
	arrived := c.canary.add(name)
	defer c.canary.remove(name)

	rctx, cancel := context.WithTimeout(ctx, c.cfg.DeadAfter)
	defer cancel()
	q := url.Values{"application": {c.cfg.Application}}
	err := c.do(rctx, "POST", "/events/user/"+url.PathEscape(name), q, nil, nil)
	if IsNotFound(err) {
		return fmt.Errorf("%w: Asterisk does not know application %q", errDeaf, c.cfg.Application)
	}
	if err != nil {
		c.log.Debug("ari app check: could not send the canary", "err", err)
		return nil
	}
	wait := time.NewTimer(c.cfg.DeadAfter)
	defer wait.Stop()
	select {
	case <-arrived:
		return nil
	case <-ctx.Done():
		return nil
	case <-wait.C:
		return fmt.Errorf("%w: user event %s not delivered within %v", errDeaf, name, c.cfg.DeadAfter)
	}
}
