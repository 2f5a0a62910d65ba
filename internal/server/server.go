// Package server assembles a running Patchbay from its configuration: the ARI client, the shared media API, the
// relay ports, the router, the call manager, the signalling server and the HTTP listener. `patchbay serve` and the
// integration tests both start Patchbay through it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	pion "github.com/pion/webrtc/v4"
	"github.com/redis/go-redis/v9"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/certs"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/api"
	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/internal/cluster"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/relay"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/internal/webhook"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/mmsg"
	"github.com/patchbay/patchbay/webrtc/sfu"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/webrtc/web"
	"github.com/patchbay/patchbay/wire"
)

// Server is one Patchbay.
type Server struct {
	cfg    *config.Config
	log    *slog.Logger
	ari    *ari.Client
	media  *media.API
	ports  *relay.Ports
	calls  *call.Manager
	signal *signal.Server
	signer *auth.Signer
	api    *api.Server
	http   *http.Server
	ln     net.Listener
	ready  atomic.Bool

	hurry     chan struct{} // closed by Hurry
	done      chan struct{} // closed when Run returns
	hurryOnce sync.Once

	rooms   *rooms.Registry
	numbers dialplan.Store
	redis   redis.UniversalClient // nil without Redis (one server, Sentinel or Cluster)
	sfu     *sfu.Hub              // nil unless media.video (video.go)
	cluster *clusterParts         // nil unless cluster.enabled (cluster.go)

	tickets  tickets.Store   // one-time join tickets (calls.go)
	webhooks *webhook.Sender // nil without webhook.url
	obs      *observability  // metrics and call records (metrics.go)
	cti      *cti            // recordings and contact-center wiring (cti.go)
}

// New builds everything and binds the listeners, so that a bad port, certificate or secret fails here with a
// clear error instead of later. Run starts serving.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, log: log, hurry: make(chan struct{}), done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			s.closeParts()
		}
	}()
	if err := s.newObservability(cfg, log); err != nil {
		return nil, err
	}
	var err error
	s.signer, err = auth.NewSigner([]byte(cfg.Auth.TokenSecret.Reveal()), cfg.Auth.TokenIssuer)
	if err != nil {
		return nil, fmt.Errorf("auth.token_secret: %w", err)
	}
	s.signer.SetMaxLifetime(cfg.Auth.MaxTokenLifetime)
	s.ari, err = ari.New(ari.Config{
		URL:           cfg.ARI.URL,
		Username:      cfg.ARI.User,
		Password:      cfg.ARI.Password.Reveal(),
		Application:   cfg.ARI.App,
		Logger:        log,
		Instance:      cfg.ARI.Instance,
		SweepInterval: cfg.ARI.SweepInterval,
		PingInterval:  cfg.ARI.PingInterval,
		DeadAfter:     cfg.ARI.DeadAfter,
		// A restarted Asterisk is back in about 2 s: retry often enough to take calls again soon after.
		MaxBackoff: 2 * time.Second,
		Observe:    s.obs.ariObserve(),
	})
	if err != nil {
		return nil, err
	}
	var iceServers []pion.ICEServer
	for _, is := range cfg.Media.ICEServers {
		iceServers = append(iceServers, pion.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential.Reveal()})
	}
	s.media, err = media.NewAPI(networkMedia(cfg, media.Options{
		ICEPort:         cfg.Media.ICEPort,
		PublicIPs:       cfg.Media.PublicIPs,
		IncludeLoopback: cfg.Media.IncludeLoopback,
		ICEIPs:          cfg.Media.ICEIPs,
		Video:           cfg.Media.Video,
		H264:            cfg.Media.H264,
		PionMedia:       !cfg.Media.LeanAudio,
		OpusDTX:         cfg.Media.OpusDTX,
		Pace:            mmsg.Options{Pace: cfg.Media.Pace, PaceAbove: cfg.Media.PaceAbove},
		ICEServers:      iceServers,
		Logger:          log.With("component", "media"),
	}))
	if err != nil {
		return nil, fmt.Errorf("media (media.ice_port %d): %w", cfg.Media.ICEPort, err)
	}
	s.ports, err = relay.NewPortsPaced(cfg.Media.RelayHost, cfg.Media.RelayPortStart, cfg.Media.RelayPortEnd, cfg.Media.RelayDrain,
		mmsg.Options{Pace: cfg.Media.Pace, PaceAbove: cfg.Media.PaceAbove})
	if err == nil {
		s.ports.SetMaxCalls(cfg.Media.MaxCalls)
	}
	if err != nil {
		return nil, fmt.Errorf("relay ports (media.relay_*): %w", err)
	}
	router, err := dialplan.NewRouter(cfg.Rules())
	if err != nil {
		return nil, fmt.Errorf("dialplan rules (dialplan.pstn): %w", err)
	}
	s.numbers = s.numberStore(cfg, log)
	if err := s.newCTI(cfg, log); err != nil {
		return nil, err
	}
	if err := s.newCluster(cfg, log); err != nil {
		return nil, err
	}
	s.rooms = rooms.New(rooms.Options{ARI: s.ari, Grace: cfg.Rooms.Grace, MaxRooms: cfg.Rooms.MaxRooms, Logger: log.With("component", "rooms"),
		OnBridge: s.ctiRoomBridge, Directory: s.roomDirectory()})
	pstnOpts, err := s.pstnOptions(cfg, log)
	if err != nil {
		return nil, err
	}
	endpointExts, err := dialplan.CompilePatterns(cfg.Calls.EndpointExtensions)
	if err != nil {
		return nil, fmt.Errorf("calls.endpoint_extensions: %w", err)
	}
	dialplanExts, err := dialplan.CompilePatterns(cfg.Calls.DialplanExtensions)
	if err != nil {
		return nil, fmt.Errorf("calls.dialplan_extensions: %w", err)
	}
	s.calls, err = call.New(call.Options{
		ARI:    s.ari,
		Media:  s.media,
		Ports:  s.ports,
		Router: router,
		Users:  cfg.Users,
		Logger: log.With("component", "calls"),

		Rooms:     s.rooms,
		Numbers:   s.numbers,
		RoomPeers: s.videoRooms(cfg, log),

		Tickets:     s.tickets,
		PSTN:        pstnOpts,
		MaxDuration: cfg.Limits.MaxCallDuration,

		SetupTimeout:   cfg.Calls.SetupTimeout,
		NoMediaTimeout: cfg.Calls.NoMediaTimeout,
		MediaGrace:     min(time.Second, cfg.ARI.DeadAfter),
		MaxSetups:      cfg.Calls.MaxSetups,

		EndpointExtensions: endpointExts,
		DialplanExtensions: dialplanExts,
		DialplanContext:    cfg.Rules().Context,

		Observer:    s.obs.observer,
		OneWayAfter: cfg.Calls.OneWayAfter,
		Cluster:     s.callCluster(),
		CTI:         s.ctiOptions(),
	})
	if err != nil {
		return nil, err
	}
	s.signal, err = signal.NewServer(networkSignal(cfg, signal.ServerOptions{
		Verifier:       s.signer,
		Handler:        s.calls,
		AllowedOrigins: cfg.HTTP.AllowedOrigins,
		ICEServers:     s.iceServersForBrowsers,

		MaxUnauthenticatedPerIP: cfg.HTTP.MaxUnauthenticatedPerIP,
		MaxUnauthenticated:      cfg.HTTP.MaxUnauthenticated,
		Logger:                  log,
		OnUsersChanged:          s.clusterKick,
	}))
	if err != nil {
		return nil, err
	}
	s.calls.SetDirectory(s.signal)

	keyMap := map[string]string{}
	for name, k := range cfg.Auth.APIKeys {
		keyMap[name] = k.Reveal()
	}
	var keys *auth.APIKeys
	if len(keyMap) > 0 {
		if keys, err = auth.NewAPIKeys(keyMap); err != nil {
			return nil, fmt.Errorf("auth.api_keys: %w", err)
		}
	}
	s.api = api.New(keys, log.With("component", "api"))
	s.api.RegisterRooms(api.RoomsDeps{Rooms: s.rooms, Numbers: s.numbers, Signer: s.signer, TokenTTL: cfg.Auth.TokenTTL,
		MaxTokenTTL: cfg.Auth.MaxTokenLifetime, NumberTTL: cfg.Rooms.NumberTTL, Logger: log.With("component", "api")})
	s.api.RegisterCalls(s.callService())
	s.registerCTI()
	s.wireObservability()

	mux := http.NewServeMux()
	mux.Handle("/ws", s.signal)
	mux.Handle(api.Prefix+"/", s.apiHandler())
	mux.HandleFunc("/healthz", s.healthz)
	mux.Handle("/agent", web.AgentPage(func(n string) error {
		_, err := dialplan.NormalizeNumber(n)
		return err
	}))
	mux.Handle("/", web.Handler())
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s.ln, err = net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w (is another Patchbay running? pick another port)", cfg.HTTP.Listen, err)
	}
	if cfg.HTTP.TLS {
		p := certs.Paths{Cert: cfg.HTTP.CertFile, Key: cfg.HTTP.KeyFile}
		if err := certs.Check(p); err != nil {
			return nil, fmt.Errorf("http TLS: %w", err)
		}
		pair, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			return nil, fmt.Errorf("http TLS: %w", err)
		}
		s.ln = tls.NewListener(s.ln, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	}
	ok = true
	return s, nil
}

func (s *Server) iceServersForBrowsers() []signal.ICEServer {
	var out []signal.ICEServer
	for _, is := range s.cfg.Media.ICEServers {
		out = append(out, signal.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential.Reveal()})
	}
	return out
}

// Ready reports whether Run has connected to ARI and is serving.
func (s *Server) Ready() bool { return s.ready.Load() }

// Addr is the address the HTTP listener bound (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// ICEPort is the UDP port browsers send media to.
func (s *Server) ICEPort() int { return s.media.ICEPort() }

// Signer mints browser tokens (tests and the admin API use it).
func (s *Server) Signer() *auth.Signer { return s.signer }

// ActiveCalls is the number of calls in progress.
func (s *Server) ActiveCalls() int { return s.calls.Active() }

// Run serves until ctx ends. It first waits for the ARI events socket, which registers the Stasis application:
// until then Asterisk's dialplan falls back for calls meant for Patchbay. Then it drains: signalling stops taking
// connections, calls get http.shutdown_timeout to end, everything closes.
func (s *Server) Run(ctx context.Context) error {
	defer close(s.done)
	defer s.closeParts()
	defer s.startObservability(ctx)() // stops after the calls ended, so their last records are written
	defer s.startCTI(ctx)()           // likewise: the last recordings are collected
	stopPprof, err := s.startPprof()  // off unless PATCHBAY_PPROF_LISTEN names a loopback address
	if err != nil {
		return err
	}
	defer stopPprof()
	ariCtx, stopARI := context.WithCancel(context.WithoutCancel(ctx))
	defer stopARI()
	callCtx, stopCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCalls()

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	// Call control listens before the events socket opens, so a phone that enters Stasis the moment the
	// application registers is routed, not left to the sweep.
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = s.calls.Run(callCtx)
	}()
	go func() {
		defer wg.Done()
		if err := s.ari.Run(ariCtx); err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("ARI: %w", err)
		}
	}()
	if err := s.connectARI(ctx); err != nil {
		stopCalls()
		stopARI()
		wg.Wait()
		return err
	}
	defer s.startCluster()() // heartbeat until the calls have ended, then leave the cluster (cluster.go)
	wg.Add(1)
	if s.webhooks != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.webhooks.Run(callCtx)
		}()
	}
	go func() {
		defer wg.Done()
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	s.ready.Store(true)
	s.log.Info("patchbay serving", "addr", s.ln.Addr().String(), "tls", s.cfg.HTTP.TLS, "ice_port", s.media.ICEPort(), "app", s.cfg.ARI.App)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.shutdown()
	stopCalls()
	stopARI()
	wg.Wait()
	return runErr
}

// Done is closed when Run has returned.
func (s *Server) Done() <-chan struct{} { return s.done }

// Hurry cuts a shutdown's grace short: calls still up are hung up at once (a second SIGTERM).
func (s *Server) Hurry() { s.hurryOnce.Do(func() { close(s.hurry) }) }

// shutdown stops taking calls and connections, lets calls end by themselves for http.shutdown_timeout (or until
// Hurry), then hangs up what is left with cause server_shutdown, so every browser gets its hangup; it then leaves
// Asterisk with nothing of this instance's and closes the signalling sessions. ARI stops after it, since hang-ups
// and the sweep go through it.
func (s *Server) shutdown() {
	s.calls.Drain()
	s.clusterDrain() // other nodes stop sending calls here (cluster.go)
	s.log.Info("patchbay stopping: new calls refused", "active_calls", s.calls.Active(), "grace", s.cfg.HTTP.ShutdownTimeout)
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.HTTP.ShutdownTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.hurry:
			cancel()
		case <-grace.Done():
		}
	}()
	// The listener closes now; WebSockets (hijacked) stay up until the calls are done.
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		_ = s.http.Shutdown(grace)
	}()
	_ = s.calls.Wait(grace)
	if n := s.calls.EndAll(wire.CauseServerShutdown); n > 0 {
		s.log.Info("shutdown: hanging up the calls still up", "calls", n)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := s.calls.Wait(wctx); err != nil {
		s.log.Warn("shutdown: calls did not close in time", "err", err)
	}
	wcancel()
	// Rooms' bridges go after their participants' calls; then whatever a call could not remove.
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.rooms.Close(rctx)
	if rep, err := s.ari.SweepAll(rctx); err != nil {
		s.log.Warn("shutdown: could not leave Asterisk clean; the next start sweeps it", "err", err)
	} else if rep.Channels+rep.Bridges > 0 {
		s.log.Info("shutdown: swept what calls left", "channels", rep.Channels, "bridges", rep.Bridges)
	}
	rcancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = s.signal.Shutdown(sctx)
	scancel()
	<-httpDone
}

// connectARI waits until Asterisk answers ARI and the events socket (which registers the Stasis application) is
// up. A refused password ends the wait at once; otherwise the last reason is reported when the time is up, so the
// admin reads "Asterisk not reachable at …" rather than a bare timeout.
func (s *Server) connectARI(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ARI.ConnectTimeout)
	defer cancel()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.ari.Asterisk().Info(pctx)
		pcancel()
		if err == nil {
			if err = s.ari.WaitConnected(ctx); err == nil {
				return nil
			}
		}
		if ari.IsUnauthorized(err) {
			return fmt.Errorf("connect to Asterisk ARI at %s: %w", s.cfg.ARI.URL, err)
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("connect to Asterisk ARI at %s (gave up after ari.connect_timeout %v): %w", s.cfg.ARI.URL, s.cfg.ARI.ConnectTimeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.ari.Asterisk().Info(ctx); err != nil {
		http.Error(w, "asterisk unreachable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintf(w, "ok calls=%d\n", s.calls.Active())
}

func (s *Server) closeParts() {
	s.closeObservability()
	if s.ln != nil {
		_ = s.ln.Close()
	}
	if s.signal != nil {
		_ = s.signal.Close()
	}
	if s.ports != nil {
		_ = s.ports.Close()
	}
	if s.sfu != nil { // its rooms are empty once the calls have ended
		_ = s.sfu.Close()
	}
	if s.media != nil {
		_ = s.media.Close()
	}
	if s.redis != nil {
		_ = s.redis.Close()
	}
}

// numberStore is the number→room store: Redis when one is configured (shared by every instance), else in
// memory. The Redis client it makes (one server, Sentinel or Cluster: cluster.NewRedisClient) is the one every
// other part shares. A Redis that is down at start is not fatal: lookups fail with a clear error until it is back.
func (s *Server) numberStore(cfg *config.Config, log *slog.Logger) dialplan.Store {
	if !cfg.Redis.Enabled() {
		log.Info("number store: in memory (set redis.addr to share mappings and keep them across restarts)")
		return dialplan.NewMemoryStore()
	}
	redis.SetLogger(redisLogger{log.With("component", "redis")})
	s.redis = cluster.NewRedisClient(cfg.Redis)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.redis.Ping(ctx).Err(); err != nil {
		log.Warn("number store: Redis not reachable at start; calls to mapped numbers get the unavailable treatment until it is",
			"redis", cfg.Redis.Where(), "err", err)
	} else {
		log.Info("number store: Redis", "redis", cfg.Redis.Where(), "db", cfg.Redis.DB)
	}
	return dialplan.NewRedisStore(s.redis, cfg.Redis.Prefix+"dialplan:")
}

// redisLogger routes go-redis's own log lines (reconnects, pool trouble) through slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}

// Rooms is the room registry (tests and the admin API use it).
func (s *Server) Rooms() *rooms.Registry { return s.rooms }

// Numbers is the number→room store.
func (s *Server) Numbers() dialplan.Store { return s.numbers }
