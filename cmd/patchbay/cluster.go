package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/patchbay/patchbay/internal/cluster"
)

// runCluster is `patchbay cluster status`: the nodes of the cluster as the directory in Redis shows them.
func runCluster(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "status" {
		return errors.New("usage: patchbay cluster status [--json] [--config FILE]")
	}
	fs := pflag.NewFlagSet("cluster status", pflag.ContinueOnError)
	load := configFlags(fs)
	asJSON := fs.Bool("json", false, "print the nodes as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if !cfg.Redis.Enabled() {
		return errors.New("no Redis configured: a cluster's directory lives in Redis (redis.addr, redis.addrs or redis.master_name)")
	}
	c := cluster.NewRedisClient(cfg.Redis)
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := cluster.ReadStatus(rctx, c, cfg.Redis.Prefix, cfg.Redis.Where())
	if err != nil {
		return fmt.Errorf("read the cluster directory: %w", err)
	}
	return st.Print(os.Stdout, *asJSON)
}
