package call

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pion/interceptor"
	pion "github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/ari/aritest"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/relay"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// The harness runs a real Manager against the ARI fake (ari/aritest) with echo media: a real ARI client, the
// shared pion API and relay ports on loopback, the dialplan router, rooms, the signalling server on httptest, and
// synthetic browsers (tools/synth) speaking the documented protocol. close stops every part it started, so a
// test can check with goleak that a call leaves no goroutine behind.

// Phone and API identities the harness configures.
const (
	phoneCallerID = "+442071230001" // dialplan.phone_caller_ids for PJSIP/101
	apiCallerID   = "+442071230009" // api.caller_ids of key "crm"
	browserCLI    = "+442071230005" // the caller ID in browser tokens
	pstnNumber    = "+442079460123"
)

// patience bounds waits for what must happen but whose timing is not under test: generous, because the machines
// these tests run on are shared and a starved process can take seconds for what takes milliseconds.
const patience = 15 * time.Second

type harnessConfig struct {
	opts        Options           // call options; zero fields take the harness defaults below
	ariCfg      func(*ari.Config) // adjusts the ARI client's config
	resumeGrace time.Duration     // the signalling server's; 0: resume off
}

// withResumeGrace turns resume on in the signalling server: a dropped socket's calls are held for d.
func withResumeGrace(d time.Duration) harnessOption {
	return func(c *harnessConfig) { c.resumeGrace = d }
}

type harnessOption func(*harnessConfig)

func withOptions(f func(*Options)) harnessOption {
	return func(c *harnessConfig) { f(&c.opts) }
}

func withARI(f func(*ari.Config)) harnessOption {
	return func(c *harnessConfig) {
		prev := c.ariCfg
		c.ariCfg = func(a *ari.Config) {
			if prev != nil {
				prev(a)
			}
			f(a)
		}
	}
}

// withSweep turns the ARI sweep on: at every connect and on SweepSoon (the interval is an hour, so it never runs
// by itself during a test), sparing only resources younger than 50 ms. Off by default, so tests show that close
// alone removes what a call made.
func withSweep() harnessOption {
	return withARI(func(a *ari.Config) {
		a.SweepInterval = time.Hour
		a.SweepMinAge = 50 * time.Millisecond
	})
}

type harness struct {
	t       testing.TB
	fake    *aritest.Server
	ari     *ari.Client
	m       *Manager
	media   *media.API
	ports   *relay.Ports
	rooms   *rooms.Registry
	numbers *dialplan.MemoryStore
	sig     *signal.Server
	web     *httptest.Server
	signer  *auth.Signer
	engine  *synth.Engine
	logs    *logSink
	wsURL   string

	ctx       context.Context // test activity (synthetic calls) hangs off it; close cancels it first
	cancel    context.CancelFunc
	wg        sync.WaitGroup // test goroutines
	ariStop   context.CancelFunc
	ariDone   chan struct{}
	mStop     context.CancelFunc
	mDone     chan struct{}
	bmu       sync.Mutex
	browsers  []*browser
	closeOnce sync.Once
}

// nextPort spreads the relay port ranges of harnesses (several may run at once) over ports nobody else here uses.
var nextPort atomic.Int32

func init() { nextPort.Store(int32(41000 + os.Getpid()%500*16)) }

func newHarness(t testing.TB, hopts ...harnessOption) *harness {
	t.Helper()
	var cfg harnessConfig
	for _, o := range hopts {
		o(&cfg)
	}
	h := &harness{t: t, logs: newLogSink()}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			h.close()
		}
	}()
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	h.fake = aritest.New(t, aritest.WithEchoMedia())
	h.fake.Dialplan("from-patchbay", "600", aritest.AnswerEcho()...) // the echo test, as the shipped dialplan has it
	ac := h.fake.Config()
	ac.Logger = log.With("component", "ari")
	ac.Instance = "t1"
	ac.SweepInterval = -1
	// The fake's 200 ms pings would declare the socket dead after 400 ms of a busy test machine's silence; tests
	// of a frozen Asterisk set their own.
	ac.PingInterval, ac.DeadAfter = time.Second, 5*time.Second
	if cfg.ariCfg != nil {
		cfg.ariCfg(&ac)
	}
	var err error
	if h.ari, err = ari.New(ac); err != nil {
		t.Fatal(err)
	}
	actx, astop := context.WithCancel(context.Background())
	h.ariStop, h.ariDone = astop, make(chan struct{})
	go func() {
		defer close(h.ariDone)
		_ = h.ari.Run(actx)
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = h.ari.WaitConnected(wctx)
	wcancel()
	if err != nil {
		t.Fatal(err)
	}

	if h.media, err = media.NewAPI(media.Options{ICEAddress: "127.0.0.1", IncludeLoopback: true, Logger: log.With("component", "media")}); err != nil {
		t.Fatal(err)
	}
	// The relay's shared socket binds the first free port of a range of its own.
	first := int(nextPort.Add(8)) - 8
	if h.ports, err = relay.NewPorts("127.0.0.1", first, first+7, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	router, err := dialplan.NewRouter(dialplan.DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	// Empty rooms live a minute: tests end them (assertClean) or the harness does (close).
	h.rooms = rooms.New(rooms.Options{ARI: h.ari, Grace: time.Minute, Logger: log.With("component", "rooms")})
	h.numbers = dialplan.NewMemoryStore()

	o := cfg.opts
	o.ARI, o.Media, o.Ports, o.Router, o.Rooms, o.Numbers = h.ari, h.media, h.ports, router, h.rooms, h.numbers
	o.Logger = log.With("component", "calls")
	if o.EndpointExtensions == nil { // as config.Defaults: phones are 1XX, the dialplan answers 600, 601, 603 itself
		o.EndpointExtensions, _ = dialplan.CompilePatterns([]string{"_1XX"})
	}
	if o.DialplanExtensions == nil {
		o.DialplanExtensions, _ = dialplan.CompilePatterns([]string{"600", "601", "603"})
	}
	if o.Users == nil {
		o.Users = map[string]string{"7001": "alice"}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	// Generous, so a busy test machine never makes a working step look slow; tests of slowness set their own.
	def(&o.SetupTimeout, 10*time.Second)
	def(&o.CloseTimeout, 5*time.Second)
	def(&o.NoMediaTimeout, 10*time.Second)
	def(&o.RingTimeout, 5*time.Second)
	def(&o.DialTimeout, 5*time.Second)
	if o.PSTN.PhoneCallerIDs == nil {
		o.PSTN.PhoneCallerIDs = map[string]string{"101": phoneCallerID}
	}
	if o.PSTN.APIDial == nil {
		o.PSTN.APIDial = map[string][]string{"crm": {"ext", "pstn"}}
	}
	if o.PSTN.APICallerIDs == nil {
		o.PSTN.APICallerIDs = map[string][]string{"crm": {apiCallerID}}
	}
	if h.m, err = New(o); err != nil {
		t.Fatal(err)
	}

	if h.signer, err = auth.NewSigner([]byte(strings.Repeat("k", 32)), "calltest"); err != nil {
		t.Fatal(err)
	}
	so := signal.ServerOptions{Verifier: h.signer, Handler: h.m, CloseGrace: 200 * time.Millisecond, Logger: log.With("component", "signal"),
		ResumeGrace: -1}
	if cfg.resumeGrace > 0 {
		so.ResumeGrace = cfg.resumeGrace
	}
	if h.sig, err = signal.NewServer(so); err != nil {
		t.Fatal(err)
	}
	h.m.SetDirectory(h.sig)
	mux := http.NewServeMux()
	mux.Handle("/ws", h.sig)
	h.web = httptest.NewServer(mux)
	h.wsURL = "ws://" + strings.TrimPrefix(h.web.URL, "http://") + "/ws"

	mctx, mstop := context.WithCancel(context.Background())
	h.mStop, h.mDone = mstop, make(chan struct{})
	go func() {
		defer close(h.mDone)
		_ = h.m.Run(mctx)
	}()
	h.eventually("the manager runs", time.Second, func() bool { return h.m.runCtx() != canceledCtx })

	if h.engine, err = synth.NewEngine(synth.EngineOptions{LoopbackOnly: true}); err != nil {
		t.Fatal(err)
	}
	ok = true
	return h
}

// close stops everything the harness started, in the order production does: browsers and test calls, the call
// manager (ending what is left), signalling, rooms, ARI, media, the fake. Safe to call more than once.
func (h *harness) close() {
	h.closeOnce.Do(func() {
		h.cancel()
		h.wg.Wait()
		h.bmu.Lock()
		bs := slices.Clone(h.browsers)
		h.bmu.Unlock()
		for _, b := range bs {
			b.close()
		}
		if h.mStop != nil {
			h.mStop()
			<-h.mDone
		}
		if h.sig != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = h.sig.Shutdown(ctx)
			cancel()
		}
		if h.web != nil {
			h.web.Close()
		}
		if h.rooms != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			h.rooms.Close(ctx)
			cancel()
		}
		if h.ariStop != nil {
			h.ariStop()
			<-h.ariDone
		}
		if h.media != nil {
			_ = h.media.Close()
		}
		if h.ports != nil {
			_ = h.ports.Close()
		}
		if h.fake != nil {
			h.fake.Close()
		}
		if h.t.Failed() {
			h.t.Logf("harness log:\n%s", h.logs.String())
		}
	})
}

// goTest runs f on a goroutine the harness waits for in close.
func (h *harness) goTest(f func()) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		f()
	}()
}

// eventually polls cond every 10 ms until it holds or d passes (then the test fails).
func (h *harness) eventually(what string, d time.Duration, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertClean waits until the manager has no call, then checks that Asterisk holds nothing (rooms are ended first)
// and every relay port is back.
func (h *harness) assertClean() {
	h.t.Helper()
	deadline := time.Now().Add(patience)
	for h.m.Active() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := h.m.Active(); n > 0 {
		h.t.Errorf("%d calls still up", n)
	}
	for _, r := range h.rooms.List() {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		_ = h.rooms.End(ctx, r.ID, "test over")
		cancel()
	}
	for time.Now().Before(deadline) && len(h.fake.Channels())+len(h.fake.Bridges()) > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	h.fake.AssertClean(h.t) // lists what is left
	if st := h.ports.Stats(); st.InUse != 0 {
		h.t.Errorf("relay handles still in use: %+v", st)
	}
}

// ---- requests the fake saw ----

// step is an ARI request with its IDs replaced by their kind, e.g. "POST /bridges/{br}/addChannel".
func step(r aritest.Request) string {
	segs := strings.Split(strings.Trim(r.Path, "/"), "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "pb.") {
			kind := strings.Split(s, ".")
			segs[i] = "{" + kind[2] + "}"
		} else if i == 1 && (segs[0] == "channels" || segs[0] == "bridges") && s != "create" && s != "externalMedia" {
			segs[i] = "{dialplan}" // a channel the dialplan made (a phone)
		}
	}
	return r.Method + " /" + strings.Join(segs, "/")
}

// steps lists the fake's requests from index from on, as steps, leaving out what is not a call's doing (the
// events socket, pings, the sweep's listing).
func (h *harness) steps(from int) []string {
	var out []string
	for _, r := range h.fake.Requests()[from:] {
		// The events socket, the liveness probes and the ARI client's app-check canaries are not the call's.
		if r.Path == "/events" || r.Path == "/asterisk/ping" || strings.HasPrefix(r.Path, "/events/user/") || (r.Method == "GET" && (r.Path == "/channels" || r.Path == "/bridges")) {
			continue
		}
		out = append(out, step(r))
	}
	return out
}

// requests returns the fake's requests matching method and a path pattern (as aritest.FailNext takes).
func (h *harness) requests(method, pattern string) []aritest.Request {
	var out []aritest.Request
	for _, r := range h.fake.Requests() {
		if r.Method != method {
			continue
		}
		if pathMatch(pattern, r.Path) {
			out = append(out, r)
		}
	}
	return out
}

// pathMatch matches a path against a pattern whose "*" stands for one segment.
func pathMatch(pattern, p string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(p, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if ps[i] != "*" && ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// vars decodes the channel variables of a create or originate request body.
func vars(r aritest.Request) map[string]string {
	var b struct {
		Variables map[string]string `json:"variables"`
	}
	_ = json.Unmarshal([]byte(r.Body), &b)
	return b.Variables
}

// channelsOf returns the fake's channels whose ID is of kind ("em", "far", "trunk") or whose name starts with it.
func (h *harness) channelsOf(kind string) []ari.Channel {
	var out []ari.Channel
	for _, c := range h.fake.Channels() {
		if strings.Contains(c.ID, "."+kind+".") || strings.HasPrefix(c.Name, kind) {
			out = append(out, c)
		}
	}
	return out
}

// ---- browsers ----

// browser is a signalling connection of one user. A pump records every message it receives (the test reads the
// record) and hands them on to whichever synthetic call is running.
type browser struct {
	h       *harness
	user    string
	conn    *signal.Conn
	session string
	in      chan signal.Message
	pump    chan struct{}

	mu      sync.Mutex
	got     []signal.Message
	recvErr error
	rung    map[string]bool // incoming call_ids a synthetic call has taken
	once    sync.Once
}

// claimsFor are the token claims of a browser user who may call everything.
func claimsFor(user string) auth.Claims {
	return auth.Claims{Name: strings.ToUpper(user[:1]) + user[1:], Dial: []string{"*"}, CallerIDs: []string{browserCLI},
		RegisteredClaims: jwt.RegisteredClaims{Subject: user}}
}

func (h *harness) browser(user string) *browser {
	h.t.Helper()
	return h.browserWith(claimsFor(user))
}

func (h *harness) browserWith(cl auth.Claims) *browser {
	h.t.Helper()
	tok, err := h.signer.Mint(cl, time.Hour)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
	defer cancel()
	conn, err := signal.Dial(ctx, h.wsURL, tok, signal.DialOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	b := &browser{h: h, user: cl.Subject, conn: conn, session: conn.Authed().Session, in: make(chan signal.Message, 4096),
		pump: make(chan struct{}), rung: map[string]bool{}}
	go b.run()
	h.bmu.Lock()
	h.browsers = append(h.browsers, b)
	h.bmu.Unlock()
	return b
}

func (b *browser) run() {
	defer close(b.pump)
	for {
		m, err := b.conn.Recv(context.Background())
		b.mu.Lock()
		if err != nil {
			b.recvErr = err
			b.mu.Unlock()
			return
		}
		b.got = append(b.got, m)
		b.mu.Unlock()
		select {
		case b.in <- m:
		default: // nobody has read for 4096 messages: the record still has them
		}
	}
}

// drop cuts the browser's socket without a close frame (its network went away) and waits for its pump.
func (b *browser) drop() {
	b.once.Do(func() {
		b.conn.Abort()
		<-b.pump
	})
}

// close closes the browser's socket (as a tab that goes away) and waits for its pump.
func (b *browser) close() {
	b.once.Do(func() {
		_ = b.conn.Close()
		<-b.pump
	})
}

// send sends a message from the browser.
func (b *browser) send(m signal.Message) {
	b.h.t.Helper()
	ctx, cancel := context.WithTimeout(b.h.ctx, 5*time.Second)
	defer cancel()
	if err := b.conn.Send(ctx, m); err != nil {
		b.h.t.Fatalf("browser %s: send %s: %v", b.user, m.Type, err)
	}
}

// messages returns what the browser received about callID ("" for all).
func (b *browser) messages(callID string) []signal.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []signal.Message
	for _, m := range b.got {
		if callID == "" || m.CallID == callID {
			out = append(out, m)
		}
	}
	return out
}

// wait returns the first message about callID of type typ, waiting up to d.
func (b *browser) wait(callID, typ string, d time.Duration) signal.Message {
	b.h.t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, m := range b.messages(callID) {
			if m.Type == typ {
				return m
			}
		}
		if time.Now().After(deadline) {
			b.h.t.Fatalf("browser %s got no %q for call %s within %v; it got %s", b.user, typ, callID, d, describeMsgs(b.messages(callID)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ended waits for the call's hangup and returns it with the error that came before it, if any.
func (b *browser) ended(callID string, d time.Duration) (errMsg *signal.Message, hangup signal.Message) {
	b.h.t.Helper()
	hangup = b.wait(callID, signal.TypeHangup, d)
	for _, m := range b.messages(callID) {
		if m.Type == signal.TypeHangup {
			break
		}
		if m.Type == signal.TypeError {
			m := m
			errMsg = &m
		}
	}
	return errMsg, hangup
}

func describeMsgs(ms []signal.Message) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.String())
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// flush drops messages queued for synthetic calls (the record keeps them).
func (b *browser) flush() {
	for {
		select {
		case <-b.in:
		default:
			return
		}
	}
}

// signaller is the browser as a synth.Signaller. Recv never reports the socket's end: a synthetic call goes on
// (and keeps sending media) until its own time is up or the harness stops, as a tab whose socket dropped would.
type signaller struct {
	b *browser
	// onRecv, if set, sees each message before the synthetic call does (and may hold it back for a while).
	onRecv func(signal.Message)
}

func (s signaller) Send(ctx context.Context, m signal.Message) error { return s.b.conn.Send(ctx, m) }

func (s signaller) Recv(ctx context.Context) (signal.Message, error) {
	for {
		select {
		case m := <-s.b.in:
			if m.Type == signal.TypeIncoming {
				s.b.mu.Lock()
				seen := s.b.rung[m.CallID]
				s.b.rung[m.CallID] = true
				s.b.mu.Unlock()
				if seen {
					continue
				}
			}
			if s.onRecv != nil {
				s.onRecv(m)
			}
			return m, nil
		case <-ctx.Done():
			return signal.Message{}, ctx.Err()
		}
	}
}

// synthCall is a synthetic call running on its own goroutine.
type synthCall struct {
	id     string
	done   chan struct{}
	cancel context.CancelFunc
	rep    *synth.Report
	err    error
}

// stop ends the synthetic call (as closing the tab would) and waits for it.
func (c *synthCall) stop() {
	c.cancel()
	<-c.done
}

// result waits for the synthetic call to end.
func (c *synthCall) result(t testing.TB, d time.Duration) (*synth.Report, error) {
	t.Helper()
	select {
	case <-c.done:
		return c.rep, c.err
	case <-time.After(d):
		t.Fatalf("synthetic call %s still running after %v", c.id, d)
		return nil, nil
	}
}

func (b *browser) start(o synth.CallOptions, run func(ctx context.Context, sig synth.Signaller, o synth.CallOptions) (*synth.Report, error), onRecv func(signal.Message)) *synthCall {
	if o.CallID == "" {
		o.CallID = "c-" + ari.NewID()[3:15]
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(b.h.logs, nil)).With("component", "synth", "user", b.user)
	}
	ctx, cancel := context.WithCancel(b.h.ctx)
	c := &synthCall{id: o.CallID, done: make(chan struct{}), cancel: cancel}
	b.h.goTest(func() {
		defer close(c.done)
		defer cancel()
		c.rep, c.err = run(ctx, signaller{b: b, onRecv: onRecv}, o)
	})
	return c
}

// call places a synthetic call (media from the browser's side: a tone, recorded echo). onRecv, if given, sees
// each message before the synthetic call does.
func (b *browser) call(to string, o synth.CallOptions, onRecv ...func(signal.Message)) *synthCall {
	b.flush()
	o.To = to
	var hook func(signal.Message)
	if len(onRecv) > 0 {
		hook = onRecv[0]
	}
	return b.start(o, func(ctx context.Context, sig synth.Signaller, o synth.CallOptions) (*synth.Report, error) {
		return b.h.engine.Call(ctx, sig, o)
	}, hook)
}

// join joins a room with a synthetic call.
func (b *browser) join(j synth.JoinOptions, o synth.CallOptions) *synthCall {
	b.flush()
	return b.start(o, func(ctx context.Context, sig synth.Signaller, o synth.CallOptions) (*synth.Report, error) {
		return b.h.engine.Join(ctx, sig, j, o)
	}, nil)
}

// receive answers the next incoming call with a synthetic call.
func (b *browser) receive(o synth.CallOptions) *synthCall {
	return b.start(o, func(ctx context.Context, sig synth.Signaller, o synth.CallOptions) (*synth.Report, error) {
		return b.h.engine.Receive(ctx, sig, o)
	}, nil)
}

// rawCall sends a call whose offer no ICE will ever complete (its peer is gone): the server answers, and no media
// ever flows. It returns the call_id.
func (b *browser) rawCall(to string) string {
	b.h.t.Helper()
	id := "raw-" + ari.NewID()[3:15]
	b.send(signal.Message{Type: signal.TypeCall, CallID: id, To: to, SDP: deadOffer(b.h.t)})
	return id
}

// rawJoin is rawCall for a room join.
func (b *browser) rawJoin(room string) string {
	b.h.t.Helper()
	id := "raw-" + ari.NewID()[3:15]
	b.send(signal.Message{Type: signal.TypeJoin, CallID: id, Room: room, SDP: deadOffer(b.h.t)})
	return id
}

// deadOffer is a browser's audio offer whose peer connection is closed at once.
func deadOffer(t testing.TB) string {
	t.Helper()
	me := &pion.MediaEngine{}
	if err := me.RegisterCodec(media.PCMU.Codec(), pion.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	se := pion.SettingEngine{}
	se.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	api := pion.NewAPI(pion.WithMediaEngine(me), pion.WithSettingEngine(se), pion.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(pion.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(pion.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pion.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc.LocalDescription().SDP
}

// ---- logs ----

// logSink keeps the harness's logs, printed when a test fails (or streamed with PATCHBAY_TEST_LOG=1).
type logSink struct {
	mu     sync.Mutex
	b      strings.Builder
	stream io.Writer
}

func newLogSink() *logSink {
	s := &logSink{}
	if os.Getenv("PATCHBAY_TEST_LOG") != "" {
		s.stream = os.Stderr
	}
	return s
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream != nil {
		_, _ = s.stream.Write(p)
	}
	if s.b.Len() < 4<<20 {
		s.b.Write(p)
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	if len(out) > 64<<10 {
		out = "…" + out[len(out)-64<<10:]
	}
	return out
}

// deadAnswer answers an incoming call's offer from a peer connection that is closed at once: the answer is valid
// and no ICE check ever comes.
func deadAnswer(t testing.TB, offer string) string {
	t.Helper()
	me := &pion.MediaEngine{}
	if err := me.RegisterCodec(media.PCMU.Codec(), pion.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	if err := me.RegisterCodec(media.PCMA.Codec(), pion.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	se := pion.SettingEngine{}
	se.SetNetworkTypes([]pion.NetworkType{pion.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	api := pion.NewAPI(pion.WithMediaEngine(me), pion.WithSettingEngine(se), pion.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(pion.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pion.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc.LocalDescription().SDP
}

// firstSeen polls the fake until a new request matching method and pattern arrives and reports when it was first
// seen (never earlier than it happened; zero if not yet). It stops with the harness.
func (h *harness) firstSeen(method, pattern string) func() time.Time {
	var at atomic.Pointer[time.Time]
	base := h.fake.Count(method, pattern)
	h.goTest(func() {
		for h.ctx.Err() == nil {
			if h.fake.Count(method, pattern) > base {
				now := time.Now()
				at.Store(&now)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	return func() time.Time {
		if p := at.Load(); p != nil {
			return *p
		}
		return time.Time{}
	}
}
