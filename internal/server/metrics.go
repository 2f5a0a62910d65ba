package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/metrics"
	"github.com/patchbay/patchbay/internal/webhook"
)

// observability is what Patchbay tells about its calls: the Prometheus registry and its own listener
// (metrics.listen), and the call records (in-memory ring, JSON-lines file, records webhook). Observer is what call
// control reports to.
type observability struct {
	log      *slog.Logger
	metrics  *metrics.Metrics // nil: metrics.listen is empty (metrics off)
	records  *cdr.Recorder
	writer   *cdr.Writer     // nil without calls.records.file
	hook     *webhook.Sender // nil without calls.records.webhook_url
	observer cdr.Observer

	ln  net.Listener // the metrics listener, bound in New so a taken port fails at start
	srv *http.Server
}

// newObservability builds the registry, the records and their sinks, and binds the metrics listener. The lead
// calls it first thing in New, so the parts built after it can take their hooks (ARI, SFU, limits).
func (s *Server) newObservability(cfg *config.Config, log *slog.Logger) error {
	o := &observability{log: log.With("component", "observability")}
	s.obs = o
	if cfg.Metrics.Listen != "" {
		o.metrics = metrics.New(metrics.Options{})
	}
	var sinks []cdr.Sink
	if f := cfg.Calls.Records.File; f != "" {
		w, err := cdr.NewWriter(cdr.WriterOptions{Path: f, MaxSize: int64(cfg.Calls.Records.MaxSizeMB) << 20,
			Backups: cfg.Calls.Records.Backups, Logger: o.log})
		if err != nil {
			return err
		}
		o.writer = w
		sinks = append(sinks, w)
	}
	if u := cfg.Calls.Records.WebhookURL; u != "" {
		h, err := webhook.New(webhook.Options{URL: u, Secret: []byte(cfg.Calls.Records.WebhookSecret.Reveal()),
			MaxAttempts: cfg.Webhook.MaxAttempts, Timeout: cfg.Webhook.Timeout, Logger: o.log.With("webhook", "records")})
		if err != nil {
			return fmt.Errorf("calls.records.webhook_url: %w", err)
		}
		o.hook = h
		sinks = append(sinks, cdr.SinkFunc(func(r cdr.Record) { h.NotifyJSON(webhook.EventRecord, r.CallID, r) }))
	}
	instance := cfg.Calls.Records.Instance
	if instance == "" {
		instance, _ = os.Hostname()
	}
	o.records = cdr.NewRecorder(cdr.RecorderOptions{Instance: instance, Keep: cfg.Calls.Records.Keep, Sinks: sinks})
	if o.metrics != nil {
		o.observer = cdr.Fanout(o.metrics, o.records)
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics.listen %s: %w (another Patchbay or exporter on that port? pick another, or set it empty to turn metrics off)", cfg.Metrics.Listen, err)
		}
		o.ln = ln
		o.register()
	} else {
		o.observer = o.records
	}
	return nil
}

// register adds the counts other parts keep to the registry.
func (o *observability) register() {
	m := o.metrics
	m.CounterFunc("call_records_dropped_total", "Call records lost: the records queue was full or the file could not be written.", func() float64 {
		if o.writer == nil {
			return 0
		}
		_, dropped, failed := o.writer.Stats()
		return float64(dropped + failed)
	})
	m.CounterFunc("call_records_webhook_failed_total", "Call records the records webhook gave up on or dropped.", func() float64 {
		if o.hook == nil {
			return 0
		}
		_, failed, dropped := o.hook.Stats()
		return float64(failed + dropped)
	})
}

// Observer is what call control reports each call's life to (metrics and records).
func (s *Server) Observer() cdr.Observer { return s.obs.observer }

// Metrics is the registry, nil when metrics are off.
func (s *Server) Metrics() *metrics.Metrics { return s.obs.metrics }

// MetricsAddr is the metrics listener's address, nil when metrics are off.
func (s *Server) MetricsAddr() net.Addr {
	if s.obs.ln == nil {
		return nil
	}
	return s.obs.ln.Addr()
}

// ariObserve is ari.Config.Observe: nil when metrics are off, so the ARI client skips the call entirely.
func (o *observability) ariObserve() func(method, route string, status int, d time.Duration) {
	if o.metrics == nil {
		return nil
	}
	return o.metrics.ObserveARI
}

// limitRefused is limits.Config.OnRefuse for the limiter of scope ("token", "api_key", "phone").
func (o *observability) limitRefused(scope string) func(code string) {
	if o.metrics == nil {
		return nil
	}
	return func(code string) { o.metrics.LimitTrip(scope, code) }
}

// wireObservability connects what exists once New has built everything: gauges read from the signalling server
// and the rooms, the Redis hook, and GET /api/v1/calls. The lead calls it at the end of New.
func (s *Server) wireObservability() {
	o := s.obs
	s.api.RegisterCallRecords(o.records)
	m := o.metrics
	if m == nil {
		return
	}
	m.GaugeFunc("signalling_sessions", "Open signalling WebSockets (authenticated or not).", func() float64 { return float64(s.signal.Len()) })
	m.GaugeFunc("rooms", "Live rooms.", func() float64 { return float64(len(s.rooms.List())) })
	m.GaugeFunc("room_participants", "Participants in all live rooms (browsers and phones).", func() float64 {
		n := 0
		for _, r := range s.rooms.List() {
			n += r.Participants
		}
		return float64(n)
	})
	m.GaugeFunc("calls_in_progress", "Calls the call manager holds now, all directions (a cross-check of calls_active).",
		func() float64 { return float64(s.calls.Active()) })
	if s.redis != nil {
		s.redis.AddHook(redisMetrics{m})
	}
}

// startObservability serves /metrics and runs the records writer and webhook until stop, which the lead defers
// in Run. stop waits for them, after the calls have ended so their last records are written.
func (s *Server) startObservability(ctx context.Context) (stop func()) {
	o := s.obs
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	if o.writer != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.writer.Run(ctx)
		}()
	}
	if o.hook != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.hook.Run(ctx)
		}()
	}
	// Reconnects of the ARI events socket and what each sweep removed, from the client's own events.
	sub := s.ari.Subscribe(ari.Filter{Name: "metrics", Types: []string{ari.TypeConnected, ari.TypeSwept}})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-sub.Events():
				switch e := ev.(type) {
				case *ari.Connected:
					if e.Reconnect {
						o.metrics.ARIReconnect()
					}
				case *ari.Swept:
					o.metrics.Sweep("channel", e.Report.Channels)
					o.metrics.Sweep("bridge", e.Report.Bridges)
				}
			}
		}
	}()
	if o.ln != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", o.metrics.Handler())
		mux.HandleFunc("GET /healthz", s.healthz)
		o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelWarn)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.srv.Serve(o.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				o.log.Error("metrics listener stopped", "err", err)
			}
		}()
		o.log.Info("metrics listening", "addr", o.ln.Addr().String(), "path", "/metrics")
	}
	return func() {
		if o.srv != nil {
			_ = o.srv.Close()
		}
		cancel()
		wg.Wait()
	}
}

// closeObservability releases the listener when Run never started (New failed half-way).
func (s *Server) closeObservability() {
	if s.obs != nil && s.obs.ln != nil && s.obs.srv == nil {
		_ = s.obs.ln.Close()
	}
}

// redisMetrics counts failed Redis commands; a missing key (redis.Nil) is an answer, not an error.
type redisMetrics struct{ m *metrics.Metrics }

func (h redisMetrics) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			h.m.RedisError("dial")
		}
		return c, err
	}
}

func (h redisMetrics) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && !errors.Is(err, redis.Nil) {
			h.m.RedisError(cmd.Name())
		}
		return err
	}
}

func (h redisMetrics) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil && !errors.Is(err, redis.Nil) {
			h.m.RedisError("pipeline")
		}
		return err
	}
}
