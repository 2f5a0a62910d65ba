//go:build integration

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// obsDialplan adds test extensions to [internal] (reached from from-patchbay; exact matches win over _1XX): 190 rejects as busy, 191 answers
// and plays a tone for 2 s then sends nothing (Asterisk stops sending toward the browser), 192 answers in
// silence.
const obsDialplan = `
[internal](+)
exten => 190,1,NoOp(Reject as busy)
 same => n,Hangup(17)
exten => 191,1,NoOp(Tone for 2 s, then silence)
 same => n,Answer()
 same => n,Playtones(440)
 same => n,Wait(2)
 same => n,StopPlaytones()
 same => n,Wait(120)
exten => 192,1,NoOp(Answer in silence)
 same => n,Answer()
 same => n,Wait(120)
`

const obsAPIKey = "obs-test-key-0123456789abcdef"

// obsEnv is an Asterisk with the test extensions, a Patchbay with metrics, records in a file and an API key.
type obsEnv struct {
	ast     *testenv.Asterisk
	pb      *testenv.Patchbay
	eng     *synth.Engine
	http    *http.Client
	records string // the JSON-lines file
}

func newObsEnv(t *testing.T, edit func(*config.Config)) *obsEnv {
	t.Helper()
	e := &obsEnv{records: filepath.Join(t.TempDir(), "calls.jsonl")}
	e.ast = testenv.StartAsterisk(t, testenv.AsteriskOptions{Extra: map[string]string{"extensions.conf": obsDialplan}})
	e.pb = testenv.StartPatchbay(t, e.ast, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Auth.APIKeys = map[string]config.Secret{"test": obsAPIKey}
		c.Calls.Records.File = e.records
		c.Rooms.Grace = time.Second
		// 190-192 are dialplan extensions of this test, not phones: reach them through a Local channel.
		c.Calls.EndpointExtensions = []string{"_10X"}
		c.Calls.NoMediaTimeout = 4 * time.Second // the no-audio call ends sooner
		if edit != nil {
			edit(c)
		}
	}})
	var err error
	if e.eng, err = synth.NewEngine(synth.EngineOptions{LoopbackOnly: true}); err != nil {
		t.Fatal(err)
	}
	e.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: e.pb.TLS}}
	return e
}

func (e *obsEnv) dial(t *testing.T, ctx context.Context, user string, grants ...string) *signal.Conn {
	t.Helper()
	return e.pb.Dial(t, ctx, user, grants...)
}

// get fetches path (from the API with the key, or a plain URL) into out.
func (e *obsEnv) get(t *testing.T, url string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+obsAPIKey)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, b)
	}
}

// post calls the REST API and expects 201.
func (e *obsEnv) post(t *testing.T, path string, body, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", e.pb.BaseURL+"/api/v1"+path, strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+obsAPIKey)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
	}
}

// apiRecords returns the records GET /api/v1/calls lists.
func (e *obsEnv) apiRecords(t *testing.T, since time.Time) []cdr.Record {
	t.Helper()
	var out struct{ Calls []cdr.Record }
	e.get(t, e.pb.BaseURL+"/api/v1/calls?since="+since.UTC().Format(time.RFC3339), &out)
	return out.Calls
}

// waitRecords polls the records file until n records are there, and returns them.
func (e *obsEnv) waitRecords(t *testing.T, n int) []cdr.Record {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var recs []cdr.Record
		if f, err := os.Open(e.records); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				var r cdr.Record
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					t.Fatalf("records file has a line that is not a record: %v: %s", err, sc.Bytes())
				}
				recs = append(recs, r)
			}
			f.Close()
		}
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("records file has %d records, want %d", len(recs), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func byTo(recs []cdr.Record, to string) *cdr.Record {
	for i := range recs {
		if recs[i].To == to {
			return &recs[i]
		}
	}
	return nil
}

// TestMetricsDashboardAgainstPrometheus: a real Prometheus scrapes Patchbay and Asterisk's res_prometheus during
// a few calls, a refused call and a room; then every expression of the Grafana dashboard returns data, and the
// named families count what happened.
func TestMetricsDashboardAgainstPrometheus(t *testing.T) {
	e := newObsEnv(t, nil)
	prom := testenv.StartPrometheus(t,
		testenv.ScrapeTarget{Job: "patchbay", Addr: e.pb.Server.MetricsAddr().String(), Path: "/metrics"},
		testenv.ScrapeTarget{Job: "asterisk", Addr: fmt.Sprintf("127.0.0.1:%d", e.ast.HTTPPort), Path: "/metrics"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := prom.TargetsUp(ctx); err != nil {
		t.Fatal(err)
	}

	// Three echo calls at once, one refused call, and a room with two browsers.
	const calls = 3
	var wg sync.WaitGroup
	errs := make(chan error, calls+2)
	for i := range calls {
		conn := e.dial(t, ctx, fmt.Sprintf("caller%d", i), "ext")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "600", Duration: 3 * time.Second}); err != nil {
				errs <- fmt.Errorf("echo call %d: %w", i, err)
			}
		}()
	}
	refusedConn := e.dial(t, ctx, "refused", "ext")
	if _, err := e.eng.Call(ctx, refusedConn, synth.CallOptions{To: "+442079460000", Duration: time.Second}); err == nil {
		t.Error("a token without the pstn grant placed an outside call")
	}
	room := "obs-room"
	e.post(t, "/rooms", map[string]any{"id": room}, nil)
	for i := range 2 {
		var tok struct{ Token string }
		e.post(t, "/rooms/"+room+"/tokens", map[string]any{"user": fmt.Sprintf("member%d", i)}, &tok)
		conn, err := signal.Dial(ctx, e.pb.URL, tok.Token, signal.DialOptions{TLSConfig: e.pb.TLS})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.eng.Join(ctx, conn, synth.JoinOptions{Room: room}, synth.CallOptions{Duration: 3 * time.Second}); err != nil {
				errs <- fmt.Errorf("room member %d: %w", i, err)
			}
		}()
	}
	// While the calls run: rooms and participants are visible.
	waitQuery(t, ctx, prom, "patchbay_room_participants", func(v float64) bool { return v == 2 })
	waitQuery(t, ctx, prom, `sum(patchbay_calls_active{direction="browser_out"})`, func(v float64) bool { return v == calls })
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitQuery(t, ctx, prom, `sum(patchbay_calls_ended_total{direction="browser_out"})`, func(v float64) bool { return v == calls })

	for _, tc := range []struct {
		expr string
		want float64
	}{
		{`sum(patchbay_calls_started_total{direction="browser_out"})`, calls},
		{`sum(patchbay_calls_refused_total{code="forbidden_destination"})`, 1},
		{`sum(patchbay_call_setup_seconds_count{stage="answer_sent"})`, calls + 2}, // and the two room members
		{`sum(patchbay_call_setup_seconds_count{stage="far_answered"})`, calls},
		{`sum(patchbay_calls_active)`, 0},
	} {
		waitQuery(t, ctx, prom, tc.expr, func(v float64) bool { return v == tc.want })
	}
	if s, err := prom.Query(ctx, `sum(patchbay_media_packets_total{towards="to_browser"})`); err != nil || len(s) != 1 || s[0].Value < 100 {
		t.Errorf("packets toward browsers: %v %v", s, err)
	}
	// Every browser has an externalMedia channel (600 runs the dialplan itself: no dial request).
	if s, err := prom.Query(ctx, `sum(patchbay_ari_request_duration_seconds_count{route="POST /channels/externalMedia"})`); err != nil || len(s) != 1 || s[0].Value < calls+2 {
		t.Errorf("ARI externalMedia requests: %v %v", s, err)
	}

	// Every dashboard expression returns data.
	b, err := os.ReadFile("../../deploy/grafana/patchbay.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			// Rates need two scrapes of a series: poll briefly before calling an expression empty.
			expr := strings.ReplaceAll(tg.Expr, "$__rate_interval", "2m")
			n++
			deadline := time.Now().Add(10 * time.Second)
			for {
				s, err := prom.Query(ctx, expr)
				if err != nil {
					t.Errorf("panel %q: %v", p.Title, err)
					break
				}
				if len(s) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("panel %q: no data for %s", p.Title, expr)
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	}
	t.Logf("%d dashboard expressions checked", n)
}

// waitQuery polls an instant query until its single value satisfies ok.
func waitQuery(t *testing.T, ctx context.Context, prom *testenv.Prometheus, expr string, ok func(float64) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var last []testenv.Sample
	var err error
	for {
		last, err = prom.Query(ctx, expr)
		if err == nil && len(last) == 1 && ok(last[0].Value) {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("%s: last %v (err %v)", expr, last, err)
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// TestCallRecordKinds: records for a completed call, a refused call, a call the far end rejected and a call
// without audio, in the file and from GET /api/v1/calls.
func TestCallRecordKinds(t *testing.T) {
	e := newObsEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	since := time.Now().Add(-time.Second)
	conn := e.dial(t, ctx, "alice", "ext")

	if _, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "600", Duration: 2 * time.Second}); err != nil {
		t.Fatalf("echo call: %v", err)
	}
	if _, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "+442079460000"}); err == nil {
		t.Fatal("refused call went through")
	}
	rep, _ := e.eng.Call(ctx, conn, synth.CallOptions{To: "190", Duration: -1})
	if rep == nil || !hasHangup(rep) {
		t.Fatalf("rejected call: no hangup (%+v)", rep)
	}
	// No audio: the browser never sends; Patchbay never dials the far end and ends the call with no_audio after
	// calls.no_media_timeout.
	if _, err := e.eng.Call(ctx, conn, synth.CallOptions{To: "192", SendFor: -1, Duration: -1}); signal.ErrorCode(err) != wire.CodeNoAudio {
		t.Fatalf("silent call: %v, want no_audio", err)
	}

	recs := e.waitRecords(t, 4)
	ok := byTo(recs, "600")
	if ok == nil || ok.Direction != cdr.DirBrowserOut || ok.User != "alice" || ok.Cause != wire.CauseNormalClearing || ok.Code != 16 ||
		ok.SetupAnswerMS == nil || ok.SetupFirstMediaMS == nil || ok.SetupFarAnsweredMS == nil || ok.Codec != "PCMU/8000" ||
		ok.ToBrowser.Packets < 50 || ok.ToAsterisk.Packets < 50 || ok.DurationS < 1 || len(ok.Flags) != 0 || ok.Instance == "" {
		t.Errorf("completed call record: %+v", ok)
	}
	ref := byTo(recs, "+442079460000")
	if ref == nil || ref.Refusal != wire.CodeForbiddenDestination || ref.Cause != wire.CauseCallRejected || ref.CallID != "" {
		t.Errorf("refused call record: %+v", ref)
	}
	rej := byTo(recs, "190")
	if rej == nil || rej.Refusal != "" || rej.Code == 16 || rej.Cause == "" || !rej.FarAnsweredAt.IsZero() || rej.SetupFarAnsweredMS != nil {
		t.Errorf("far-end-rejected call record: %+v", rej)
	}
	silent := byTo(recs, "192")
	if silent == nil || !silent.Has(wire.QualityNoAudio) || silent.ToAsterisk.Packets != 0 || silent.Cause != wire.CauseMediaTimeout ||
		!silent.FarAnsweredAt.IsZero() {
		t.Errorf("no-audio call record: %+v", silent)
	}
	for _, r := range recs {
		b, _ := json.Marshal(r)
		t.Logf("record: %s", b)
	}

	api := e.apiRecords(t, since)
	if len(api) != 4 {
		t.Fatalf("GET /api/v1/calls listed %d records, want 4", len(api))
	}
	if later := e.apiRecords(t, time.Now().Add(time.Minute)); len(later) != 0 {
		t.Errorf("since in the future listed %d records", len(later))
	}
}

func hasHangup(r *synth.Report) bool {
	for _, ev := range r.Events {
		if ev.Type == signal.TypeHangup {
			return true
		}
	}
	return false
}

// TestOneWayAudio: a browser that stops sending mid-call, and an Asterisk side that stops sending toward the
// browser, each produce the quality message within 5 s of the silence, the metric and the record flag.
func TestOneWayAudio(t *testing.T) {
	e := newObsEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := e.dial(t, ctx, "bob", "ext")
	for _, tc := range []struct {
		name, to, towards string
		opts              synth.CallOptions
		silentFrom        func(r *synth.Report) time.Duration // when the silent direction stopped, since the offer
	}{
		{"browser stops sending", "603", wire.ToAsterisk, synth.CallOptions{To: "603", ExpectHz: 1000, SendFor: 2 * time.Second, Duration: 9 * time.Second},
			func(r *synth.Report) time.Duration { return r.ConnectedAfter + 2*time.Second }},
		{"nothing comes back from Asterisk", "191", wire.ToBrowser, synth.CallOptions{To: "191", ExpectHz: 440, Duration: 9 * time.Second},
			func(r *synth.Report) time.Duration { return eventAt(r, signal.TypeAnswered) + 2*time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := e.eng.Call(ctx, conn, tc.opts)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			var q *synth.Event
			for i := range rep.Events {
				if rep.Events[i].Type == signal.TypeQuality {
					q = &rep.Events[i]
				}
			}
			if q == nil || q.Issue != wire.QualityOneWayAudio || q.Direction != tc.towards {
				t.Fatalf("quality message %+v, want one_way_audio %s (events %+v)", q, tc.towards, rep.Events)
			}
			if after := q.At - tc.silentFrom(rep); after > 5*time.Second || after < 3*time.Second {
				t.Errorf("quality message %v after the silence began, want 4-5 s", after)
			} else {
				t.Logf("quality message %v after the silence began", after.Round(time.Millisecond))
			}
		})
	}
	recs := e.waitRecords(t, 2)
	for to, towards := range map[string]string{"603": wire.ToAsterisk, "191": wire.ToBrowser} {
		r := byTo(recs, to)
		if r == nil || !r.Has(wire.QualityOneWayAudio) || r.OneWay != towards || r.Has(wire.QualityNoAudio) {
			t.Errorf("record of the call to %s: %+v", to, r)
		}
	}
	body := scrape(t, e)
	for _, towards := range []string{wire.ToAsterisk, wire.ToBrowser} {
		want := `patchbay_quality_issues_total{direction="browser_out",issue="one_way_audio",towards="` + towards + `"} 1`
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func eventAt(r *synth.Report, typ string) time.Duration {
	for _, ev := range r.Events {
		if ev.Type == typ {
			return ev.At
		}
	}
	return 0
}

// scrape reads Patchbay's /metrics.
func scrape(t *testing.T, e *obsEnv) string {
	t.Helper()
	resp, err := http.Get("http://" + e.pb.Server.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestOneWayAudioOnPage, in Chromium and Firefox ESR: the page's call panel runs a timer, rates the call from
// getStats, and says in words that nothing comes back from the phone system when Asterisk stops sending. A
// screenshot goes to artifacts/ (call-panel-quality-<browser>.png).
func TestOneWayAudioOnPage(t *testing.T) {
	e := newObsEnv(t, loopbackPage)
	mic := filepath.Join(t.TempDir(), "mic.wav")
	if err := audio.WriteWAV(mic, audio.Sine(1000, 48000, 10*time.Second, 0.3), 48000); err != nil {
		t.Fatal(err)
	}
	testenv.EachBrowser(t, testenv.BrowserOptions{FakeMicWAV: mic, FakeToneHz: 1000, TrustCA: e.pb.CACert}, func(t *testing.T, b testenv.Browser) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		p := b.NewTab(t, "quality")
		if err := p.OpenPatchbay(ctx, e.pb, e.pb.Token(t, "carol", "ext"), nil); err != nil {
			t.Fatal(err)
		}
		if err := p.Type(ctx, "#number", "191"); err != nil {
			t.Fatal(err)
		}
		if err := p.Click(ctx, "#call"); err != nil {
			t.Fatal(err)
		}
		wait := func(what, cond string, d time.Duration) {
			t.Helper()
			if err := p.WaitFor(ctx, what, cond, d); err != nil {
				t.Fatal(err)
			}
		}
		wait("answered", `window.patchbayState.callState === "answered"`, 15*time.Second)
		wait("a quality rating", `["good","fair"].includes(window.patchbayState.quality) && document.getElementById("call-quality").dataset.level === window.patchbayState.quality`, 6*time.Second)
		wait("the timer running", `window.patchbayState.callSeconds >= 2 && /^00:0[2-9]$/.test(document.getElementById("call-timer").textContent)`, 5*time.Second)
		// 191 goes silent 2 s after answering; the server says so within 5 s and the page puts it in words.
		wait("the quality message in words", `window.patchbayState.qualityIssue === "one_way_audio" && window.patchbayState.qualityDirection === "to_browser" && !document.getElementById("call-notice").hidden && document.getElementById("call-notice").textContent.startsWith("You cannot hear the other side")`, 8*time.Second)
		wait("poor quality shown", `document.getElementById("call-quality").dataset.level === "poor"`, 3*time.Second)
		if err := p.Eval(ctx, `document.getElementById("in-call").scrollIntoView({block: "center"}), true`, nil); err != nil {
			t.Fatal(err)
		}
		shot, err := p.Screenshot(ctx, "call-panel-quality-"+b.BrowserName())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot of the call panel: %s", shot)
		if err := p.Click(ctx, "#hangup"); err != nil {
			t.Fatal(err)
		}
		wait("hung up", `window.patchbayState.callState === "ended"`, 10*time.Second)
		for _, m := range p.ConsoleErrors() {
			t.Errorf("console: %s", m)
		}
	})
}
