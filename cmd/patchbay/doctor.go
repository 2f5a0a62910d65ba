package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/doctor"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// runDoctor checks the installation described by the config and prints one line per check; it exits 1 when any
// check failed. It changes nothing; --call places one synthetic call to the echo extension.
func runDoctor(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("doctor", pflag.ContinueOnError)
	load := configFlags(fs)
	asJSON := fs.Bool("json", false, "print the results as JSON")
	call := fs.Bool("call", false, "also place a synthetic call to the echo extension and report setup, RTT, loss and MOS")
	to := fs.String("to", "600", "echo extension for --call")
	sigURL := fs.String("url", "", "Patchbay signalling URL for --call (default: from http.listen on this host)")
	caFile := fs.String("ca", "", "CA certificate to trust for --call (default: certs.dir/ca.crt)")
	exts := fs.String("extensions", "", "dialplan file to read when the Asterisk CLI cannot be run here (default /etc/asterisk/extensions.conf)")
	astCLI := fs.String("asterisk-cli", "", "command that runs the Asterisk CLI, its command after -rx (default: asterisk, if found)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, cfgErr := load()
	o := doctor.Options{Config: cfg, ConfigErr: cfgErr, ExtensionsConf: *exts}
	if *astCLI != "" {
		o.AsteriskCLI = strings.Fields(*astCLI)
	}
	if *call && cfg != nil {
		o.Call = func(ctx context.Context) (doctor.CallReport, error) {
			return doctorCall(ctx, cfg, *sigURL, *caFile, *to)
		}
	}
	rs := doctor.Run(ctx, o)
	if err := doctor.Print(os.Stdout, rs, *asJSON); err != nil {
		return err
	}
	if doctor.Failed(rs) {
		n := 0
		for _, r := range rs {
			if r.Status == doctor.Fail {
				n++
			}
		}
		return fmt.Errorf("%d check(s) failed", n)
	}
	return nil
}

// doctorCall places one synthetic echo call with a token minted from auth.token_secret.
func doctorCall(ctx context.Context, cfg *config.Config, sigURL, caFile, to string) (doctor.CallReport, error) {
	if sigURL == "" {
		sigURL = localSignalURL(cfg)
	}
	signer, err := auth.NewSigner([]byte(cfg.Auth.TokenSecret.Reveal()), cfg.Auth.TokenIssuer)
	if err != nil {
		return doctor.CallReport{}, err
	}
	c := auth.Claims{Name: "patchbay-doctor", Dial: []string{"ext"}}
	c.Subject = "patchbay-doctor"
	token, err := signer.Mint(c, 2*time.Minute)
	if err != nil {
		return doctor.CallReport{}, err
	}
	tlsCfg, err := clientTLS(caFile, cfg)
	if err != nil {
		return doctor.CallReport{}, err
	}
	local := false
	if u, err := url.Parse(sigURL); err == nil {
		ip := net.ParseIP(u.Hostname())
		local = u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())
	}
	eng, err := synth.NewEngine(synth.EngineOptions{IncludeLoopback: local})
	if err != nil {
		return doctor.CallReport{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := signal.Dial(ctx, sigURL, token, signal.DialOptions{TLSConfig: tlsCfg})
	if err != nil {
		return doctor.CallReport{}, fmt.Errorf("connect to %s: %w", sigURL, err)
	}
	defer conn.Close()
	rep, err := eng.Call(ctx, conn, synth.CallOptions{To: to, Duration: 3 * time.Second})
	if err != nil {
		return doctor.CallReport{}, err
	}
	if rep.FirstEchoAfter == 0 {
		return doctor.CallReport{Setup: rep.AnswerAfter, Loss: rep.Loss}, errors.New("no echo came back")
	}
	return doctor.CallReport{Setup: rep.FirstEchoAfter, RTT: rep.RTT.P50, Loss: rep.Loss, Heard: true}, nil
}
