package bench

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/tools/synth"
)

func TestPercentileNearestRank(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // unsorted on purpose: Distribution sorts
	}
	cases := []struct {
		name          string
		in            []time.Duration
		p50, p99, max time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one", ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{"two", ms(2, 1), 1 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond},
		{"hundred", ms(hundred...), 50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond},
	}
	for _, c := range cases {
		d := Distribution(c.in)
		if d.N != len(c.in) || d.P50 != c.p50 || d.P99 != c.p99 || d.Max != c.max {
			t.Errorf("%s: got %+v, want p50 %v p99 %v max %v", c.name, d, c.p50, c.p99, c.max)
		}
	}
	if in := ms(3, 1, 2); Distribution(in).P50 != 2*time.Millisecond || in[0] != 3*time.Millisecond {
		t.Errorf("Distribution must not reorder its input: %v", in)
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and a ')' must not shift the fields.
	stat := "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 12 0 100 1000000 500 " +
		"18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0"
	got, err := ParseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3250 * time.Millisecond; got != want { // (250+75) ticks of 10 ms
		t.Errorf("CPU %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 ten 12"} {
		if _, err := ParseStatCPU(bad); err == nil {
			t.Errorf("ParseStatCPU(%q): no error", bad)
		}
	}
}

func TestParseStatusRSS(t *testing.T) {
	status := "Name:\tasterisk\nVmPeak:\t 900000 kB\nVmRSS:\t   53248 kB\nThreads:\t80\n"
	got, err := ParseStatusRSS(status)
	if err != nil || got != 53248*1024 {
		t.Errorf("RSS %d, %v; want %d", got, err, 53248*1024)
	}
	if _, err := ParseStatusRSS("Name:\tkthreadd\n"); err == nil {
		t.Error("no VmRSS line: no error")
	}
	if _, err := ParseStatusRSS("VmRSS:\t12 MB\n"); err == nil {
		t.Error("unexpected unit: no error")
	}
}

func TestParseStatusCPUs(t *testing.T) {
	if n := ParseStatusCPUs("Name:\tx\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n"); n != 2 {
		t.Errorf("CPUs %d, want 2", n)
	}
	if n := ParseStatusCPUs("Name:\tx\n"); n != 0 {
		t.Errorf("no list: CPUs %d, want 0", n)
	}
}

func TestParseHostBusy(t *testing.T) {
	stat := "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n"
	got, err := ParseHostBusy(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1610 * time.Millisecond; got != want { // 100+5+50+3+2+1 ticks
		t.Errorf("busy %v, want %v", got, want)
	}
	if _, err := ParseHostBusy("intr 1 2 3\n"); err == nil {
		t.Error("no cpu line: no error")
	}
}

func TestParseAnswered(t *testing.T) {
	log := strings.Join([]string{
		`time=2026-11-21T09:33:06.480Z level=INFO msg="outgoing call" component=calls to=600`,
		`time=2026-11-21T09:33:06.488Z level=INFO msg=answered component=calls to=600 after=8ms`,
		`time=2026-11-21T09:33:06.489Z level=INFO msg="call ended" reason=normal duration=3s`,
		`{"time":"2026-11-21T09:33:07Z","level":"INFO","msg":"answered","after":12000000}`,
		`{"time":"2026-11-21T09:33:07Z","level":"INFO","msg":"answered","after":"1.5ms"}`,
		`{"time":"2026-11-21T09:33:07Z","level":"INFO","msg":"call ended","after":5}`,
		`not a log line`,
	}, "\n")
	got, err := ParseAnswered(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{8 * time.Millisecond, 12 * time.Millisecond, 1500 * time.Microsecond}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestParseRecordAnswers(t *testing.T) {
	recs := strings.Join([]string{
		`{"call_id":"a","direction":"browser_out","setup_answer_ms":12.5,"setup_far_answered_ms":230}`,
		`{"call_id":"b","direction":"browser_out","refusal":"forbidden_destination"}`,
		`not a record`,
		`{"call_id":"c","direction":"browser_out","setup_answer_ms":14}`,
	}, "\n")
	got, err := ParseRecordAnswers(strings.NewReader(recs))
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{12500 * time.Microsecond, 14 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestParseCPUList(t *testing.T) {
	got, err := ParseCPUList("0,2-3")
	if err != nil || len(got) != 3 || got[0] != 0 || got[1] != 2 || got[2] != 3 {
		t.Errorf("ParseCPUList(0,2-3) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "a", "3-1", "-1", ","} {
		if _, err := ParseCPUList(bad); err == nil {
			t.Errorf("ParseCPUList(%q): no error", bad)
		}
	}
}

func TestRequireLoopback(t *testing.T) {
	for _, ok := range []string{"wss://127.0.0.1:8443/ws", "http://127.0.0.1:8088", "wss://[::1]:1/ws"} {
		if err := requireLoopback("x", ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"wss://10.0.0.1:8443/ws", "wss://192.0.2.7/ws", "not a url", ""} {
		if err := requireLoopback("x", bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestFormatTable(t *testing.T) {
	r := &Result{
		Calls: 200, BaselineCalls: 20, ServerBusy: 0.95, LoadBusy: 0.5, Rate: 20, Steady: time.Minute,
		InWindow: 200, BaselineInWindow: 20,
		Answer:       Dist{N: 200, P50: 9 * time.Millisecond, P99: 30 * time.Millisecond},
		ServerAnswer: Dist{N: 200, P50: 20 * time.Millisecond, P99: 40 * time.Millisecond},
		FirstEcho:    Dist{N: 200, P50: 215 * time.Millisecond, P99: 260 * time.Millisecond},
		RTT:          Dist{N: 1000, P50: 800 * time.Microsecond, P99: 2500 * time.Millisecond / 1000},
		BaselineRTT:  Dist{N: 100, P50: 400 * time.Microsecond, P99: 2 * time.Millisecond},
		Sent:         600000, Unechoed: 0, WindowSent: 540000, BaselineSent: 60000,
		CPU:           map[string]time.Duration{"patchbay": 10 * time.Second, "asterisk": 12 * time.Second, "load": 30 * time.Second},
		CPUPerCallMin: map[string]float64{"patchbay": 0.05, "asterisk": 0.055, "load": 0.15},
		RSSPerCall:    map[string]int64{"patchbay": 200 << 10, "asterisk": 130 << 10, "load": 400 << 10},
	}
	var buf bytes.Buffer
	if err := FormatTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"200 calls (+20 baseline",
		"Patchbay+Asterisk 95 % of their CPUs, load generator 50 %", "SATURATED",
		"p50 9.00 ms p99 30.0 ms",
		"p50 ≤ 15 ms at 150 calls (server side) (judged at 150)",
		"p50 +0.40 ms (×2.0) p99 +0.50 ms (×1.2)",
		"added p99 ≤ 1 ms at 100 calls (judged at 100)",
		"0.000 % (0 of 600000)",
		"0.105", "≤ 0.8× native: --compare",
		"200 KiB", "330 KiB", "≤ 0.5× native: --compare",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, stale := range []string{"below native", "host speed", "≤ 0.07", "≤ 300 KiB"} {
		if strings.Contains(out, stale) {
			t.Errorf("table prints a goal issue 9 replaced (%q):\n%s", stale, out)
		}
	}
	// A goal set for one N is judged in a run of that N.
	r.Calls, r.InWindow = 150, 150
	buf.Reset()
	if err := FormatTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	if want := "p50 ≤ 15 ms at 150 calls (server side) MISSED by 5.00 ms"; !strings.Contains(buf.String(), want) {
		t.Errorf("table at 150 calls lacks %q:\n%s", want, buf.String())
	}
	// Every row has the same column starts (tabwriter alignment): the header's "Patchbay" column lines up.
	lines := strings.Split(out, "\n")
	var col int
	for _, l := range lines {
		if strings.HasPrefix(l, "metric") {
			col = strings.Index(l, "Patchbay")
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "CPU-s/call-min Patchbay ") && strings.Index(l, "0.050") != col {
			t.Errorf("misaligned row %q (want column %d)", l, col)
		}
	}
}

// TestCompare: native and Patchbay runs of several N side by side, with ratios to native, goals and the clean
// capacity of each mode.
func TestCompare(t *testing.T) {
	mk := func(mode string, n int, ast, pb float64, p99 time.Duration, lost uint64) *Result {
		r := &Result{Mode: mode, Calls: n, InWindow: n, Sent: 1000, Unechoed: lost, WindowSent: 900, WindowUnechoed: lost,
			RTT:             Dist{N: 100, P50: time.Millisecond, P99: p99},
			CPUPerCallMin:   map[string]float64{"asterisk": ast},
			RSSPerCall:      map[string]int64{"asterisk": 1000 << 10},
			ChannelsPerCall: 1, BridgesPerCall: 0, ServerBusy: 0.5, LoadBusy: 0.3}
		if mode != "native" {
			r.CPUPerCallMin["patchbay"] = pb
			r.RSSPerCall["patchbay"] = 200 << 10
			r.RSSPerCall["asterisk"] = 300 << 10
			r.PacketOpMicros = 10
		}
		return r
	}
	rs := []*Result{
		mk("native", 50, 0.3, 0, 3*time.Millisecond, 0), mk("patchbay", 50, 0.1, 0.1, 2*time.Millisecond, 0),
		mk("native", 150, 0.3, 0, 40*time.Millisecond, 5), mk("patchbay", 150, 0.1, 0.1, 4*time.Millisecond, 0),
	}
	var b strings.Builder
	if err := Compare(&b, rs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"N=50", "N=150", "0.67×", "≤ 0.8× met", "500 KiB", "0.50×", "≤ 12 met"} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q:\n%s", want, out)
		}
	}
	// Native is clean at 50 only, Patchbay at 150: 3× the calls.
	if !strings.Contains(out, "3.00×") || !strings.Contains(out, "≥ 1.3× met") {
		t.Errorf("capacity row wrong:\n%s", out)
	}
}

func TestCompareCodecs(t *testing.T) {
	mk := func(codec string, ast, pb float64, p50 time.Duration, lookahead time.Duration) *Result {
		return &Result{Mode: "patchbay-b2b-" + codec, Codec: codec, Pairs: true, Calls: 20, InWindow: 20, Sent: 1000,
			RTT: Dist{N: 100, P50: p50, P99: p50 + time.Millisecond}, CodecDelay: lookahead,
			CPUPerCallMin: map[string]float64{"asterisk": ast, "patchbay": pb}, RSSPerCall: map[string]int64{"asterisk": 100 << 10, "patchbay": 100 << 10}}
	}
	var b strings.Builder
	if err := CompareCodecs(&b, []*Result{mk("pcmu", 0.1, 0.1, 4*time.Millisecond, 0), mk("opus", 0.2, 0.1, 24*time.Millisecond, 6500*time.Microsecond),
		{Mode: "patchbay", Calls: 20}}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	// CPU 0.3 against 0.2; one way: (24-4)/2 = 10 ms of path plus 6.5 ms of lookahead.
	for _, want := range []string{"N=20", "1.50×", "+16.5 ms (path +10.0 ms + encoder lookahead 6.50 ms)"} {
		if !strings.Contains(out, want) {
			t.Errorf("codec comparison lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := CompareCodecs(&b, []*Result{{Mode: "patchbay", Calls: 20}}); err != nil || b.Len() != 0 {
		t.Errorf("no pair runs: wrote %q (%v)", b.String(), err)
	}
}

// TestWindowKeepsEchoesByArrival: the window's RTTs are those of echoes that arrived in it, by their recorded
// arrival, even when frames were lost before (dating echoes by their index would shift the window).
func TestWindowKeepsEchoesByArrival(t *testing.T) {
	start := time.Unix(1000, 0)
	ms := time.Millisecond
	// Echoes at 0, 20, then (after 10 lost frames) 240 and 260 ms; only the last two arrive in [200 ms, 300 ms).
	rep := &synth.Report{Start: start, FirstEchoAfter: 1, ConnectedAfter: 1, Duration: time.Second,
		RTTs: []time.Duration{1 * ms, 2 * ms, 30 * ms, 40 * ms}, EchoAt: []time.Duration{0, 20 * ms, 240 * ms, 260 * ms}}
	w := window{from: start.Add(200 * ms), to: start.Add(300 * ms)}
	r := summarize(Options{Calls: 1}, []callOutcome{{rep: rep}}, nil, w, nil, nil, nil)
	if r.RTT.N != 2 || r.RTT.P50 != 30*ms || r.RTT.Max != 40*ms {
		t.Errorf("window RTT %+v, want the two echoes that arrived in it (30 and 40 ms)", r.RTT)
	}
}
