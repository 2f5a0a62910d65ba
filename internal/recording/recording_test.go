package recording

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/ari/aritest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a recorder against the ARI fake, with one bridge to record.
func env(t *testing.T, o Options) (*Recorder, *aritest.Server, *ari.Client, string) {
	t.Helper()
	s := aritest.New(t)
	cfg := s.Config()
	cfg.SweepInterval = -1
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := ari.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	if err := a.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	o.ARI, o.Logger = a, cfg.Logger
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Bridges().Create(ctx, ari.BridgeRequest{ID: "pb-b1"}); err != nil {
		t.Fatal(err)
	}
	// A call's bridge holds its channels, which is what subscribes the application to its events.
	ch := s.Incoming(aritest.Call{Endpoint: "PJSIP/101", Answered: true})
	time.Sleep(20 * time.Millisecond)
	if err := a.Bridge("pb-b1").AddChannel(ctx, ari.AddChannelOptions{}, ch); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		r.Close(cctx)
		ccancel()
		cancel()
		<-done
	})
	return r, s, a, "pb-b1"
}

func waitState(t *testing.T, r *Recorder, id, state string) Meta {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := r.Get(id)
		if err == nil && m.State == state {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("recording %s: %+v %v; want state %s", id, m, err, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRecordStopCollect: a recording is announced, recorded, stopped and collected: the file and the sidecar are in
// the directory, Asterisk's copy is gone, and it is listed, opened and deleted.
func TestRecordStopCollect(t *testing.T) {
	r, s, _, bridge := env(t, Options{Announcement: "sound:conf-now-recording"})
	var events []string
	notified := make(chan string, 4)
	sess, err := r.Start(context.Background(), Target{Bridge: bridge}, Meta{CallID: "call-1", StartedBy: "policy",
		Parties: []Party{{Role: "caller", Kind: "phone", ID: "101"}}}, func(ev string) { notified <- ev })
	if err != nil {
		t.Fatal(err)
	}
	if m := waitState(t, r, sess.ID(), StateRecording); m.CallID != "call-1" || m.Asterisk == "" {
		t.Errorf("sidecar while recording: %+v", m)
	}
	events = append(events, <-notified)
	if s.Count("POST", "/bridges/"+bridge+"/play") != 1 || s.Count("POST", "/bridges/"+bridge+"/record") != 1 {
		t.Errorf("announcement then record: play %d, record %d", s.Count("POST", "/bridges/*/play"), s.Count("POST", "/bridges/*/record"))
	}
	sess.Stop(context.Background())
	<-sess.Done()
	events = append(events, <-notified)
	if events[0] != "started" || events[1] != "stopped" {
		t.Errorf("notified %v", events)
	}
	m := waitState(t, r, sess.ID(), StateComplete)
	if m.Bytes == 0 || m.Ended.IsZero() || m.Format != "wav" {
		t.Errorf("complete sidecar %+v", m)
	}
	if s.Count("DELETE", "/recordings/stored/*") != 1 {
		t.Error("Asterisk's copy not deleted")
	}
	list, err := r.List()
	if err != nil || len(list) != 1 || list[0].ID != m.ID {
		t.Fatalf("list %+v %v", list, err)
	}
	f, _, err := r.Open(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	_, _ = io.ReadFull(f, head)
	f.Close()
	if string(head) != "RIFF" {
		t.Errorf("file starts %q", head)
	}
	if err := r.Delete(context.Background(), m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(m.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if ents, _ := os.ReadDir(r.o.Dir); len(ents) != 0 {
		t.Errorf("directory after delete: %v", ents)
	}
}

// TestBridgeDeletedFinishesRecording: the call's end (its bridge deleted) finishes and collects the recording.
func TestBridgeDeletedFinishesRecording(t *testing.T) {
	r, _, a, bridge := env(t, Options{})
	sess, err := r.Start(context.Background(), Target{Bridge: bridge}, Meta{CallID: "c"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, r, sess.ID(), StateRecording)
	time.Sleep(50 * time.Millisecond)
	if err := a.Bridge(bridge).Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, sess.ID(), StateComplete)
}

// TestRecordRefused: Asterisk refusing to record leaves a failed sidecar saying why; a target without a bridge is
// not recordable; IDs that are no recording's never touch the file system.
func TestRecordRefused(t *testing.T) {
	r, s, _, bridge := env(t, Options{})
	s.FailNext("POST", "/bridges/*/record", 500)
	sess, err := r.Start(context.Background(), Target{Bridge: bridge}, Meta{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := waitState(t, r, sess.ID(), StateFailed); m.Error == "" {
		t.Errorf("failed sidecar says nothing: %+v", m)
	}
	if _, err := r.Start(context.Background(), Target{}, Meta{}, nil); !errors.Is(err, ErrNotRecordable) {
		t.Errorf("no bridge: %v", err)
	}
	for _, id := range []string{"../etc/passwd", "rec-", "rec-AAAAAAAAAAAAAAAAAAAAAAAAAA", ""} {
		if _, err := r.Get(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): %v", id, err)
		}
		if err := r.Delete(context.Background(), id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%q): %v", id, err)
		}
	}
}

// TestRetentionAndRecovery: the janitor deletes recordings past their retention, and collects a recording a
// previous run left in Asterisk (its sidecar still says recording).
func TestRetentionAndRecovery(t *testing.T) {
	dir := t.TempDir()
	r, s, a, bridge := env(t, Options{Dir: dir, Retention: 24 * time.Hour})
	old := Meta{ID: newID(), State: StateComplete, Format: "wav", Started: time.Now().Add(-72 * time.Hour), Ended: time.Now().Add(-48 * time.Hour)}
	fresh := Meta{ID: newID(), State: StateComplete, Format: "wav", Started: time.Now().Add(-time.Hour), Ended: time.Now().Add(-time.Hour)}
	for _, m := range []Meta{old, fresh} {
		if err := r.writeMetaLocked(m); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, m.ID+".wav"), []byte("RIFF"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// A recording a crashed run started: Asterisk finished it, nobody collected it.
	orphan := Meta{ID: newID(), State: StateRecording, Format: "wav", Started: time.Now().Add(-time.Minute)}
	orphan.Asterisk = "pb-" + a.Instance() + "-" + orphan.ID
	if _, err := a.Bridge(bridge).Record(context.Background(), ari.RecordOptions{Name: orphan.Asterisk, Format: "wav"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Recordings().Stop(context.Background(), orphan.Asterisk); err != nil {
		t.Fatal(err)
	}
	if err := r.writeMetaLocked(orphan); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	waitState(t, r, orphan.ID, StateComplete)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := r.Get(old.ID); errors.Is(err, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired recording not deleted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := r.Get(fresh.ID); err != nil {
		t.Errorf("fresh recording deleted: %v", err)
	}
	if s.Count("DELETE", "/recordings/stored/"+orphan.Asterisk) != 1 {
		t.Error("the orphan's Asterisk copy was not deleted")
	}
	cancel()
	<-done
}
