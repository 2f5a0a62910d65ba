package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The rooms directory: a room lives on one node (its mix is a bridge in that node's Asterisk). Its key names the
// owner and lives for the TTL, refreshed by the owner's heartbeat; each node also keeps a hash of its rooms for
// listing. Room IDs are claimed with SET NX when a room is created, so two nodes can never hold the same ID.

// ErrRoomElsewhere is returned by ClaimRoom when another live node holds a room of that ID.
var ErrRoomElsewhere = errors.New("cluster: another node holds a room with this ID")

var claimRoomScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''`)

var releaseRoomScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`)

// ClaimRoom records this node as room's owner. It fails with ErrRoomElsewhere when another node holds it, and
// with ErrUnavailable when Redis cannot be reached (the room must then not be created: another node could create
// the same ID meanwhile).
func (c *Cluster) ClaimRoom(ctx context.Context, room string) error {
	owner, err := claimRoomScript.Run(ctx, c.c, []string{c.keys.Room(room)}, c.o.Self.ID, c.o.TTL.Milliseconds()).Text()
	if err != nil {
		return unavailable(ctx, "claim room "+room, err)
	}
	if owner != "" {
		return fmt.Errorf("room %s: %w (node %s)", room, ErrRoomElsewhere, owner)
	}
	c.mu.Lock()
	c.ownedRooms[room] = true
	delete(c.released, room) // the ID is in use again
	c.mu.Unlock()
	c.Kick() // the index (listing) follows at once
	return nil
}

// ReleaseRoom takes an ended room out of the directory. A failure is only logged: the entry expires within the TTL.
func (c *Cluster) ReleaseRoom(ctx context.Context, room string) {
	c.mu.Lock()
	delete(c.ownedRooms, room)
	c.released[room] = true
	c.mu.Unlock()
	if err := c.release(ctx, []string{room}); err != nil {
		c.log.Warn("take an ended room out of the directory; it expires by itself", "room", room, "ttl", c.o.TTL, "err", err)
	}
}

// release takes rooms of this node out of the directory and its index.
func (c *Cluster) release(ctx context.Context, rooms []string) error {
	_, err := c.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range rooms {
			releaseRoomScript.Eval(ctx, p, []string{c.keys.Room(r)}, c.o.Self.ID)
			p.HDel(ctx, c.keys.NodeRooms(c.o.Self.ID), r)
		}
		return nil
	})
	return err
}

// syncRooms refreshes the directory entry of every room this node holds and rewrites its index.
func (c *Cluster) syncRooms(ctx context.Context, rooms []RoomInfo) error {
	self, ttl := c.o.Self.ID, c.o.TTL.Milliseconds()
	claims := make([]*redis.Cmd, len(rooms))
	_, err := c.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range rooms {
			claims[i] = claimRoomScript.Eval(ctx, p, []string{c.keys.Room(r.ID)}, self, ttl)
		}
		return nil
	})
	if err != nil {
		return unavailable(ctx, "refresh the rooms directory", err)
	}
	held := make(map[string]bool, len(rooms))
	idx := c.keys.NodeRooms(self)
	_, err = c.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, idx)
		for i, r := range rooms {
			if other, _ := claims[i].Text(); other != "" {
				c.log.Error("room ID held by two nodes: this node's copy is not in the directory; end one of them", "room", r.ID, "other", other)
				continue
			}
			held[r.ID] = true
			b, _ := json.Marshal(r)
			p.HSet(ctx, idx, r.ID, b)
		}
		p.PExpire(ctx, idx, c.o.TTL)
		return nil
	})
	if err != nil {
		return unavailable(ctx, "refresh the rooms directory", err)
	}
	// Claims are added here and by ClaimRoom and dropped by ReleaseRoom only: a room claimed after this beat read
	// the list stays owned, so a clean leave releases it too. A room that ended after the beat read the list was
	// written back above, after (or before) its ReleaseRoom: it is taken out again, as the limits' leases are.
	var undo []string
	c.mu.Lock()
	for r := range held {
		if c.released[r] {
			undo = append(undo, r)
			continue
		}
		c.ownedRooms[r] = true
	}
	c.mu.Unlock()
	if len(undo) > 0 {
		if err := c.release(ctx, undo); err != nil {
			return unavailable(ctx, "take ended rooms out of the directory", err)
		}
	}
	return nil
}

// RoomOwner returns the live node holding room (this one included), or false when no live node does.
func (c *Cluster) RoomOwner(ctx context.Context, room string) (Node, bool, error) {
	owner, err := c.c.Get(ctx, c.keys.Room(room)).Result()
	if errors.Is(err, redis.Nil) {
		return Node{}, false, nil
	}
	if err != nil {
		return Node{}, false, unavailable(ctx, "look up room "+room, err)
	}
	if owner == c.o.Self.ID {
		return c.o.Self, true, nil
	}
	n, ok := c.node(ctx, owner)
	return n, ok, nil
}

// Rooms lists the rooms of every live node (from each node's index), sorted by ID.
func (c *Cluster) Rooms(ctx context.Context) ([]RoomInfo, error) {
	nodes, err := c.readNodes(ctx)
	if err != nil {
		return nil, err
	}
	var live []Node
	for _, n := range nodes {
		if n.Alive {
			live = append(live, n)
		}
	}
	cmds := make([]*redis.MapStringStringCmd, len(live))
	_, err = c.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, n := range live {
			cmds[i] = p.HGetAll(ctx, c.keys.NodeRooms(n.ID))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable(ctx, "list the rooms directory", err)
	}
	var out []RoomInfo
	for i, n := range live {
		for _, v := range cmds[i].Val() {
			var r RoomInfo
			if json.Unmarshal([]byte(v), &r) == nil && r.ID != "" {
				r.Node = n.ID
				out = append(out, r)
			}
		}
	}
	slices.SortFunc(out, func(a, b RoomInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
