//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/dialplan/storetest"
	"github.com/patchbay/patchbay/internal/cluster"
	"github.com/patchbay/patchbay/internal/cluster/clustertest"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/limits"
	"github.com/patchbay/patchbay/internal/limits/limitstest"
	"github.com/patchbay/patchbay/test/testenv"
)

// TestClusterStateOnRedisCluster runs the shared state's suites (presence, rooms directory, answer settling, API
// call state, forwarding), the shared limits' suite and the number store's suite against a Redis Cluster of three
// masters, through the same client Patchbay builds for redis.addrs. A key that left its hash tag would fail here
// with CROSSSLOT, since the keys of one user, room or caller spread over three masters otherwise.
func TestClusterStateOnRedisCluster(t *testing.T) {
	rc := testenv.StartRedisCluster(t)
	newClient := func(t *testing.T) redis.UniversalClient {
		c := cluster.NewRedisClient(config.Redis{Addrs: rc.Addrs})
		t.Cleanup(func() { c.Close() })
		return c
	}
	t.Run("presence and directory", func(t *testing.T) { clustertest.Run(t, newClient) })
	t.Run("limits", func(t *testing.T) {
		limitstest.Run(t, func(t *testing.T, prefix string, ttl time.Duration) *limits.Shared {
			return limits.NewShared(newClient(t), "rc:"+prefix, ttl, nil)
		})
	})
	t.Run("numbers", func(t *testing.T) {
		client := newClient(t)
		storetest.Run(t, func(t *testing.T) storetest.Backend {
			prefix := "rc:" + strings.ReplaceAll(t.Name(), "/", ":") + ":"
			return storetest.Backend{Store: dialplan.NewRedisStore(client, prefix), Advance: time.Sleep, Now: time.Now}
		})
	})
}
