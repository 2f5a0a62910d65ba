// Command patchbay runs Patchbay and its admin tools. It only wires packages together: each subcommand reads the
// configuration, builds what it needs and runs it under a context cancelled by SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/patchbay/patchbay/internal/config"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run Patchbay: signalling, media relay and the ARI application", runServe},
		{"asterisk-config", "render the Asterisk configuration from Patchbay's config", runAsteriskConfig},
		{"turn-config", "render coturn's turnserver.conf (TURN for browsers) from Patchbay's config", runTURNConfig},
		{"certs", "manage the CA and server certificate (certs init)", runCerts},
		{"config", "write a starter config with fresh secrets (config init)", runConfig},
		{"token", "mint a browser token", runToken},
		{"route", "show what a call to a number would get: allowed or refused, class, country, trunks", runRoute},
		{"call", "place a synthetic call through Patchbay and report what was heard", runCall},
		{"bench", "load-test Patchbay with concurrent synthetic calls", runBench},
		{"doctor", "check the installation: config, certificates, ports, Asterisk, dialplan, NAT, Redis, cluster, TURN (--call)", runDoctor},
		{"cluster", "show the nodes of a cluster: load, heartbeat age, state (cluster status)", runCluster},
	}
}

func main() {
	os.Exit(mainWithArgs(os.Args[1:], os.Stderr))
}

func mainWithArgs(args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		// The first signal cancels ctx: serve lets calls finish. A second one cancels the hard-stop context
		// (hardStop), and serve hangs every call up at once.
		first, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		hard, stopHard := context.WithCancel(context.Background())
		defer stopHard()
		go func() {
			select {
			case <-first.Done():
			case <-hard.Done():
				return
			}
			second, stop2 := signal.NotifyContext(hard, os.Interrupt, syscall.SIGTERM)
			defer stop2()
			<-second.Done()
			stopHard()
		}()
		ctx := context.WithValue(first, hardStopKey{}, hard)
		if err := c.run(ctx, args[1:]); err != nil {
			if errors.Is(err, pflag.ErrHelp) {
				return 0
			}
			fmt.Fprintf(stderr, "patchbay %s: %v\n", c.name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "patchbay: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

type hardStopKey struct{}

// hardStop is done when a second signal arrived: stop at once.
func hardStop(ctx context.Context) <-chan struct{} {
	if h, ok := ctx.Value(hardStopKey{}).(context.Context); ok {
		return h.Done()
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: patchbay COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-16s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery command but config init takes --config FILE; PATCHBAY_* environment variables override the file.")
}

// configFlags adds --config and returns a loader for after parsing.
func configFlags(fs *pflag.FlagSet) func() (*config.Config, error) {
	file := fs.String("config", os.Getenv("PATCHBAY_CONFIG"), "YAML config file (env PATCHBAY_CONFIG)")
	return func() (*config.Config, error) {
		return config.Load(config.LoadOptions{File: *file, Flags: fs})
	}
}

func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
