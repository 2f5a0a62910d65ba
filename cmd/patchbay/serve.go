package main

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/spf13/pflag"

	"github.com/patchbay/patchbay/internal/server"
)

func runServe(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	load := configFlags(fs)
	fs.String("http-listen", "", "listen address, overrides http.listen")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, os.Stderr)
	if os.Getenv("GOMEMLIMIT") == "" && cfg.Media.MemoryLimitMiB > 0 {
		debug.SetMemoryLimit(int64(cfg.Media.MemoryLimitMiB) << 20)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.Media.GCPercent)
	}
	srv, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	go func() {
		select {
		case <-hardStop(ctx):
			srv.Hurry()
		case <-srv.Done():
		}
	}()
	return srv.Run(ctx)
}
