package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/certs"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// runCall places one synthetic call and prints what it measured. It exits non-zero when the expected tone was
// not heard, so admins (and scripts) can check a deployment end to end.
func runCall(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("call", pflag.ContinueOnError)
	load := configFlags(fs)
	url := fs.String("url", "", "Patchbay signalling URL, e.g. wss://pbx.example.com:8443/ws (default: from http.listen)")
	token := fs.String("token", os.Getenv("PATCHBAY_TOKEN"), "browser token (default: mint one with auth.token_secret from the config)")
	user := fs.String("user", "patchbay-check", "user name when minting a token")
	to := fs.String("to", "600", "number to call")
	tone := fs.Float64("tone", 1000, "tone to play, Hz")
	expect := fs.Float64("expect", 0, "tone expected back, Hz (default: the played tone, as from an echo)")
	dur := fs.Duration("duration", 3*time.Second, "how long to talk once connected")
	dtmf := fs.String("dtmf", "", "DTMF digits to send after one second")
	caFile := fs.String("ca", "", "CA certificate to trust (default: certs.dir/ca.crt)")
	loopback := fs.Bool("loopback", false, "offer loopback candidates (Patchbay on this host)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil && *token == "" {
		return fmt.Errorf("%w (or pass --token and --url)", err)
	}
	if *url == "" {
		if cfg == nil {
			return errors.New("--url is required without a config")
		}
		*url = localSignalURL(cfg)
	}
	if *token == "" {
		signer, err := auth.NewSigner([]byte(cfg.Auth.TokenSecret.Reveal()), cfg.Auth.TokenIssuer)
		if err != nil {
			return err
		}
		c := auth.Claims{Name: *user, Dial: []string{"ext", "user", "room", "pstn"}}
		c.Subject = *user
		if *token, err = signer.Mint(c, 5*time.Minute); err != nil {
			return err
		}
	}
	tlsCfg, err := clientTLS(*caFile, cfg)
	if err != nil {
		return err
	}
	eng, err := synth.NewEngine(synth.EngineOptions{IncludeLoopback: *loopback})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *dur+30*time.Second)
	defer cancel()
	conn, err := signal.Dial(ctx, *url, *token, signal.DialOptions{TLSConfig: tlsCfg})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", *url, err)
	}
	defer conn.Close()
	rep, err := eng.Call(ctx, conn, synth.CallOptions{To: *to, ToneHz: *tone, ExpectHz: *expect, Duration: *dur, DTMF: *dtmf, DTMFAfter: time.Second})
	if rep != nil {
		fmt.Printf("call %s to %s (%s)\n", rep.CallID, *to, rep.Law)
		fmt.Printf("  answer SDP after    %v\n  media connected     %v\n  first packet after  %v\n  first echo after    %v\n",
			rep.AnswerAfter, rep.ConnectedAfter, rep.FirstPacketAfter, rep.FirstEchoAfter)
		fmt.Printf("  packets sent %d, received %d, lost %d (%.2f%%)\n", rep.Sent, rep.Received, rep.Lost, 100*rep.Loss)
		if rep.RTT.Count > 0 {
			fmt.Printf("  echo RTT p50 %v p99 %v (%d packets)\n", rep.RTT.P50, rep.RTT.P99, rep.RTT.Count)
		}
		fmt.Printf("  heard %.0f Hz in %d of %d voiced 100 ms windows\n", rep.HeardHz, rep.Heard.Matching, rep.Heard.Voiced)
		if rep.Cause != "" {
			fmt.Printf("  ended by %s: %s (%d)\n", rep.HungUpBy, rep.Cause, rep.Code)
		}
	}
	if err != nil {
		return err
	}
	if !rep.Heard.Detected(5) {
		return fmt.Errorf("expected tone %.0f Hz not heard", rep.HeardHz)
	}
	return nil
}

// localSignalURL is the signalling URL of the Patchbay that cfg describes, on this host.
// It is wss:// unless http.tls is off, at the address http.listen names, or localhost (which the generated
// certificate covers) when that is every address.
func localSignalURL(cfg *config.Config) string {
	scheme := "wss"
	if !cfg.HTTP.TLS {
		scheme = "ws"
	}
	host, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	if ip := net.ParseIP(host); err != nil || host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/ws"
}

// clientTLS trusts caFile, or the CA in cfg's certs.dir, or the system roots when neither is given.
func clientTLS(caFile string, cfg *config.Config) (*tls.Config, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" && cfg != nil {
		caFile = certs.PathsIn(cfg.Certs.Dir).CACert
	}
	if caFile != "" {
		pool, err := certs.CertPool(caFile)
		if err != nil {
			return nil, err
		}
		tlsCfg.RootCAs = pool
	}
	return tlsCfg, nil
}
