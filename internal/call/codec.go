package call

import (
	"context"
	"fmt"
	"strings"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/relay"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/wire"
)

// Codecs. Each call decides its browser's codec before answering, from who is at the far end:
//
//   - another browser (a user dialling a user, a room) carries wideband: Opus when the browser offers it, over a
//     media WebSocket into Asterisk (relay.WS), untouched through a two-party bridge, mixed at 48 kHz in a room;
//   - a phone, a trunk or the dialplan is narrowband: the offer's G.711 law, untouched over RTP (relay.Relay), as
//     it always was; an offer with Opus alone is accepted, its far leg is made in G.711 and Asterisk transcodes
//     in the bridge, which the call record says (wire.QualityTranscoded).

// mediaRelay is what a call needs of its browser's relay, over RTP (G.711) or a media WebSocket (Opus).
type mediaRelay interface {
	Start() error
	Close() error
	Stats() relay.Stats
	FirstPacket() <-chan struct{}
}

// wideband reports whether a destination carries wideband audio end to end: another browser user.
func wideband(d dialplan.Decision) bool { return d.Kind == dialplan.KindUser }

// farFormats is what a narrowband far leg (phone, trunk, dialplan) is made in: the browser's own law, so Asterisk
// passes it untouched; for an Opus browser, G.711, which the far end surely carries, and Asterisk transcodes.
func farFormats(c media.Codec) string {
	if c.Wideband() {
		return "ulaw,alaw"
	}
	return c.Format()
}

// noteTranscoded flags the call record when the browser's codec is not what a narrowband far end carries.
func (c *Call) noteTranscoded() {
	if b := c.browser; b != nil && b.peer != nil && b.peer.Codec().Wideband() {
		c.obs.rec.Flag(wire.QualityTranscoded)
		c.log.Info("the browser offered no G.711: Asterisk transcodes Opus for the narrowband far end")
	}
}

// UserContext is the dialplan context (asterisk-configs/extensions.conf.tmpl) whose extension "s" hands a Local
// channel back to Patchbay as an incoming call for the user named in PB_USER.
const UserContext = "patchbay-user"

// userEndpoint is the Local channel a browser's call to another browser user rings through (with userVars): the
// dialplan sends it to Stasis(inbound) like a phone's call (phone_in.go), so the callee's tabs are rung, the first
// answer wins, and its media reaches the caller through Asterisk. Made in the caller's codec, it carries Opus
// untouched both ways.
func (m *Manager) userEndpoint(dialplan.Decision) string { return "Local/s@" + UserContext }

// userVars names the user the Local channel of userEndpoint rings: the router's validated name or number.
func userVars(d dialplan.Decision, vars map[string]string) map[string]string {
	out := map[string]string{"PB_USER": d.Number}
	for k, v := range vars {
		out[k] = v
	}
	return out
}

// callerCodec is the codec a channel that Asterisk hands Patchbay carries: Opus for a browser's call through a
// Local channel (userEndpoint), else the phone's G.711 law.
func callerCodec(native string) media.Codec {
	switch {
	case strings.Contains(native, "opus"):
		return media.Opus
	case strings.Contains(native, "alaw"):
		return media.PCMA
	}
	return media.PCMU
}

// attachWS carries an Opus browser's audio into Asterisk: an externalMedia channel over chan_websocket (Asterisk
// drops Opus arriving over RTP) and the relay on its media WebSocket. The channel enters Stasis once the socket is
// open; the relay is the call's from then on, so close closes the socket (and Asterisk hangs the channel up)
// whatever fails next.
func (b *browserLeg) attachWS(ctx context.Context, c *Call) error {
	b.emID = c.a.ResourceID("em")
	c.claim(b.emID)
	b.emMade = true
	wait := c.a.Subscribe(ari.Filter{Name: "em-" + b.emID, IDs: []string{b.emID}, QueueSize: 16})
	defer wait.Close()
	em, err := c.a.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{
		App:            c.a.Application(),
		Format:         b.peer.Codec().Format(),
		Transport:      "websocket",
		Encapsulation:  "none",
		ConnectionType: "server",
		ChannelID:      b.emID,
	})
	if err != nil {
		return fmt.Errorf("create the browser's externalMedia channel (websocket): %w", err)
	}
	if em.ConnectionID == "" {
		return fmt.Errorf("externalMedia channel %s gave no MEDIA_WEBSOCKET_CONNECTION_ID (chan_websocket loaded?)", b.emID)
	}
	ws, err := relay.DialWS(ctx, b.peer, relay.WSOptions{URL: c.a.MediaURL(em.ConnectionID), Logger: c.log, Heard: c.m.o.Ports.Heard()})
	if err != nil {
		return fmt.Errorf("open the browser's media WebSocket: %w", err)
	}
	b.rl = ws
	if err := ari.WaitStasisStart(ctx, wait, b.emID); err != nil {
		return fmt.Errorf("externalMedia channel %s (websocket): %w", b.emID, err)
	}
	if err := ws.Start(); err != nil {
		return fmt.Errorf("start the relay: %w", err)
	}
	return nil
}
