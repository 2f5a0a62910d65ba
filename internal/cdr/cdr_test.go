package cdr

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/wire"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func TestFinish(t *testing.T) {
	r := Record{
		CallID: "c1", Direction: DirBrowserOut, Cause: wire.CauseUserBusy,
		OfferAt: t0, AnswerSentAt: t0.Add(12 * time.Millisecond), FirstMediaAt: t0.Add(40 * time.Millisecond),
		FarAnsweredAt: t0.Add(2 * time.Second), EndAt: t0.Add(62 * time.Second),
		ToBrowser: MediaTotals{Packets: 10}, ToAsterisk: MediaTotals{Packets: 12},
	}
	r.Finish(t0.Add(time.Hour))
	if r.Code != 17 {
		t.Errorf("code %d, want 17", r.Code)
	}
	if r.SetupAnswerMS == nil || *r.SetupAnswerMS != 12 || *r.SetupFirstMediaMS != 40 || *r.SetupFarAnsweredMS != 2000 {
		t.Errorf("setup latencies %v %v %v", r.SetupAnswerMS, r.SetupFirstMediaMS, r.SetupFarAnsweredMS)
	}
	if r.DurationS != 60 {
		t.Errorf("duration %v, want 60", r.DurationS)
	}
	if r.Has(wire.QualityNoAudio) {
		t.Error("media flowed, yet no_audio")
	}
	b, _ := json.Marshal(r)
	for _, want := range []string{`"setup_answer_ms":12`, `"cause":"user_busy"`, `"code":17`, `"to_browser":{"packets":10`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	if bytes.Contains(b, []byte("refusal")) || bytes.Contains(b, []byte(`"browser"`)) {
		t.Errorf("empty fields not omitted: %s", b)
	}
}

func TestFinishNoAudioAndRefused(t *testing.T) {
	r := Record{OfferAt: t0, FarAnsweredAt: t0.Add(time.Second), EndAt: t0.Add(9 * time.Second), Cause: wire.CauseNormalClearing}
	r.Finish(t0)
	if !r.Has(wire.QualityNoAudio) {
		t.Error("answered call without a packet either way is not flagged no_audio")
	}
	ref := Record{Refusal: wire.CodeForbiddenDestination, Cause: wire.CauseCallRejected}
	ref.Finish(t0)
	if ref.Has(wire.QualityNoAudio) || !ref.Refused() || ref.EndAt != t0 || ref.SetupAnswerMS != nil || ref.Code != 21 {
		t.Errorf("refused record: %+v", ref)
	}
}

type countObs struct {
	mu                               sync.Mutex
	started, refused, ended, quality int
	media                            uint64
}

func (c *countObs) CallStarted(string)         { c.mu.Lock(); c.started++; c.mu.Unlock() }
func (c *countObs) CallRefused(string, string) { c.mu.Lock(); c.refused++; c.mu.Unlock() }
func (c *countObs) CallEnded(Record)           { c.mu.Lock(); c.ended++; c.mu.Unlock() }
func (c *countObs) Quality(string, string, string) {
	c.mu.Lock()
	c.quality++
	c.mu.Unlock()
}
func (c *countObs) Media(_ string, a, b MediaDelta) {
	c.mu.Lock()
	c.media += a.Packets + b.Packets
	c.mu.Unlock()
}

func TestFanout(t *testing.T) {
	if _, ok := Fanout().(Nop); !ok {
		t.Error("Fanout() is not Nop")
	}
	a := &countObs{}
	if Fanout(nil, a) != Observer(a) {
		t.Error("Fanout of one is not that one")
	}
	b := &countObs{}
	f := Fanout(a, nil, b)
	f.CallStarted(DirRoom)
	f.CallRefused(DirRoom, wire.CodeTooManyCalls)
	f.CallEnded(Record{})
	f.Media(DirRoom, MediaDelta{Packets: 2}, MediaDelta{Packets: 3})
	f.Quality(DirRoom, wire.QualityOneWayAudio, wire.ToBrowser)
	for _, c := range []*countObs{a, b} {
		if c.started != 1 || c.refused != 1 || c.ended != 1 || c.media != 5 || c.quality != 1 {
			t.Errorf("observer got %+v", c)
		}
	}
}

func TestRecorderRing(t *testing.T) {
	var got []Record
	now := t0
	rc := NewRecorder(RecorderOptions{Instance: "pb1", Keep: 3, Now: func() time.Time { return now },
		Sinks: []Sink{SinkFunc(func(r Record) { got = append(got, r) })}})
	for i := range 5 {
		now = t0.Add(time.Duration(i) * time.Minute)
		rc.CallEnded(Record{CallID: string(rune('a' + i)), Cause: wire.CauseNormalClearing})
	}
	if len(got) != 5 || got[0].ID == "" || got[0].Instance != "pb1" || got[0].Code != 16 || got[0].ID == got[1].ID {
		t.Fatalf("sink got %+v", got)
	}
	ids := func(rs []Record) string {
		var s string
		for _, r := range rs {
			s += r.CallID
		}
		return s
	}
	for _, tc := range []struct {
		since time.Time
		limit int
		want  string
	}{
		{time.Time{}, 0, "cde"},
		{t0.Add(3 * time.Minute), 0, "de"},
		{t0.Add(time.Hour), 0, ""},
		{time.Time{}, 2, "de"},
	} {
		if g := ids(rc.Since(tc.since, tc.limit)); g != tc.want {
			t.Errorf("Since(%v, %d) = %q, want %q", tc.since, tc.limit, g, tc.want)
		}
	}
	empty := NewRecorder(RecorderOptions{})
	empty.CallEnded(Record{})
	if len(empty.Since(time.Time{}, 0)) != 0 {
		t.Error("a recorder keeping 0 kept a record")
	}
	var nilRec *Recorder
	nilRec.CallEnded(Record{})
	if nilRec.Since(t0, 0) != nil {
		t.Error("nil recorder returned records")
	}
}

func TestWriterRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "calls.jsonl")
	w, err := NewWriter(WriterOptions{Path: path, MaxSize: 1000, Backups: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	for i := range 40 {
		w.Put(Record{ID: "r", CallID: strings.Repeat("x", 50), Direction: DirAPI, EndAt: t0.Add(time.Duration(i) * time.Second)})
	}
	cancel()
	<-done
	written, dropped, failed := w.Stats()
	if written != 40 || dropped != 0 || failed != 0 {
		t.Fatalf("written %d dropped %d failed %d", written, dropped, failed)
	}
	lines := 0
	for _, name := range []string{path, path + ".1", path + ".2"} {
		f, err := os.Open(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st, _ := f.Stat()
		if st.Size() > 1000 {
			t.Errorf("%s is %d bytes, over MaxSize", name, st.Size())
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: line is not a record: %v", name, err)
			}
			lines++
		}
		f.Close()
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("more backups kept than asked")
	}
	if lines == 0 || lines >= 40 {
		t.Errorf("%d lines across the kept files: rotation should have dropped the oldest", lines)
	}
}

func TestWriterStdoutAndBadPath(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(WriterOptions{Path: "-", Stdout: &buf})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	w.Put(Record{CallID: "c9"})
	cancel()
	<-done
	if !strings.Contains(buf.String(), `"call_id":"c9"`) || !strings.HasSuffix(buf.String(), "\n") {
		t.Errorf("stdout got %q", buf.String())
	}
	if _, err := NewWriter(WriterOptions{Path: filepath.Join(t.TempDir(), "nodir", "x.jsonl")}); err == nil ||
		!strings.Contains(err.Error(), "calls.records.file") {
		t.Errorf("bad path: %v", err)
	}
}

func TestWriterDropsWhenFull(t *testing.T) {
	w, err := NewWriter(WriterOptions{Path: "-", Stdout: &bytes.Buffer{}, QueueSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		w.Put(Record{}) // nobody runs the writer: the queue fills and Put must not block
	}
	if _, dropped, _ := w.Stats(); dropped != 3 {
		t.Errorf("dropped %d, want 3", dropped)
	}
}

func TestOneWayDetector(t *testing.T) {
	type step struct {
		at     time.Duration
		tb, ta uint64
		want   string // "" or issue/towards
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"both flow", []step{{1 * time.Second, 50, 50, ""}, {5 * time.Second, 250, 250, ""}, {9 * time.Second, 450, 450, ""}}},
		{"browser stops sending", []step{
			{1 * time.Second, 50, 50, ""}, {2 * time.Second, 100, 100, ""},
			{3 * time.Second, 150, 100, ""}, {5 * time.Second, 250, 100, ""},
			{6 * time.Second, 300, 100, "one_way_audio/to_asterisk"},
			{7 * time.Second, 350, 100, ""}, // reported once
		}},
		{"asterisk never sends", []step{{1 * time.Second, 0, 50, ""}, {3 * time.Second, 0, 150, ""}, {4 * time.Second, 0, 200, "one_way_audio/to_browser"}}},
		{"nothing either way", []step{{2 * time.Second, 0, 0, ""}, {4 * time.Second, 0, 0, "no_audio/both"}, {8 * time.Second, 0, 0, ""}}},
		{"recovers before the threshold", []step{{1 * time.Second, 50, 50, ""}, {4 * time.Second, 50, 200, ""}, {4500 * time.Millisecond, 75, 225, ""}, {8 * time.Second, 250, 400, ""}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewOneWayDetector(0, t0)
			if d.Threshold() != 4*time.Second {
				t.Fatalf("default threshold %v", d.Threshold())
			}
			for _, s := range tc.steps {
				f, ok := d.Observe(t0.Add(s.at), s.tb, s.ta)
				got := ""
				if ok {
					got = f.Issue + "/" + f.Towards
					if f.Hint == "" {
						t.Errorf("finding without a hint")
					}
				}
				if got != s.want {
					t.Errorf("at %v (%d, %d): got %q, want %q", s.at, s.tb, s.ta, got, s.want)
				}
			}
		})
	}
	d := NewOneWayDetector(time.Second, t0)
	d.Observe(t0.Add(500*time.Millisecond), 10, 10)
	f, _ := d.Observe(t0.Add(2*time.Second), 10, 40)
	if f.Towards != wire.ToBrowser || !strings.Contains(f.Hint, "Asterisk") {
		t.Errorf("silent Asterisk: %+v", f)
	}
	var r Record
	d.Flag(&r)
	if !r.Has(wire.QualityOneWayAudio) || r.OneWay != wire.ToBrowser {
		t.Errorf("record flags %+v one_way %q", r.Flags, r.OneWay)
	}
}
