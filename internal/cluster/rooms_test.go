package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// newTestCluster is a node on miniredis whose heartbeat the test runs by hand (beat), never in the background.
func newTestCluster(t *testing.T, o Options) (*Cluster, redis.UniversalClient) {
	t.Helper()
	mr := miniredis.RunT(t)
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rc.Close() })
	o.Client, o.Prefix, o.Heartbeat, o.TTL = rc, "t:", 200*time.Millisecond, 10*time.Second
	if o.Self.ID == "" {
		o.Self.ID = "a"
	}
	o.CPU = func() float64 { return 0.1 }
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c, rc
}

// A room that ends while a heartbeat is refreshing the directory (after the beat read the rooms, before its
// writes) must not be written back: other nodes would redirect joins to an ended room, and refuse its ID, until
// the entry expired.
func TestRoomEndedDuringBeatLeavesDirectory(t *testing.T) {
	ctx := context.Background()
	var c *Cluster
	ended := false
	c, rc := newTestCluster(t, Options{Rooms: func() []RoomInfo {
		list := []RoomInfo{{ID: "standup", Participants: 1}}
		if ended {
			// The room ends now: the registry has already handed the list to the beat.
			c.ReleaseRoom(ctx, "standup")
		}
		return list
	}})
	if err := c.ClaimRoom(ctx, "standup"); err != nil {
		t.Fatal(err)
	}
	if err := c.beat(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.RoomOwner(ctx, "standup"); err != nil || !ok {
		t.Fatalf("live room not in the directory: %v %v", ok, err)
	}
	ended = true
	if err := c.beat(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := rc.Exists(ctx, c.keys.Room("standup")).Result(); n != 0 {
		t.Errorf("an ended room's directory entry was written back by the beat that was refreshing it")
	}
	if ok, _ := rc.HExists(ctx, c.keys.NodeRooms("a"), "standup").Result(); ok {
		t.Errorf("an ended room is still in the node's index")
	}
	c.mu.Lock()
	owned := c.ownedRooms["standup"]
	c.mu.Unlock()
	if owned {
		t.Errorf("an ended room is still owned")
	}

	// The same ID made again is claimed and kept by the next beats.
	ended = false
	if err := c.ClaimRoom(ctx, "standup"); err != nil {
		t.Fatal(err)
	}
	if err := c.beat(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.RoomOwner(ctx, "standup"); err != nil || !ok {
		t.Fatalf("a room made again with the same ID is not in the directory: %v %v", ok, err)
	}
}
