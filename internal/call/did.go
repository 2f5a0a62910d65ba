package call

import (
	"context"
	"strings"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/dialplan"
)

// Where a channel the dialplan hands to Patchbay goes. The Stasis arguments say why it came:
//
//	inbound,<user or number>   a phone dialled a browser user (internal context)      → phone_in.go
//	room,<number>              a phone dialled a room number (_8XXX)                  → room.go
//	outbound,<number>          a softphone dialled an outside number                  → phone_pstn.go
//	did,<number>               the trunk delivered a DID: a user or an extension per
//	                           dialplan.dids, else the room the number store maps it to
//	leg,…                      a channel Patchbay made itself: its call already owns it
//	peer,<user>,<key>          another node (or this node's own fork) rings this node's tabs of user  → cluster.go
//	peer-room,<room>           another node sends a phone to a room held here                        → cluster.go

// stasisStart dispatches a channel that entered the application. It runs on the manager's event loop: nothing in
// it waits on ARI.
func (m *Manager) stasisStart(ctx context.Context, e *ari.StasisStart) {
	if len(e.Args) == 0 || e.Args[0] == "leg" {
		return
	}
	arg := ""
	if len(e.Args) > 1 {
		arg = e.Args[1]
	}
	ch := e.Channel
	log := m.log.With("channel", ch.ID, "caller", ch.Caller.Number, "via", e.Args[0], "number", arg)
	switch e.Args[0] {
	case "inbound":
		d, err := m.o.Router.Route(arg)
		user := ""
		if err == nil {
			user, err = m.userFor(d)
		}
		if err != nil {
			log.Warn("incoming call for no browser user", "err", err)
			m.hangupAsync(ctx, ch.ID, "unallocated", log)
			return
		}
		m.ringUser(ctx, ch, user, log)
	case "room":
		m.phoneToRoom(ctx, ch, arg, log)
	case "outbound":
		m.phoneDialsOut(ctx, ch, arg)
	case "did":
		m.did(ctx, ch, arg)
	case "peer", "peer-room":
		m.peerStart(ctx, ch, e.Args, log)
	default:
		log.Warn("channel entered Stasis for a purpose this version does not handle; hanging up", "args", strings.Join(e.Args, ","))
		m.hangupAsync(ctx, ch.ID, "unallocated", log)
	}
}

// did routes a DID from the trunk: dialplan.dids sends it to a browser user (rung like any incoming call) or to an
// extension (the channel continues in the internal context, never in from-patchbay, so an inbound call cannot be
// turned around to the trunk); other DIDs go to the room the number store maps them to.
func (m *Manager) did(ctx context.Context, ch ari.Channel, did string) {
	l := m.log.With("channel", ch.ID, "caller", ch.Caller.Number, "did", did)
	num, err := dialplan.NormalizeNumber(did)
	target, ok := m.o.PSTN.DIDs[num]
	if err != nil || !ok {
		m.phoneToRoom(ctx, ch, did, l)
		return
	}
	l = l.With("target", target)
	kind, name, _ := strings.Cut(target, ":")
	switch kind {
	case "user":
		l.Info("DID rings a browser user")
		m.ringUser(ctx, ch, name, l)
	case "ext":
		d, err := m.o.Router.Route(name)
		if err != nil || d.Kind != dialplan.KindExtension {
			l.Error("DID maps to something that is not an extension; fix dialplan.dids", "err", err)
			m.hangupAsync(ctx, ch.ID, "unallocated", l)
			return
		}
		l.Info("DID continues to an extension")
		m.continueAsync(ctx, ch.ID, ari.ContinueOptions{Context: "internal", Extension: d.Number, Priority: 1}, "failure", l)
	default:
		l.Error("unknown DID target; fix dialplan.dids")
		m.hangupAsync(ctx, ch.ID, "unallocated", l)
	}
}
