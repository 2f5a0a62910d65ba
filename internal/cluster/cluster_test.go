package cluster_test

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/patchbay/patchbay/internal/cluster/clustertest"
)

// The shared state's logic against miniredis; test/integration runs the same suite against Redis, Sentinel and a
// Redis Cluster.
func TestSuiteMiniredis(t *testing.T) {
	mr := miniredis.RunT(t)
	clustertest.Run(t, func(t *testing.T) redis.UniversalClient {
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { c.Close() })
		return c
	})
}
