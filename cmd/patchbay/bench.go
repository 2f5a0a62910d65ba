package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/tools/bench"
)

// runBench load-tests a Patchbay on this host (scripts/bench.sh starts one and runs this) and prints a table of
// setup times, echo round trips, loss, CPU and memory next to a plain-RTP baseline measured in the same run. With
// --native it benches Asterisk's own WebRTC the same way instead; --compare prints stored runs of both side by
// side.
func runBench(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	load := configFlags(fs)
	url := fs.String("url", "", "Patchbay signalling URL on this host, e.g. wss://localhost:8443/ws (default: from http.listen)")
	token := fs.String("token", os.Getenv("PATCHBAY_TOKEN"), "browser token for every call (default: mint one per call with auth.token_secret)")
	caFile := fs.String("ca", "", "CA certificate to trust (default: certs.dir/ca.crt)")
	to := fs.String("to", "600", "echo extension to call")
	codec := fs.String("codec", "pcmu", "what the callers offer: pcmu, or opus (Opus first, then PCMU, as browsers do)")
	pairs := fs.Bool("pairs", false, "browser ⇄ browser calls: caller bench-N dials the user bench-callee-N, whose own synthetic browser answers and sends back what it hears (the echo crosses both legs); --to is unused")
	n := fs.IntP("calls", "n", 50, "concurrent Patchbay calls")
	rate := fs.Float64("rate", 5, "calls started per second during the ramp (at 20/s Asterisk's own WebRTC setup falls behind on one core)")
	settle := fs.Duration("settle", 3*time.Second, "pause after the ramp before the steady window")
	steady := fs.Duration("steady", 60*time.Second, "steady window over which CPU, memory, RTT and loss are measured")
	baseCalls := fs.Int("baseline-calls", 0, "plain-RTP baseline calls beside the Patchbay calls (default N/10, 1..20; -1: none)")
	baseEndpoint := fs.String("baseline-endpoint", "", "what baseline calls originate (default Local/<to>@from-patchbay)")
	ariURL := fs.String("ari-url", "", "Asterisk ARI URL for the baseline (default: ari.url)")
	ariUser := fs.String("ari-user", "", "ARI user (default: ari.user, patchbay without a config)")
	ariPass := fs.String("ari-password", os.Getenv("PATCHBAY_BENCH_ARI_PASSWORD"), "ARI password (default: ari.password; env PATCHBAY_BENCH_ARI_PASSWORD)")
	ariApp := fs.String("baseline-app", "patchbay-bench", "Stasis app of the bench's own ARI connection for the baseline (not Patchbay's; a flag named ari-app would set Patchbay's ari.app)")
	pbPID := fs.Int("patchbay-pid", 0, "Patchbay's PID, for its CPU time and memory")
	astPID := fs.Int("asterisk-pid", 0, "Asterisk's PID, for its CPU time and memory")
	pbLog := fs.String("patchbay-log", "", "Patchbay's log file: its \"answered\" lines give offer→far answered times")
	pbRecords := fs.String("patchbay-records", "", "Patchbay's call-records file (calls.records.file): setup_answer_ms gives the server's offer→answer")
	pinServer := fs.String("pin-server", "", "CPUs to pin Patchbay and Asterisk to (taskset list, e.g. 0)")
	pinLoad := fs.String("pin-load", "", "CPUs to pin this load generator to (e.g. 1)")
	metricsURL := fs.String("metrics-url", "", "Patchbay's /metrics on this host, scraped during the run like Prometheus would (e.g. http://127.0.0.1:9464/metrics)")
	scrapeEvery := fs.Duration("scrape-interval", 15*time.Second, "how often --metrics-url is scraped")
	nativeMode := fs.Bool("native", false, "bench Asterisk-native WebRTC: callers register to Asterisk over SIP/WSS as bench-webrtc-N (asterisk.bench_webrtc_endpoints) and run DTLS-SRTP with it; Patchbay is not used")
	nativeWSS := fs.String("native-wss", "", "Asterisk's TLS HTTP listener for SIP over WSS, host:port (default 127.0.0.1:asterisk.https_port)")
	abRun := fs.String("ab-run", "", "ID shared by the two halves of a side-by-side run (two Patchbays on one Asterisk at once, scripts/bench.sh mode metrics-ab), which --compare pairs")
	label := fs.String("label", "", "name of this run's mode in --json and --compare (default patchbay, or native with --native), e.g. patchbay-pion")
	jsonOut := fs.String("json", "", "also write the result as JSON to this file (for --compare)")
	compareDir := fs.String("compare", "", "print the native and Patchbay runs stored as JSON in this directory side by side, then exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *compareDir != "" {
		rs, err := bench.ReadResults(*compareDir)
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return fmt.Errorf("--compare %s: no *.json results there (run patchbay bench --json first)", *compareDir)
		}
		if err := bench.Compare(os.Stdout, rs); err != nil {
			return err
		}
		if err := bench.CompareMetrics(os.Stdout, rs); err != nil {
			return err
		}
		return bench.CompareCodecs(os.Stdout, rs)
	}
	if *n < 1 || *n > 5000 {
		return fmt.Errorf("--calls %d: want 1..5000", *n)
	}
	if *steady > 30*time.Minute || *rate > 1000 {
		return errors.New("--steady is capped at 30m and --rate at 1000/s: the bench must stop by itself")
	}
	cfg, err := load()
	if err != nil && (*nativeMode || *token == "" || *url == "") {
		return fmt.Errorf("%w (or pass --url, --token and the --ari-* flags)", err)
	}
	if *url == "" && !*nativeMode {
		*url = localSignalURL(cfg)
	}

	total := time.Duration(float64(*n) / *rate * float64(time.Second)) + *settle + *steady
	mint := func(int) (string, error) { return *token, nil }
	mintCallee := mint
	callee := func(i int) string { return "bench-callee-" + strconv.Itoa(i) }
	if *token == "" {
		signer, err := auth.NewSigner([]byte(cfg.Auth.TokenSecret.Reveal()), cfg.Auth.TokenIssuer)
		if err != nil {
			return err
		}
		mint = func(i int) (string, error) {
			user := "bench-" + strconv.Itoa(i)
			c := auth.Claims{Name: user, Dial: []string{"ext", "user"}}
			c.Subject = user
			return signer.Mint(c, total+10*time.Minute)
		}
		mintCallee = func(i int) (string, error) {
			c := auth.Claims{Name: callee(i)}
			c.Subject = callee(i)
			return signer.Mint(c, total+10*time.Minute)
		}
	} else if *pairs {
		return errors.New("--pairs mints a token per caller and callee: leave --token out and give the config (auth.token_secret)")
	}
	tlsCfg, err := clientTLS(*caFile, cfg)
	if err != nil {
		return err
	}
	// The bench's own ARI client (for the plain-RTP baseline) never sweeps: its baseline channels are its own and
	// are not claimed the way a Patchbay call claims them.
	ac := ari.Config{URL: *ariURL, Username: *ariUser, Password: *ariPass, Application: *ariApp, SweepInterval: -1,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if ac.Username == "" && cfg == nil {
		ac.Username = config.Defaults().ARI.User
	}
	if cfg != nil {
		if ac.URL == "" {
			ac.URL = cfg.ARI.URL
		}
		if ac.Username == "" {
			ac.Username = cfg.ARI.User
		}
		if ac.Password == "" {
			ac.Password = cfg.ARI.Password.Reveal()
		}
		if ac.Application == cfg.ARI.App {
			return fmt.Errorf("--baseline-app %q is Patchbay's own app (ari.app): pick another name", ac.Application)
		}
	}

	if *pinServer != "" {
		cpus, err := bench.ParseCPUList(*pinServer)
		if err != nil {
			return err
		}
		for _, pid := range []int{*pbPID, *astPID} {
			if pid == 0 {
				return errors.New("--pin-server needs --patchbay-pid and --asterisk-pid")
			}
			if err := bench.Pin(pid, cpus); err != nil {
				return err
			}
		}
	}
	if *pinLoad != "" {
		cpus, err := bench.ParseCPUList(*pinLoad)
		if err != nil {
			return err
		}
		if err := bench.PinSelf(cpus); err != nil {
			return err
		}
	}

	var nat *bench.Native
	if *nativeMode {
		if cfg.Asterisk.BenchWebRTCEndpoints < *n {
			return fmt.Errorf("--native with %d calls needs asterisk.bench_webrtc_endpoints ≥ %d (it is %d): render the Asterisk config with more",
				*n, *n, cfg.Asterisk.BenchWebRTCEndpoints)
		}
		if *nativeWSS == "" {
			*nativeWSS = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Asterisk.HTTPSPort))
		}
		nat = &bench.Native{WSS: *nativeWSS, TLS: tlsCfg, Endpoint: cfg.BenchWebRTCEndpoint}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	res, err := bench.Run(ctx, bench.Options{
		Native: nat,
		Label:  *label,
		ABRun:  *abRun,
		URL:    *url, Token: mint, TLS: tlsCfg, To: *to,
		Codec: *codec, Pairs: *pairs, Callee: callee, CalleeToken: mintCallee,
		Calls: *n, Rate: *rate, Settle: *settle, Steady: *steady,
		ARI: ac, BaselineCalls: *baseCalls, BaselineEndpoint: *baseEndpoint,
		PatchbayPID: *pbPID, AsteriskPID: *astPID, PatchbayLog: *pbLog, PatchbayRecords: *pbRecords,
		MetricsURL: *metricsURL, ScrapeInterval: *scrapeEvery,
		Logger: log,
	})
	if err != nil {
		return err
	}
	if *jsonOut != "" {
		if err := bench.WriteJSON(*jsonOut, res); err != nil {
			return err
		}
	}
	return bench.FormatTable(os.Stdout, res)
}
