package call

import (
	"context"
	"errors"

	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Screen sharing in rooms. The share itself (which track is forwarded to whom) belongs to the room hook, the SFU's
// wiring in internal/server; call control decides who may ask for what, and tells the room who shares through the
// participant's "sharing" flag, which every browser of the room gets in a "room" "updated" message.

// Errors a RoomPeerShares returns (wrapped) for a share it refuses.
var (
	// ErrShareBusy: another participant of the room is sharing its screen.
	ErrShareBusy = errors.New("another participant is sharing their screen")
	// ErrNoScreenSection: the browser's join offer reserved no video section for a screen (or had no video).
	ErrNoScreenSection = errors.New("this browser's join offer has no screen section")
)

// RoomPeerShares is implemented by a RoomPeerHook that forwards screen shares. Both run on the call goroutine.
type RoomPeerShares interface {
	// PeerShare starts (on) or stops the browser's own screen share.
	PeerShare(ctx context.Context, p RoomPeer, on bool) error
	// StopShareOf stops participant target's screen share in p's room; a no-op when target does not share.
	StopShareOf(ctx context.Context, p RoomPeer, target string) error
}

// onShare handles a room browser's "share": its own share starts or stops. A refusal leaves the call as it was.
func (c *Call) onShare(msg signal.Message) {
	b := c.browser
	h, ok := c.m.o.RoomPeers.(RoomPeerShares)
	if c.kind != KindRoom || c.member == nil || c.room.peer.Peer == nil || !ok {
		b.send(c, signal.ErrorMessage("", wire.CodeBadMessage, "screen sharing needs a room joined with video"))
		return
	}
	on := msg.Action == signal.ActionStart
	ctx, cancel := c.setupCtx()
	defer cancel()
	err := h.PeerShare(ctx, c.room.peer, on)
	switch {
	case err == nil:
		c.log.Info("screen share", "action", msg.Action)
		c.setSharing(c.member.ID(), on)
	case errors.Is(err, ErrShareBusy):
		b.send(c, signal.ErrorMessage("", wire.CodeShareBusy, "another participant is sharing their screen; they (or a moderator) must stop first"))
	case errors.Is(err, ErrNoScreenSection):
		b.send(c, signal.ErrorMessage("", wire.CodeBadMessage, "this call cannot share a screen: its join offer had no second video section (join again with one)"))
	default:
		c.log.Warn("screen share failed", "action", msg.Action, "err", err)
		b.send(c, signal.ErrorMessage("", wire.CodeUnavailable, "the screen share could not be changed; try again"))
	}
}

// stopShareOf ends participant target's share: a moderator's "moderate" "stop_share" (cti.go checks the role). A
// target that is not in the room is rooms.ErrNoParticipant; one that does not share is left as it is.
func (c *Call) stopShareOf(ctx context.Context, target string) error {
	if h, ok := c.m.o.RoomPeers.(RoomPeerShares); ok {
		if err := h.StopShareOf(ctx, c.room.peer, target); err != nil {
			return err
		}
	}
	return c.m.o.Rooms.SetSharing(c.member.Room(), target, false)
}

// setSharing tells the room who shares; a participant that has just left needs no telling.
func (c *Call) setSharing(pid string, on bool) {
	if err := c.m.o.Rooms.SetSharing(c.member.Room(), pid, on); err != nil && !errors.Is(err, rooms.ErrNoParticipant) {
		c.log.Warn("tell the room who shares its screen", "participant", pid, "err", err)
	}
}
