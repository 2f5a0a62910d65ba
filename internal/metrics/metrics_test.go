package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/wire"
)

func ms(v float64) *float64 { return &v }

func TestCallFamilies(t *testing.T) {
	m := New(Options{Version: "v1.2.3"})
	m.CallStarted(cdr.DirBrowserOut)
	m.CallStarted(cdr.DirBrowserOut)
	m.CallStarted("bogus")
	m.CallRefused(cdr.DirBrowserOut, wire.CodeForbiddenDestination)
	m.CallRefused(cdr.DirAPI, "made-up")
	m.CallEnded(cdr.Record{Refusal: wire.CodeForbiddenDestination, Direction: cdr.DirBrowserOut}) // counted by CallRefused only
	m.CallEnded(cdr.Record{Direction: cdr.DirBrowserOut, Cause: wire.CauseUserBusy, SetupAnswerMS: ms(12), SetupFirstMediaMS: ms(40),
		Browser: &cdr.LegQuality{Loss: 0.01, JitterMS: 3, RTTMS: 20}})
	m.Media(cdr.DirBrowserOut, cdr.MediaDelta{Packets: 50, Bytes: 8600}, cdr.MediaDelta{Packets: 49, Bytes: 8428, Drops: 1})
	m.Quality(cdr.DirBrowserOut, wire.QualityOneWayAudio, wire.ToBrowser)
	m.ObserveARI("POST", "/channels/{id}/dial", 204, 2*time.Millisecond)
	m.ObserveARI("POST", "/channels/{id}/dial", 404, time.Millisecond)
	m.ObserveARI("GET", "/asterisk/info", 0, time.Second)
	m.ARIReconnect()
	m.Sweep("channel", 3)
	m.Sweep("weird", 1)
	m.RedisError("get")
	m.VideoTrack(1)
	m.KeyframeRequest()
	m.LimitTrip("token", wire.CodeTooManyCalls)
	m.GaugeFunc("signalling_sessions", "Open signalling WebSockets.", func() float64 { return 7 })

	for _, tc := range []struct {
		got  float64
		want float64
		what string
	}{
		{testutil.ToFloat64(m.callsStarted.WithLabelValues(cdr.DirBrowserOut)), 2, "started browser_out"},
		{testutil.ToFloat64(m.callsStarted.WithLabelValues(Other)), 1, "started other"},
		{testutil.ToFloat64(m.callsActive.WithLabelValues(cdr.DirBrowserOut)), 1, "active browser_out"},
		{testutil.ToFloat64(m.callsEnded.WithLabelValues(cdr.DirBrowserOut, wire.CauseUserBusy)), 1, "ended user_busy"},
		{testutil.ToFloat64(m.callsRefused.WithLabelValues(cdr.DirBrowserOut, wire.CodeForbiddenDestination)), 1, "refused"},
		{testutil.ToFloat64(m.callsRefused.WithLabelValues(cdr.DirAPI, Other)), 1, "refused other code"},
		{testutil.ToFloat64(m.mediaPackets.WithLabelValues(cdr.DirBrowserOut, wire.ToBrowser)), 50, "packets to browser"},
		{testutil.ToFloat64(m.mediaDrops.WithLabelValues(cdr.DirBrowserOut, wire.ToAsterisk)), 1, "drops to asterisk"},
		{testutil.ToFloat64(m.quality.WithLabelValues(cdr.DirBrowserOut, wire.QualityOneWayAudio, wire.ToBrowser)), 1, "quality"},
		{testutil.ToFloat64(m.ariErrors.WithLabelValues("POST /channels/{id}/dial", "404")), 1, "ari 404"},
		{testutil.ToFloat64(m.ariErrors.WithLabelValues("GET /asterisk/info", "transport")), 1, "ari transport"},
		{testutil.ToFloat64(m.ariReconnects), 1, "reconnects"},
		{testutil.ToFloat64(m.sweeps.WithLabelValues("channel")), 3, "sweeps"},
		{testutil.ToFloat64(m.sweeps.WithLabelValues(Other)), 1, "sweeps other"},
		{testutil.ToFloat64(m.limitTrips.WithLabelValues("token", wire.CodeTooManyCalls)), 1, "limit trips"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.setup); n != 3*len(cdr.Directions()) {
		t.Errorf("setup series %d, want every direction and stage from the start", n)
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`patchbay_build_info{goversion="go`, `version="v1.2.3"`, `patchbay_signalling_sessions 7`,
		`patchbay_calls_active{direction="room"} 0`, `patchbay_call_setup_seconds_bucket{direction="browser_out",stage="answer_sent",le="0.025"} 1`,
		`patchbay_browser_rtt_seconds_count{direction="browser_out"} 1`, `go_goroutines`, `process_cpu_seconds_total`,
		`patchbay_sfu_video_tracks 1`, `patchbay_redis_errors_total{command="get"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(body), "bogus") || strings.Contains(string(body), "made-up") {
		t.Error("an unknown label value reached /metrics")
	}
}

func TestNilMetricsIsOff(t *testing.T) {
	var m *Metrics
	var o cdr.Observer = m
	o.CallStarted(cdr.DirRoom)
	o.CallRefused(cdr.DirRoom, wire.CodeUnavailable)
	o.CallEnded(cdr.Record{})
	o.Media(cdr.DirRoom, cdr.MediaDelta{Packets: 1}, cdr.MediaDelta{})
	o.Quality(cdr.DirRoom, wire.QualityNoAudio, cdr.BothDirections)
	m.ObserveARI("GET", "/x", 200, 0)
	m.ARIReconnect()
	m.Sweep("channel", 1)
	m.RedisError("get")
	m.VideoTrack(1)
	m.KeyframeRequest()
	m.LimitTrip("token", wire.CodeTooManyCalls)
	m.GaugeFunc("x", "y", func() float64 { return 0 })
	m.CounterFunc("y_total", "z", func() float64 { return 0 })
}

// BenchmarkMedia is the per-call, per-second cost metrics add to a running call.
func BenchmarkMedia(b *testing.B) {
	m := New(Options{})
	d := cdr.MediaDelta{Packets: 50, Bytes: 8600}
	for b.Loop() {
		m.Media(cdr.DirBrowserOut, d, d)
	}
}

// BenchmarkCallMinute is the metrics work of one call lasting a minute: started, the ARI requests of a typical
// setup and teardown, 60 per-second media deltas, ended. Against the CPU a call-minute costs Patchbay
// (docs/benchmarks.md) it bounds what metrics add, free of the run-to-run noise of an end-to-end bench.
func BenchmarkCallMinute(b *testing.B) {
	m := New(Options{Version: "bench"})
	rec := cdr.Record{Direction: cdr.DirBrowserOut, Cause: wire.CauseNormalClearing, SetupAnswerMS: ms(12),
		SetupFirstMediaMS: ms(40), SetupFarAnsweredMS: ms(60), Browser: &cdr.LegQuality{Loss: 0.01, JitterMS: 3, RTTMS: 20}}
	routes := []string{"/channels/externalMedia", "/channels/{id}/variable", "/channels/{id}/continue",
		"/channels/{id}", "/channels/{id}/dial", "/bridges/{id}"}
	b.ReportAllocs()
	for b.Loop() {
		m.CallStarted(cdr.DirBrowserOut)
		for _, r := range routes {
			m.ObserveARI("POST", r, 204, 2*time.Millisecond)
		}
		for range 60 {
			m.Media(cdr.DirBrowserOut, cdr.MediaDelta{Packets: 50, Bytes: 8600}, cdr.MediaDelta{Packets: 50, Bytes: 8600})
		}
		m.CallEnded(rec)
	}
}

// BenchmarkScrape is one scrape of /metrics with every call family populated, as Prometheus makes every 15 s; its
// cost is shared by all the calls of the node.
func BenchmarkScrape(b *testing.B) {
	m := New(Options{Version: "bench"})
	for _, d := range cdr.Directions() {
		m.CallStarted(d)
		m.CallRefused(d, wire.CodeForbiddenDestination)
		m.Media(d, cdr.MediaDelta{Packets: 50, Bytes: 8600}, cdr.MediaDelta{Packets: 50, Bytes: 8600})
		m.CallEnded(cdr.Record{Direction: d, Cause: wire.CauseNormalClearing, SetupAnswerMS: ms(12), SetupFirstMediaMS: ms(40),
			SetupFarAnsweredMS: ms(60), Browser: &cdr.LegQuality{Loss: 0.01, JitterMS: 3, RTTMS: 20}})
	}
	h := m.Handler()
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		if w.Code != 200 {
			b.Fatalf("scrape: %d", w.Code)
		}
	}
}
