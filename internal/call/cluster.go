package call

import (
	"context"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Calls across the nodes of a cluster (docs/cluster.md). Each node is a Patchbay beside its own Asterisk; calls
// cross between nodes as SIP between the Asterisks (the inter-node trunk, endpoints cluster-<node>), never as
// Patchbay's own media.
//
//   - A phone calls a browser user whose tabs are on other nodes: the phone's channel leaves Stasis for the
//     dialplan (patchbay-cluster,user), which Dials the user on every such node at once, plus this node's own tabs
//     through a Local channel when it has any. Each node rings its own tabs (Stasis "peer"); the first tab to answer,
//     on any node, claims the call in Redis (Settle) and wins; the Dial cancels the others, whose tabs are told
//     answered_elsewhere.
//   - A phone (room number or DID) reaches a room another node holds: its channel is sent over the trunk to that
//     node (patchbay-cluster,room), which joins it to the room (Stasis "peer-room").
//   - A browser joins a room another node holds: it is told to reconnect there ("redirect" with the node's URL):
//     room events, mute, kick and video all live with the room's bridge on its own node.

// Cluster is what call control needs from the other nodes; internal/cluster implements it (through an adapter in
// internal/server). Nil: this node runs alone.
type Cluster interface {
	// ID is this node's ID.
	ID() string
	// UserPeers lists the trunk endpoints (cluster-<node>) of the other live nodes where user has live tabs.
	UserPeers(ctx context.Context, user string) ([]string, error)
	// RoomNode finds the live node holding room (this one included).
	RoomNode(ctx context.Context, room string) (ClusterNode, bool, error)
	// Settle claims the answer of cluster-wide call key for this node: false when another node's tab answered first.
	Settle(ctx context.Context, key string) (bool, error)
	// SettledElsewhere reports whether another node's tab answered key.
	SettledElsewhere(ctx context.Context, key string) bool
}

// ClusterNode is a node as call control needs it: its trunk endpoint here, and the URL its browsers connect to.
type ClusterNode struct {
	ID, Endpoint, URL string
}

// Dialplan locations of the cluster (asterisk-configs/extensions.conf.tmpl).
const (
	ClusterContext  = "patchbay-cluster"
	clusterUserExt  = "user"
	clusterRoomExt  = "room"
	clusterLocalCtx = "patchbay-cluster-local"
	// clusterRoomUser is the extension a room call is sent to on its node (from-cluster: "*room").
	clusterRoomUser = "*room"
)

// clusterLookupTimeout bounds a Redis lookup on the way of a ringing call: past it the call goes on as if this
// node were alone, rather than keeping the caller in silence.
const clusterLookupTimeout = 2 * time.Second

var clusterKeyRe = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,100}$`)

// ringAcrossNodes rings user for a phone on every node with live tabs. The lookup waits on Redis, so it runs on
// a goroutine of the manager's, never on the event loop.
func (m *Manager) ringAcrossNodes(ctx context.Context, ch ari.Channel, user string, log *slog.Logger) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		lctx, cancel := context.WithTimeout(ctx, clusterLookupTimeout)
		peers, err := m.o.Cluster.UserPeers(lctx, user)
		cancel()
		if err != nil {
			log.Warn("cluster: cannot look up the user's other nodes (Redis down?); ringing this node's tabs only", "user", user, "err", err)
		}
		if len(peers) == 0 {
			m.ringHere(ctx, ch, user, "", log)
			return
		}
		if m.unavailable() != "" {
			m.hangupAsync(ctx, ch.ID, "congestion", log)
			return
		}
		targets := make([]string, 0, len(peers)+1)
		for _, p := range peers {
			targets = append(targets, "PJSIP/"+user+"@"+p)
		}
		local := 0
		if dir := m.directory(); dir != nil {
			local = len(dir.SessionsOf(user))
		}
		if local > 0 {
			targets = append(targets, "Local/"+user+"@"+clusterLocalCtx+"/n")
		}
		key := m.o.Cluster.ID() + "." + strings.ToLower(ch.ID)
		log.Info("cluster: ringing the user on other nodes", "user", user, "peers", peers, "local_tabs", local, "call_key", key)
		m.toClusterDialplan(ctx, ch.ID, clusterUserExt, map[string]string{
			"PB_DIAL":   strings.Join(targets, "&"),
			"PB_RING":   strconv.Itoa(int(m.o.RingTimeout.Seconds())),
			"__PB_CALL": key,
		}, log)
	}()
}

// toClusterDialplan sets vars on a channel in Stasis and sends it to patchbay-cluster,ext. On failure the channel
// is hung up with congestion (the caller hears a failure, never silence).
func (m *Manager) toClusterDialplan(ctx context.Context, chID, ext string, vars map[string]string, log *slog.Logger) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.o.SetupTimeout)
	defer cancel()
	for k, v := range vars {
		if err := m.o.ARI.Channel(chID).SetVariable(sctx, k, v); err != nil {
			if !ari.IsNotFound(err) {
				log.Warn("cluster: set channel variable; hanging up", "var", k, "err", err)
				m.hangupAsync(ctx, chID, "congestion", log)
			}
			return
		}
	}
	m.continueAsync(ctx, chID, ari.ContinueOptions{Context: ClusterContext, Extension: ext, Priority: 1}, "congestion", log)
}

// peerStart takes a channel another node (or this node's own fork) handed over: "peer,<user>,<key>" rings this
// node's tabs of user for the cluster-wide call key; "peer-room,<room>" joins a room held here.
func (m *Manager) peerStart(ctx context.Context, ch ari.Channel, args []string, log *slog.Logger) {
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch args[0] {
	case "peer":
		user, key := arg(1), arg(2)
		if !userRe.MatchString(user) {
			log.Warn("cluster call for no valid browser user", "user", clip(user))
			m.hangupAsync(ctx, ch.ID, "unallocated", log)
			return
		}
		if !clusterKeyRe.MatchString(key) {
			key = "" // no key: ring as a lone node would
		}
		m.ringHere(ctx, ch, user, key, log)
	case "peer-room":
		m.phoneToRoomHere(ctx, ch, arg(1), log)
	}
}

// settleAnswer is called when a tab answers a call rung on several nodes: the first answer, cluster-wide, wins.
// A tab that lost is told answered_elsewhere with the others, and the call ends (its leg is cancelled by the Dial
// anyway). Redis down: the tab is connected, and Asterisk's Dial keeps whichever node picks up first.
func (c *Call) settleAnswer() bool {
	if c.clusterKey == "" || c.m.o.Cluster == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(c.ctx, clusterLookupTimeout)
	won, err := c.m.o.Cluster.Settle(ctx, c.clusterKey)
	cancel()
	if err != nil {
		c.log.Warn("cluster: cannot settle who answered first (Redis down?); connecting this tab", "err", err)
		return true
	}
	if !won {
		c.log.Info("a tab on another node answered first")
		c.endWith(wire.CauseAnsweredElsewhere)
	}
	return won
}

// clusterCause is the cause a ringing call ends with when its far leg went away: answered_elsewhere when another
// node's tab took the call, else the channel's own cause.
func (c *Call) clusterCause(cause string) string {
	if c.clusterKey == "" || c.m.o.Cluster == nil || c.browser != nil {
		return cause
	}
	ctx, cancel := context.WithTimeout(c.ctx, clusterLookupTimeout)
	defer cancel()
	if c.m.o.Cluster.SettledElsewhere(ctx, c.clusterKey) {
		return wire.CauseAnsweredElsewhere
	}
	return cause
}

// roomLocator finds the rooms a phone may be sent to: this node's, or, in a cluster, another live node's. It
// remembers the nodes it found and whether the cluster could be asked at all.
type roomLocator struct {
	m      *Manager
	ctx    context.Context
	nodes  map[string]ClusterNode
	failed error
}

func (c *Call) roomLocator(ctx context.Context) *roomLocator {
	return &roomLocator{m: c.m, ctx: ctx, nodes: map[string]ClusterNode{}}
}

func (l *roomLocator) local(room string) bool { return l.m.o.Rooms != nil && l.m.o.Rooms.Exists(room) }

// exists reports whether room is live here or on another node.
func (l *roomLocator) exists(room string) bool {
	if l.local(room) {
		return true
	}
	if l.m.o.Cluster == nil {
		return false
	}
	n, ok, err := l.m.o.Cluster.RoomNode(l.ctx, room)
	if err != nil {
		l.failed = err
		return false
	}
	if ok && n.ID != l.m.o.Cluster.ID() {
		l.nodes[room] = n
		return true
	}
	return false
}

// forwardToRoomNode sends the phone over the inter-node trunk to the node holding room; this node's part of the
// call ends there (the channel leaves Stasis, so the call does not hang the phone up).
func (c *Call) forwardToRoomNode(ch ari.Channel, room string, n ClusterNode) {
	c.log.Info("cluster: the room is on another node: sending the phone there", "room", room, "node", n.ID)
	c.m.toClusterDialplan(c.ctx, ch.ID, clusterRoomExt, map[string]string{
		"PB_DIAL":   "PJSIP/" + clusterRoomUser + "@" + n.Endpoint,
		"__PB_ROOM": room,
		"__PB_CALL": c.m.o.Cluster.ID() + "." + strings.ToLower(ch.ID),
	}, c.log)
	c.phone.gone = true // the dialplan has it now
	c.endWith(wire.CauseNormalClearing)
}

// roomElsewhere is the signalling URL of the node holding room when it is not this one ("" otherwise): a browser
// joining it is redirected there.
func (m *Manager) roomElsewhere(ctx context.Context, room string) (string, error) {
	if m.o.Cluster == nil {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, clusterLookupTimeout)
	defer cancel()
	n, ok, err := m.o.Cluster.RoomNode(ctx, room)
	if err != nil {
		return "", err
	}
	if !ok || n.ID == m.o.Cluster.ID() {
		return "", nil
	}
	return n.URL, nil
}

// redirectTicket is the grant of the fresh ticket a browser redirected to another node joins with there: the room
// and role its own ticket admitted it to, bound to the user who redeemed it (the doc tells it to reconnect with the
// same token), so that a ticket bound to one user does not come back unbound, for anyone to use.
func redirectTicket(ad rooms.Admission, user string) tickets.Grant {
	return tickets.Grant{Room: ad.Room, Role: ad.Role, ForUser: user}
}

// redirectJoin tells a browser the room it joins is held by another node: "redirect" with that node's URL, then
// this join ends (hangup normal_clearing). A join by ticket used the ticket up here: the browser gets a fresh one
// for the same room and role, bound to its user, to join with there.
func (c *Call) redirectJoin(ad rooms.Admission) error {
	msg := signal.Message{Type: signal.TypeRedirect, URL: ad.Redirect, Room: ad.Room}
	if ad.Via == "ticket" {
		if c.m.o.PSTN.Tickets == nil {
			return &ending{cause: wire.CauseTemporaryFailure, code: wire.CodeUnavailable, text: "this room is on another node and no ticket can be issued for it here"}
		}
		ctx, cancel := c.setupCtx()
		tk, err := c.m.o.PSTN.Tickets.Issue(ctx, redirectTicket(ad, c.browser.s.User()), time.Minute)
		cancel()
		if err != nil {
			c.log.Error("cluster: issue a ticket for the room's node", "err", err)
			return &ending{cause: wire.CauseTemporaryFailure, code: wire.CodeUnavailable, text: "the room is on another node and the ticket store is unavailable; try again shortly"}
		}
		msg.Ticket = tk
	}
	c.log.Info("cluster: the room is on another node: browser redirected", "room", ad.Room, "url", ad.Redirect)
	c.browser.send(c, msg)
	return &ending{cause: wire.CauseNormalClearing}
}
