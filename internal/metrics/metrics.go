// Package metrics is Patchbay's Prometheus registry: every family an admin graphs or alerts on, with bounded
// labels (call direction, cause, code, stage, ARI route template; never a call ID). A *Metrics is a cdr.Observer,
// so call control feeds it the same events as the call records; the other parts (ARI client, Redis, SFU, limits,
// rooms, signalling) are wired to its small methods. A nil *Metrics is valid and does nothing: metrics off.
package metrics

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/wire"
)

// Namespace prefixes every Patchbay family.
const Namespace = "patchbay"

// Setup stages of the patchbay_call_setup_seconds histogram, each measured from the offer.
const (
	StageAnswerSent  = "answer_sent"  // Patchbay sent its SDP answer to the browser
	StageFirstMedia  = "first_media"  // the browser's first RTP packet arrived
	StageFarAnswered = "far_answered" // the far end answered
)

// Other is the label value for anything outside a label's known set, so a bug or a new name cannot blow up the
// number of series.
const Other = "other"

// Options configure the registry.
type Options struct {
	// Version is Patchbay's version for patchbay_build_info (default: the module version from the build info).
	Version string
}

// Metrics holds the registry and its families.
type Metrics struct {
	reg *prometheus.Registry

	callsActive          *prometheus.GaugeVec
	callsStarted         *prometheus.CounterVec
	callsEnded           *prometheus.CounterVec
	callsRefused         *prometheus.CounterVec
	setup                *prometheus.HistogramVec
	mediaPackets         *prometheus.CounterVec
	mediaBytes           *prometheus.CounterVec
	mediaDrops           *prometheus.CounterVec
	browserLoss          *prometheus.HistogramVec
	browserJitter        *prometheus.HistogramVec
	browserRTT           *prometheus.HistogramVec
	quality              *prometheus.CounterVec
	ariDuration          *prometheus.HistogramVec
	ariErrors            *prometheus.CounterVec
	ariReconnects        prometheus.Counter
	sweeps               *prometheus.CounterVec
	redisErrors          *prometheus.CounterVec
	videoTracks          prometheus.Gauge
	keyframeRequests     prometheus.Counter
	limitTrips           *prometheus.CounterVec
	byDir                map[string]*dirSeries // pre-resolved per-direction series: Media runs every second per call
	knownCauses, knownCd map[string]bool
}

// dirSeries are one direction's media counters, resolved once so the per-second path does no label hashing.
type dirSeries struct {
	pktB, pktA, byteB, byteA, dropB, dropA prometheus.Counter
}

// New builds the registry with every family, Go runtime and process collectors, and build info.
func New(o Options) *Metrics {
	reg := prometheus.NewRegistry()
	f := factory{reg}
	m := &Metrics{reg: reg}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	version, revision := buildVersion()
	if o.Version != "" {
		version = o.Version
	}
	f.gauge("build_info", "Patchbay's version, VCS revision and Go version; always 1.",
		[]string{"version", "revision", "goversion"}).WithLabelValues(version, revision, runtime.Version()).Set(1)

	m.callsActive = f.gauge("calls_active", "Calls in progress, by direction.", []string{"direction"})
	m.callsStarted = f.counter("calls_started_total", "Calls admitted, by direction.", []string{"direction"})
	m.callsEnded = f.counter("calls_ended_total", "Calls ended, by direction and hangup cause.", []string{"direction", "cause"})
	m.callsRefused = f.counter("calls_refused_total", "Calls refused before they started, by direction and error code.", []string{"direction", "code"})
	m.setup = f.histogram("call_setup_seconds",
		"Call setup latency from the offer to each stage (answer_sent, first_media from the browser, far_answered), by direction.",
		[]string{"direction", "stage"}, []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30})
	m.mediaPackets = f.counter("media_packets_total", "RTP packets the relay forwarded, by call direction and media direction (to_browser, to_asterisk).", []string{"direction", "towards"})
	m.mediaBytes = f.counter("media_bytes_total", "RTP bytes the relay forwarded, by call direction and media direction.", []string{"direction", "towards"})
	m.mediaDrops = f.counter("media_relay_drops_total", "RTP packets the relay dropped (bad, stale or unwritable), by call direction and media direction.", []string{"direction", "towards"})
	m.browserLoss = f.histogram("browser_loss_ratio", "Fraction of packets lost on the browser leg (RTCP receiver reports), one observation per call.",
		[]string{"direction"}, []float64{0, .001, .005, .01, .02, .05, .1, .2, .5})
	m.browserJitter = f.histogram("browser_jitter_seconds", "Interarrival jitter on the browser leg (RTCP), one observation per call.",
		[]string{"direction"}, []float64{.001, .0025, .005, .01, .02, .03, .05, .1, .2})
	m.browserRTT = f.histogram("browser_rtt_seconds", "Round-trip time of the browser leg (RTCP), one observation per call.",
		[]string{"direction"}, []float64{.005, .01, .025, .05, .1, .15, .2, .3, .5, 1})
	m.quality = f.counter("quality_issues_total", "Quality issues detected (one_way_audio, no_audio), by call direction and silent media direction.", []string{"direction", "issue", "towards"})
	m.ariDuration = f.histogram("ari_request_duration_seconds", "ARI REST request latency by route template (e.g. \"POST /channels/{id}/dial\").",
		[]string{"route"}, []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5})
	m.ariErrors = f.counter("ari_request_errors_total", "ARI REST requests that failed, by route template and status (HTTP code, or \"transport\").", []string{"route", "status"})
	m.ariReconnects = f.counter("ari_reconnects_total", "Times the ARI events WebSocket was reconnected after a loss.", nil).WithLabelValues()
	m.sweeps = f.counter("ari_swept_total", "Orphaned Asterisk resources (channels, bridges) Patchbay cleaned up, by kind.", []string{"kind"})
	m.redisErrors = f.counter("redis_errors_total", "Redis commands that failed (not counting a missing key), by command.", []string{"command"})
	m.videoTracks = f.gauge("sfu_video_tracks", "Browser cameras being forwarded by the SFU.", nil).WithLabelValues()
	m.keyframeRequests = f.counter("sfu_keyframe_requests_total", "Key-frame requests (PLI) sent to browser cameras.", nil).WithLabelValues()
	m.limitTrips = f.counter("limit_trips_total", "Calls a limit refused, by scope (token, api_key, phone) and code.", []string{"scope", "code"})

	m.knownCauses = map[string]bool{}
	for _, c := range wire.Causes() {
		m.knownCauses[c] = true
	}
	m.knownCd = map[string]bool{}
	for _, c := range wire.Codes {
		m.knownCd[c] = true
	}
	m.byDir = map[string]*dirSeries{}
	for _, d := range append(cdr.Directions(), Other) {
		m.byDir[d] = &dirSeries{
			pktB: m.mediaPackets.WithLabelValues(d, wire.ToBrowser), pktA: m.mediaPackets.WithLabelValues(d, wire.ToAsterisk),
			byteB: m.mediaBytes.WithLabelValues(d, wire.ToBrowser), byteA: m.mediaBytes.WithLabelValues(d, wire.ToAsterisk),
			dropB: m.mediaDrops.WithLabelValues(d, wire.ToBrowser), dropA: m.mediaDrops.WithLabelValues(d, wire.ToAsterisk),
		}
	}
	// Families with labels appear on /metrics only once a series exists: make the common ones exist at zero, so
	// dashboards and rate() see them from the first scrape.
	for _, d := range cdr.Directions() {
		m.callsActive.WithLabelValues(d)
		m.callsStarted.WithLabelValues(d)
		m.callsEnded.WithLabelValues(d, wire.CauseNormalClearing)
		for _, st := range []string{StageAnswerSent, StageFirstMedia, StageFarAnswered} {
			m.setup.WithLabelValues(d, st)
		}
	}
	return m
}

// factory registers families under the namespace.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string, labels []string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string, labels []string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, labels []string, buckets []float64) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

func buildVersion() (version, revision string) {
	version, revision = "devel", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			version = v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				revision = s.Value[:12]
			}
		}
	}
	return version, revision
}

// Registry is the registry, for tests and for collectors added in the wiring.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text (or OpenMetrics) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// GaugeFunc registers a gauge read at each scrape (signalling sessions, rooms, participants: counts another
// part already keeps). name is without the namespace.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, f))
}

// CounterFunc registers a counter read at each scrape from a count another part keeps (e.g. call records
// dropped). name is without the namespace and should end in _total.
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, f))
}

func (m *Metrics) dir(d string) string {
	if cdr.ValidDirection(d) {
		return d
	}
	return Other
}

func (m *Metrics) cause(c string) string {
	if m.knownCauses[c] {
		return c
	}
	return Other
}

func (m *Metrics) code(c string) string {
	if m.knownCd[c] {
		return c
	}
	return Other
}

// CallStarted implements cdr.Observer.
func (m *Metrics) CallStarted(direction string) {
	if m == nil {
		return
	}
	d := m.dir(direction)
	m.callsStarted.WithLabelValues(d).Inc()
	m.callsActive.WithLabelValues(d).Inc()
}

// CallRefused implements cdr.Observer.
func (m *Metrics) CallRefused(direction, code string) {
	if m == nil {
		return
	}
	m.callsRefused.WithLabelValues(m.dir(direction), m.code(code)).Inc()
}

// CallEnded implements cdr.Observer: the ended counter, the active gauge, and the setup and browser-leg
// histograms from the record. A refused call's record only counted in CallRefused.
func (m *Metrics) CallEnded(r cdr.Record) {
	if m == nil || r.Refused() {
		return
	}
	d := m.dir(r.Direction)
	cause := r.Cause
	if cause == "" {
		cause = wire.CauseNormalClearing
	}
	m.callsEnded.WithLabelValues(d, m.cause(cause)).Inc()
	m.callsActive.WithLabelValues(d).Dec()
	obs := func(stage string, ms *float64) {
		if ms != nil {
			m.setup.WithLabelValues(d, stage).Observe(*ms / 1000)
		}
	}
	obs(StageAnswerSent, r.SetupAnswerMS)
	obs(StageFirstMedia, r.SetupFirstMediaMS)
	obs(StageFarAnswered, r.SetupFarAnsweredMS)
	if b := r.Browser; b != nil {
		m.browserLoss.WithLabelValues(d).Observe(b.Loss)
		m.browserJitter.WithLabelValues(d).Observe(b.JitterMS / 1000)
		if b.RTTMS > 0 {
			m.browserRTT.WithLabelValues(d).Observe(b.RTTMS / 1000)
		}
	}
}

// Media implements cdr.Observer.
func (m *Metrics) Media(direction string, toBrowser, toAsterisk cdr.MediaDelta) {
	if m == nil {
		return
	}
	s := m.byDir[m.dir(direction)]
	addIf(s.pktB, toBrowser.Packets)
	addIf(s.byteB, toBrowser.Bytes)
	addIf(s.dropB, toBrowser.Drops)
	addIf(s.pktA, toAsterisk.Packets)
	addIf(s.byteA, toAsterisk.Bytes)
	addIf(s.dropA, toAsterisk.Drops)
}

func addIf(c prometheus.Counter, n uint64) {
	if n > 0 {
		c.Add(float64(n))
	}
}

// Quality implements cdr.Observer.
func (m *Metrics) Quality(direction, issue, towards string) {
	if m == nil {
		return
	}
	if issue != wire.QualityOneWayAudio && issue != wire.QualityNoAudio {
		issue = Other
	}
	if !slices.Contains([]string{wire.ToBrowser, wire.ToAsterisk, cdr.BothDirections}, towards) {
		towards = Other
	}
	m.quality.WithLabelValues(m.dir(direction), issue, towards).Inc()
}

// ObserveARI records one ARI REST request; it has ari.Config.Observe's signature. route must be a template
// (ari.Route makes one); status is the HTTP status, 0 for a transport error.
func (m *Metrics) ObserveARI(method, route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	r := method + " " + route
	m.ariDuration.WithLabelValues(r).Observe(d.Seconds())
	switch {
	case status == 0:
		m.ariErrors.WithLabelValues(r, "transport").Inc()
	case status >= 400:
		m.ariErrors.WithLabelValues(r, strconv.Itoa(status)).Inc()
	}
}

// ARIReconnect counts one reconnect of the ARI events socket (call it when a lost socket is back).
func (m *Metrics) ARIReconnect() {
	if m == nil {
		return
	}
	m.ariReconnects.Inc()
}

// Sweep counts n orphaned Asterisk resources of kind ("channel", "bridge") that a sweep cleaned up.
func (m *Metrics) Sweep(kind string, n int) {
	if m == nil || n <= 0 {
		return
	}
	if kind != "channel" && kind != "bridge" {
		kind = Other
	}
	m.sweeps.WithLabelValues(kind).Add(float64(n))
}

// RedisError counts one failed Redis command (its name, e.g. "get"; a pipeline is "pipeline").
func (m *Metrics) RedisError(command string) {
	if m == nil {
		return
	}
	if len(command) > 32 {
		command = Other
	}
	m.redisErrors.WithLabelValues(command).Inc()
}

// VideoTrack adds delta (+1 when a camera starts being forwarded, -1 when it stops) to the SFU track gauge.
func (m *Metrics) VideoTrack(delta int) {
	if m == nil {
		return
	}
	m.videoTracks.Add(float64(delta))
}

// KeyframeRequest counts one PLI sent to a camera.
func (m *Metrics) KeyframeRequest() {
	if m == nil {
		return
	}
	m.keyframeRequests.Inc()
}

// LimitTrip counts one call refused by a limit: scope is "token", "api_key" or "phone"; code the wire code.
func (m *Metrics) LimitTrip(scope, code string) {
	if m == nil {
		return
	}
	if scope != "token" && scope != "api_key" && scope != "phone" {
		scope = Other
	}
	m.limitTrips.WithLabelValues(scope, m.code(code)).Inc()
}

var _ cdr.Observer = (*Metrics)(nil)
