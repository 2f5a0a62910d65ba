// Package bench load-tests a running Patchbay: N concurrent synthetic WebRTC calls (tools/synth) to an echo
// extension, ramped at a fixed rate and then held for a steady window, beside a few baseline calls that send plain
// RTP straight into an Asterisk externalMedia channel bridged with the same extension. It measures setup times,
// echo round trips, loss, and the CPU time and memory of Patchbay, Asterisk and itself over the steady window,
// and reports them next to the baseline. `patchbay bench` wires it; scripts/bench.sh starts what it measures.
package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// Options shape one benchmark run. Zero values pick the defaults noted.
type Options struct {
	// URL is Patchbay's signalling WebSocket (wss://localhost:PORT/ws); it must be a loopback address.
	URL string
	// Native, when set, benches Asterisk's own WebRTC instead of Patchbay: the same callers register to Asterisk
	// over SIP/WSS and run ICE and DTLS-SRTP with it (native.go). URL and Token are then unused.
	Native *Native
	// Label overrides the mode name in the result ("patchbay" or "native"), e.g. "patchbay-pion" for a Patchbay
	// whose media.lean_audio is off.
	Label string
	// ABRun is the ID of a side-by-side run this is half of (two Patchbays on one Asterisk at the same time, each
	// benched by its own load generator); Compare leaves such runs out and CompareMetrics pairs them.
	ABRun string
	// Token returns the browser token for call i.
	Token func(i int) (string, error)
	TLS   *tls.Config
	To    string // number called; default "600" (Echo)

	// Codec is what the callers offer: "pcmu" (default) or "opus" (Opus first, then PCMU, as browsers offer).
	Codec string
	// Pairs makes each call browser ⇄ browser: call i dials the user Callee(i), whose own synthetic browser
	// (signed in with CalleeToken(i)) answers and sends back every frame it hears, so the echo crosses both legs
	// and Asterisk twice. To is then unused.
	Pairs       bool
	Callee      func(i int) string
	CalleeToken func(i int) (string, error)

	Calls  int           // concurrent Patchbay calls (N); required
	Rate   float64       // calls started per second during the ramp; default 20
	Settle time.Duration // pause between the end of the ramp and the steady window; default 3 s
	Steady time.Duration // steady window over which CPU, memory, RTT and loss are measured; default 60 s

	// ARI reaches Asterisk for the baseline calls; its Application must differ from Patchbay's.
	ARI ari.Config
	// BaselineCalls plain-RTP calls run beside the Patchbay calls; default N/10, at least 1, at most 20; negative: none.
	BaselineCalls int
	// BaselineEndpoint is what the baseline calls originate; default Local/<To>@from-patchbay.
	BaselineEndpoint string

	// PIDs whose CPU time and RSS are measured; 0 skips one. The load generator (this process) is always measured.
	PatchbayPID, AsteriskPID int
	// PatchbayLog, when set, is Patchbay's log file: its `answered after=` lines give offer → far answered.
	PatchbayLog string
	// PatchbayRecords, when set, is Patchbay's call-records file: setup_answer_ms gives the server's offer → answer.
	PatchbayRecords string

	// MetricsURL, when set, is Patchbay's /metrics (a loopback URL), scraped every ScrapeInterval (default 15 s,
	// Prometheus's usual) for the whole run, so the cost of metrics measured includes being scraped.
	MetricsURL     string
	ScrapeInterval time.Duration

	Logger   *slog.Logger // progress; default: discard
	CallLogs *slog.Logger // the synthetic calls' own logs; default: warnings to stderr
}

func (o *Options) defaults() error {
	if o.Calls < 1 {
		return errors.New("bench: Calls must be at least 1")
	}
	if o.To == "" {
		o.To = "600"
	}
	if o.Rate <= 0 {
		o.Rate = 20
	}
	if o.Settle <= 0 {
		o.Settle = 3 * time.Second
	}
	if o.Steady <= 0 {
		o.Steady = 60 * time.Second
	}
	switch {
	case o.BaselineCalls == 0:
		o.BaselineCalls = min(max(o.Calls/10, 1), 20)
	case o.BaselineCalls < 0:
		o.BaselineCalls = 0 // no baseline
	}
	if o.BaselineEndpoint == "" {
		o.BaselineEndpoint = "Local/" + o.To + "@from-patchbay"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.CallLogs == nil {
		o.CallLogs = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	switch o.Codec {
	case "", "pcmu":
		o.Codec = "pcmu"
	case "opus":
	default:
		return fmt.Errorf("bench: codec %q: use pcmu or opus", o.Codec)
	}
	if o.Pairs && (o.Native != nil || o.Callee == nil || o.CalleeToken == nil) {
		return errors.New("bench: pairs need Callee and CalleeToken, and no native mode")
	}
	if o.Native != nil {
		if err := o.Native.validate(); err != nil {
			return err
		}
	} else {
		if o.Token == nil {
			return errors.New("bench: Token is required")
		}
		if err := requireLoopback("Patchbay URL", o.URL); err != nil {
			return err
		}
	}
	if o.ARI.URL != "" {
		if err := requireLoopback("ARI URL", o.ARI.URL); err != nil {
			return err
		}
	}
	if o.MetricsURL != "" {
		if err := requireLoopback("metrics URL", o.MetricsURL); err != nil {
			return err
		}
		if o.ScrapeInterval <= 0 {
			o.ScrapeInterval = 15 * time.Second
		}
	}
	return nil
}

// requireLoopback refuses targets off this host: the bench is a load generator and must never aim at others.
func requireLoopback(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("bench: %s %q is not a URL with a host", what, raw)
	}
	ips, err := net.LookupIP(u.Hostname())
	if err != nil {
		return fmt.Errorf("bench: resolve %s host %q: %w", what, u.Hostname(), err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("bench: %s %q resolves to %s: only loopback targets are allowed", what, raw, ip)
		}
	}
	return nil
}

// callOutcome is one Patchbay call's report and how it ended.
type callOutcome struct {
	rep *synth.Report
	err error // nil when it lasted until the bench ended it
}

// Run runs one benchmark and returns what it measured. It stops by itself: the ramp, the settle pause and the
// steady window bound it in time, Calls and BaselineCalls in count.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	log := o.Logger
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		return nil, fmt.Errorf("bench: synthetic caller: %w", err)
	}

	var wg sync.WaitGroup // every goroutine Run starts; waited for before it returns
	defer wg.Wait()
	var plain *plainCaller
	var ariClient *ari.Client
	if o.ARI.URL != "" {
		a, err := ari.New(o.ARI)
		if err != nil {
			return nil, fmt.Errorf("bench: baseline ARI client: %w", err)
		}
		ariCtx, stopARI := context.WithCancel(context.WithoutCancel(ctx))
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.Run(ariCtx)
		}()
		defer stopARI() // runs before wg.Wait: the deferred calls unwind in reverse
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = a.WaitConnected(wctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("bench: connect to ARI at %s as app %s (baseline, channel counts): %w", o.ARI.URL, o.ARI.Application, err)
		}
		ariClient = a
		if o.BaselineCalls > 0 {
			plain = &plainCaller{ari: a, endpoint: o.BaselineEndpoint}
		}
	} else if o.BaselineCalls > 0 {
		return nil, errors.New("bench: baseline calls need the ARI URL")
	}

	procs := map[string]int{"patchbay": o.PatchbayPID, "asterisk": o.AsteriskPID, "load": os.Getpid()}
	idle, err := sampleAll(procs)
	if err != nil {
		return nil, err
	}
	var logOff, recOff int64
	if o.PatchbayLog != "" {
		if logOff, err = LogOffset(o.PatchbayLog); err != nil {
			return nil, err
		}
	}
	if o.PatchbayRecords != "" {
		if recOff, err = LogOffset(o.PatchbayRecords); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}

	ramp := time.Duration(float64(o.Calls) / o.Rate * float64(time.Second))
	t0 := time.Now()
	steadyStart := t0.Add(ramp + o.Settle)
	steadyEnd := steadyStart.Add(o.Steady)
	callsCtx, stopCalls := context.WithCancel(ctx)
	defer stopCalls()
	var scrapes, scrapeErrs atomic.Int64
	if o.MetricsURL != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scrape(callsCtx, o.MetricsURL, o.ScrapeInterval, &scrapes, &scrapeErrs)
		}()
	}

	outcomes := make([]callOutcome, o.Calls)
	plains := make([]plainResult, o.BaselineCalls)
	var failed atomic.Int64
	var calls sync.WaitGroup
	log.Info("ramp", "calls", o.Calls, "baseline_calls", o.BaselineCalls, "rate", o.Rate, "ramp", ramp.Round(time.Millisecond))
	launchedPlain := 0
	interval := time.Duration(float64(time.Second) / o.Rate)
	for i := range o.Calls {
		if err := sleepUntil(callsCtx, t0.Add(time.Duration(i)*interval)); err != nil {
			break
		}
		calls.Add(1)
		go func() {
			defer calls.Done()
			switch {
			case o.Native != nil:
				outcomes[i] = placeNativeCall(callsCtx, eng, o, i)
			case o.Pairs:
				outcomes[i] = placePair(callsCtx, eng, o, i)
			default:
				outcomes[i] = placeCall(callsCtx, eng, o, i)
			}
			if outcomes[i].err != nil {
				if failed.Add(1) <= 5 {
					log.Warn("call failed", "call", i, "err", outcomes[i].err)
				}
			}
		}()
		// Spread the baseline calls over the ramp, so they see the same load growing.
		for launchedPlain < o.BaselineCalls && launchedPlain*o.Calls <= i*o.BaselineCalls {
			k := launchedPlain
			launchedPlain++
			calls.Add(1)
			go func() {
				defer calls.Done()
				plains[k] = plain.call(callsCtx)
				if plains[k].Err != nil && callsCtx.Err() == nil {
					log.Warn("baseline call failed", "call", k, "err", plains[k].Err)
				}
			}()
		}
		if (i+1)%50 == 0 {
			log.Info("ramp progress", "launched", i+1, "failed", failed.Load())
		}
	}

	var start, end map[string]ProcSample
	var counts resourceCounts
	if err := sleepUntil(ctx, steadyStart); err == nil {
		start, err = sampleAll(procs)
		if err != nil {
			log.Warn("sample at steady start", "err", err)
		}
		if ariClient != nil {
			counts = countResources(ctx, ariClient, log)
		}
		log.Info("steady window", "for", o.Steady, "failed_so_far", failed.Load())
		if err := sleepUntil(ctx, steadyEnd); err == nil {
			end, err = sampleAll(procs)
			if err != nil {
				log.Warn("sample at steady end", "err", err)
			}
		}
	}
	stopCalls()
	log.Info("hanging up")
	done := make(chan struct{})
	go func() { calls.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		return nil, errors.New("bench: calls did not end within 60 s of hanging up; Patchbay or Asterisk may be stuck")
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("bench: interrupted: %w", ctx.Err())
	}
	if start == nil || end == nil {
		return nil, errors.New("bench: /proc samples missing for the steady window (did a process exit?)")
	}

	res := summarize(o, outcomes, plains, window{steadyStart, steadyEnd}, idle, start, end)
	res.Scrapes, res.ScrapeErrors = int(scrapes.Load()), int(scrapeErrs.Load())
	res.countsPerCall(counts)
	if o.PatchbayLog != "" {
		ds, err := ReadAnswered(o.PatchbayLog, logOff)
		if err != nil {
			log.Warn("server-side offer→far answered times unavailable", "err", err)
		}
		res.ServerFarAnswered = Distribution(ds)
	}
	if o.PatchbayRecords != "" {
		ds, err := ReadRecordAnswers(o.PatchbayRecords, recOff)
		if err != nil {
			log.Warn("server-side offer→answer times unavailable", "err", err)
		}
		res.ServerAnswer = Distribution(ds)
	}
	return res, nil
}

// placeCall dials Patchbay's signalling and runs one echo call until ctx ends.
func placeCall(ctx context.Context, eng *synth.Engine, o Options, i int) callOutcome {
	tok, err := o.Token(i)
	if err != nil {
		return callOutcome{err: fmt.Errorf("token for call %d: %w", i, err)}
	}
	conn, err := signal.Dial(ctx, o.URL, tok, signal.DialOptions{TLSConfig: o.TLS})
	if err != nil {
		return callOutcome{err: fmt.Errorf("connect to %s: %w", o.URL, err)}
	}
	defer conn.Close()
	rep, err := eng.Call(ctx, conn, synth.CallOptions{To: o.To, Codecs: offered(o.Codec), Duration: -1, RecordMax: time.Second, Logger: o.CallLogs})
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil // the bench ended it
	}
	return callOutcome{rep: rep, err: err}
}

// offered is what a caller offers for the bench's codec: Opus first then PCMU, as browsers do, or PCMU alone.
func offered(codec string) []media.Codec {
	if codec == "opus" {
		return []media.Codec{media.Opus, media.PCMU}
	}
	return []media.Codec{media.PCMU}
}

// placePair runs one browser ⇄ browser call until ctx ends: the callee's synthetic browser signs in first and
// answers by sending back what it hears; the caller dials it.
func placePair(ctx context.Context, eng *synth.Engine, o Options, i int) callOutcome {
	ctok, err := o.CalleeToken(i)
	if err != nil {
		return callOutcome{err: fmt.Errorf("callee token for call %d: %w", i, err)}
	}
	callee, err := signal.Dial(ctx, o.URL, ctok, signal.DialOptions{TLSConfig: o.TLS})
	if err != nil {
		return callOutcome{err: fmt.Errorf("connect callee to %s: %w", o.URL, err)}
	}
	defer callee.Close()
	answered := make(chan error, 1)
	go func() { // ends with ctx: the bench hangs up, or the caller's hang-up reaches it
		_, err := eng.Receive(ctx, callee, synth.CallOptions{Echo: true, Duration: -1, RecordMax: time.Second, Logger: o.CallLogs})
		answered <- err
	}()
	o.To = o.Callee(i)
	out := placeCall(ctx, eng, o, i)
	if err := <-answered; err != nil && out.err == nil && ctx.Err() == nil {
		out.err = fmt.Errorf("callee of call %d: %w", i, err)
	}
	return out
}

// scrape GETs Patchbay's /metrics every interval until ctx ends, as Prometheus would, and throws the body away.
func scrape(ctx context.Context, url string, every time.Duration, n, errs *atomic.Int64) {
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err != nil && ctx.Err() == nil {
			errs.Add(1)
		} else if err == nil {
			n.Add(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// hostKey holds the whole host's busy CPU time in a sample set.
const hostKey = "host"

func sampleAll(procs map[string]int) (map[string]ProcSample, error) {
	out := map[string]ProcSample{}
	busy, err := ReadHostBusy()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	out[hostKey] = ProcSample{CPU: busy}
	for name, pid := range procs {
		if pid == 0 {
			continue
		}
		s, err := ReadProc(pid)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", name, err)
		}
		out[name] = s
	}
	return out, nil
}

// resourceCounts is what Asterisk holds at the start of the steady window.
type resourceCounts struct {
	ok                bool
	channels, bridges int
	baseline          int // baseline calls among them (each: externalMedia + Local pair, one bridge)
}

func countResources(ctx context.Context, a *ari.Client, log *slog.Logger) resourceCounts {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	chs, err := a.Channels().List(cctx)
	if err != nil {
		log.Warn("count channels", "err", err)
		return resourceCounts{}
	}
	brs, err := a.Bridges().List(cctx)
	if err != nil {
		log.Warn("count bridges", "err", err)
		return resourceCounts{}
	}
	rc := resourceCounts{ok: true, channels: len(chs), bridges: len(brs)}
	for _, c := range chs {
		if strings.HasPrefix(c.ID, "pbbench-em-") {
			rc.baseline++
		}
	}
	return rc
}
