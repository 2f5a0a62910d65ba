package call

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/internal/relay"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
)

type inboundKind int

const (
	kindBrowser     inboundKind = iota // a message from a browser session
	kindSessionGone                    // a browser's connection closed
	kindShutdown                       // Patchbay is stopping
	kindResumed                        // NETWORK-HOOK: the browser came back on a new session (in.session)
)

// inbound is something that happened to a call outside its own goroutine.
type inbound struct {
	kind    inboundKind
	session *signal.Session
	msg     signal.Message
	cause   string
}

// Call is one conversation. Its fields below `inbox` belong to its goroutine alone.
type Call struct {
	id    string
	m     *Manager
	log   *slog.Logger
	ctx   context.Context
	inbox chan inbound

	// The browser side once known: for outgoing calls from the start, for incoming calls when one answers.
	browser  *signal.Session
	clientID string
	peer     *media.Peer

	sock     *relay.Socket
	rl       *relay.Relay
	relayWG  sync.WaitGroup
	bridgeID string
	emID     string
	farID    string // the Asterisk channel of the far party
	farGone  bool
	// farFromDialplan: farID entered Stasis from the dialplan (an incoming call). Asterisk reports nothing about
	// such a channel once it leaves the application, not even ChannelDestroyed, so StasisEnd is its hang-up.
	farFromDialplan bool
	farCause        int // Q.850 cause of the far end's hang-up request, if one was seen
	answered        bool
	started         time.Time
}

func (m *Manager) newCall(parent context.Context, log *slog.Logger) *Call {
	id := ari.NewID()
	return &Call{
		id:       id,
		m:        m,
		log:      log.With("call", id),
		ctx:      parent,
		inbox:    make(chan inbound, 64),
		bridgeID: "pb-br-" + id,
		emID:     "pb-em-" + id,
		started:  time.Now(),
	}
}

// post hands an event to the call's goroutine without blocking the caller (a signalling read loop or the ARI
// dispatcher). A call that stopped reading has ended; its events are moot.
func (c *Call) post(in inbound) {
	select {
	case c.inbox <- in:
	default:
		c.log.Warn("call inbox full: event dropped", "kind", in.kind, "type", in.msg.Type)
	}
}

func (c *Call) send(s *signal.Session, msg signal.Message) {
	if s == nil {
		return
	}
	if err := s.Send(c.ctx, msg); err != nil {
		c.log.Debug("send to browser failed", "type", msg.Type, "err", err)
	}
}

// attachMedia connects c.peer to Asterisk for a two-party call: a mixing bridge of its own holding the browser's
// externalMedia channel, into which the far leg is added.
func (c *Call) attachMedia(ctx context.Context) error {
	a := c.m.o.ARI
	if _, err := a.Bridges().Create(ctx, ari.BridgeRequest{ID: c.bridgeID, Type: "mixing", Name: "patchbay-" + c.id}); err != nil {
		return err
	}
	if err := c.attachExternalMedia(ctx); err != nil {
		return err
	}
	return a.Bridge(c.bridgeID).AddChannel(ctx, ari.AddChannelOptions{}, c.emID)
}

// attachExternalMedia makes the browser's externalMedia channel, in the peer's G.711 law so nothing is transcoded,
// and the relay between it and the peer, without a bridge: a two-party call or a room's backend bridges it. The
// relay's goroutines belong to the call and stop in teardown.
func (c *Call) attachExternalMedia(ctx context.Context) error {
	a := c.m.o.ARI
	law := c.peer.Law()
	sock, err := c.m.o.Ports.Acquire()
	if err != nil {
		return err
	}
	c.sock = sock
	rl, err := relay.New(sock.Conn(), c.peer.LocalTrack(), relay.Options{PayloadType: law.PayloadType(), Logger: c.log})
	if err != nil {
		return err
	}
	c.rl = rl
	em, err := a.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{
		App:          a.Application(),
		ExternalHost: sock.ExternalHost(),
		Format:       law.Format(),
		ChannelID:    c.emID,
	})
	if err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(em.LocalAddrPort())
	if err != nil {
		return fmt.Errorf("externalMedia channel %s gave no usable UNICASTRTP address %q: %w", c.emID, em.LocalAddrPort(), err)
	}
	rl.SetAsterisk(ap)
	c.relayWG.Add(2)
	go func() {
		defer c.relayWG.Done()
		_ = rl.Run(c.ctx)
	}()
	go func() {
		defer c.relayWG.Done()
		track, err := c.peer.RemoteTrack(c.ctx)
		if err != nil {
			return
		}
		if err := rl.Attach(track); err != nil {
			c.log.Debug("attach browser track", "err", err)
		}
	}()
	return nil
}

// teardown releases everything the call made, in an order that keeps stale media out of the next call. It runs
// once, from the call's goroutine, with a context that outlives the call's own.
func (c *Call) teardown(reason string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
	defer cancel()
	a := c.m.o.ARI
	if c.farID != "" && !c.farGone {
		if err := a.Channel(c.farID).Hangup(ctx, reason); err != nil && !ari.IsNotFound(err) {
			c.log.Warn("hang up far channel", "channel", c.farID, "err", err)
		}
	}
	if c.rl != nil {
		_ = c.rl.Close()
	}
	if c.peer != nil {
		_ = c.peer.Close()
	}
	c.relayWG.Wait()
	if c.sock != nil {
		if err := a.Channel(c.emID).Hangup(ctx, "normal"); err != nil && !ari.IsNotFound(err) {
			c.log.Warn("hang up externalMedia channel", "channel", c.emID, "err", err)
		}
		if err := a.Bridge(c.bridgeID).Delete(ctx); err != nil && !ari.IsNotFound(err) {
			c.log.Warn("delete bridge", "bridge", c.bridgeID, "err", err)
		}
		c.sock.Release()
	}
	if c.rl != nil {
		st := c.rl.Stats()
		c.log.Info("call ended", "reason", reason, "duration", time.Since(c.started).Round(time.Millisecond),
			"to_asterisk_pkts", st.ToAsterisk.Packets, "to_browser_pkts", st.ToBrowser.Packets)
	} else {
		c.log.Info("call ended", "reason", reason)
	}
}
