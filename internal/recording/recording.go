// Package recording records calls and rooms through Asterisk (ARI bridge recording) and keeps the files Patchbay
// serves: each recording is a WAV in the configured directory beside a JSON sidecar naming the call record, the
// parties and the times. Asterisk writes into its own spool, which may be in a chroot, a container or another host,
// so a finished recording is fetched over ARI (GET /recordings/stored/{name}/file) and then deleted there: Patchbay
// never needs Asterisk's file system. A janitor removes recordings past their retention.
package recording

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/patchbay/patchbay/ari"
)

// Recording states in the sidecar.
const (
	StateRecording = "recording" // Asterisk is recording
	StateComplete  = "complete"  // the file is here
	StateFailed    = "failed"    // no file; Error says why
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("recording: no such recording")
	// ErrNotRecordable: the call or room has nothing Asterisk can record both sides of (no bridge).
	ErrNotRecordable = errors.New("recording: nothing to record")
)

// Party is one side of a recorded call.
type Party struct {
	Role string `json:"role"`           // caller, callee, agent, customer, participant
	Kind string `json:"kind,omitempty"` // browser, phone, trunk
	ID   string `json:"id,omitempty"`   // the browser user or the phone number
	Name string `json:"name,omitempty"`
}

// Meta is a recording's sidecar, and what the API lists.
type Meta struct {
	ID string `json:"id"`
	// CallID is the call record's call_id (internal/cdr) for a call; Room the room for a room.
	CallID    string    `json:"call_id,omitempty"`
	Room      string    `json:"room,omitempty"`
	Parties   []Party   `json:"parties,omitempty"`
	StartedBy string    `json:"started_by"` // "policy", "api:<key>", "user:<name>"
	State     string    `json:"state"`
	Error     string    `json:"error,omitempty"`
	Started   time.Time `json:"started_at"`
	Ended     time.Time `json:"ended_at,omitzero"`
	DurationS float64   `json:"duration_s"`
	Format    string    `json:"format"`
	Bytes     int64     `json:"bytes"`
	// Asterisk is the recording's name in Asterisk, to collect it after a restart.
	Asterisk string `json:"asterisk_name"`
}

// Target is what Asterisk records: a bridge (both parties, or a room's mix).
type Target struct {
	Bridge string
}

// Options configure a Recorder.
type Options struct {
	ARI *ari.Client
	// Dir holds the recordings and their sidecars; created 0750.
	Dir string
	// Format is Asterisk's recording format (default "wav").
	Format string
	// Retention removes recordings this long after they ended; 0 keeps them.
	Retention time.Duration
	// Announcement is played to the bridge before recording starts (a consent notice), e.g.
	// "sound:conf-now-recording"; empty: none.
	Announcement string
	// MaxDuration bounds one recording (default 4 h).
	MaxDuration time.Duration
	Logger      *slog.Logger
}

// Recorder starts recordings and keeps the finished ones.
type Recorder struct {
	o   Options
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex // sidecar files and live
	live   map[string]*Session
	wg     sync.WaitGroup
	closed bool
	ctx    context.Context // the collectors' context: Close cancels it
	cancel context.CancelFunc
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var idRe = regexp.MustCompile(`^rec-[a-z2-7]{26}$`)

// ValidID reports whether id can name a recording: API paths are checked with it before any file is touched.
func ValidID(id string) bool { return idRe.MatchString(id) }

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	return "rec-" + idEncoding.EncodeToString(b[:])
}

// New makes the directory and returns a Recorder; Run starts its janitor.
func New(o Options) (*Recorder, error) {
	if o.ARI == nil || o.Dir == "" {
		return nil, errors.New("recording: needs ARI and a directory (recording.dir)")
	}
	if o.Format == "" {
		o.Format = "wav"
	}
	if o.MaxDuration <= 0 {
		o.MaxDuration = 4 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("recording.dir %s: %w", o.Dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Recorder{o: o, log: o.Logger, now: time.Now, live: map[string]*Session{}, ctx: ctx, cancel: cancel}, nil
}

// Session is one recording in progress.
type Session struct {
	r    *Recorder
	meta Meta
	t    Target
	log  *slog.Logger

	mu      sync.Mutex
	stopped bool // Stop was called
	started bool // the record request succeeded
	done    chan struct{}
}

// ID is the recording's ID.
func (s *Session) ID() string { return s.meta.ID }

// Done is closed once the recording is collected (or failed).
func (s *Session) Done() <-chan struct{} { return s.done }

// Start begins recording t. It returns at once: the announcement, the record request and, when Asterisk finishes
// (Stop, the bridge deleted with its call, the maximum duration), collecting the file run on a goroutine of the
// Recorder. notify, if set, hears RecordingStarted ("started") and the end ("stopped") from that goroutine.
func (r *Recorder) Start(ctx context.Context, t Target, m Meta, notify func(event string)) (*Session, error) {
	if t.Bridge == "" {
		return nil, ErrNotRecordable
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errors.New("recording: shutting down")
	}
	m.ID = newID()
	m.Asterisk = "pb-" + r.o.ARI.Instance() + "-" + m.ID
	m.State, m.Format, m.Started = StateRecording, r.o.Format, r.now().UTC()
	s := &Session{r: r, meta: m, t: t, done: make(chan struct{}),
		log: r.log.With("recording", m.ID, "call", m.CallID, "room", m.Room, "bridge", t.Bridge)}
	if err := r.writeMeta(m); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	r.live[m.ID] = s
	r.wg.Add(1)
	r.mu.Unlock()
	go s.run(notify) // owned by the Recorder: Close waits for it
	return s, nil
}

// Stop ends the recording; the file is collected in the background. Safe more than once.
func (s *Session) Stop(ctx context.Context) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	started := s.started
	s.mu.Unlock()
	if !started {
		return // run sees stopped before it records
	}
	if err := s.r.o.ARI.Recordings().Stop(ctx, s.meta.Asterisk); err != nil && !ari.IsNotFound(err) {
		s.log.Warn("stop recording", "err", err)
	}
}

func (s *Session) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// run announces, records, waits for the end and collects the file.
func (s *Session) run(notify func(string)) {
	r := s.r
	defer r.wg.Done()
	defer close(s.done)
	defer func() {
		r.mu.Lock()
		delete(r.live, s.meta.ID)
		r.mu.Unlock()
	}()
	ctx := r.ctx
	a := r.o.ARI
	sub := a.Subscribe(ari.Filter{Name: "recording-" + s.meta.ID, IDs: []string{s.t.Bridge},
		Types: []string{ari.TypePlaybackFinished, ari.TypeRecordingStarted, ari.TypeRecordingFinished, ari.TypeRecordingFailed, ari.TypeBridgeDestroyed}, QueueSize: 64})
	defer sub.Close()
	if r.o.Announcement != "" && !s.isStopped() {
		s.announce(ctx, sub)
	}
	if s.isStopped() {
		s.fail("stopped before it started")
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := a.Bridge(s.t.Bridge).Record(rctx, ari.RecordOptions{Name: s.meta.Asterisk, Format: s.meta.Format, MaxDuration: r.o.MaxDuration, IfExists: "fail"})
	cancel()
	if err != nil {
		s.log.Error("recording refused by Asterisk", "err", err)
		s.fail("Asterisk refused to record: " + err.Error())
		return
	}
	s.mu.Lock()
	s.started = true
	stopNow := s.stopped
	s.mu.Unlock()
	if stopNow { // Stop came while the request was on its way
		sctx, c := context.WithTimeout(ctx, 5*time.Second)
		_ = a.Recordings().Stop(sctx, s.meta.Asterisk)
		c()
	}
	s.log.Info("recording started", "started_by", s.meta.StartedBy)
	if notify != nil {
		notify(eventStarted)
	}
	s.waitEnd(ctx, sub)
	s.collect(ctx)
	if notify != nil {
		notify(eventStopped)
	}
}

const (
	eventStarted = "started"
	eventStopped = "stopped"
)

// announce plays the consent notice to the bridge and waits for it to finish (at most a minute).
func (s *Session) announce(ctx context.Context, sub *ari.Subscription) {
	a := s.r.o.ARI
	id := "pb-ann-" + s.meta.ID
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := a.Bridge(s.t.Bridge).Play(pctx, ari.PlayOptions{Media: []string{s.r.o.Announcement}, PlaybackID: id})
	cancel()
	if err != nil {
		s.log.Warn("recording announcement not played; recording anyway", "media", s.r.o.Announcement, "err", err)
		return
	}
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	poll := time.NewTicker(2 * time.Second) // an event lost with the events socket must not hold the recording up
	defer poll.Stop()
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return
			}
			switch e := ev.(type) {
			case *ari.PlaybackFinished:
				if e.Playback.ID == id {
					return
				}
			case *ari.BridgeDestroyed:
				return
			}
		case <-poll.C:
			gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := a.Playbacks().Get(gctx, id)
			cancel()
			if ari.IsNotFound(err) {
				return
			}
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// waitEnd waits for RecordingFinished or RecordingFailed of this recording. Events can be lost while the events
// socket is down, so every few seconds Asterisk is also asked whether the recording is still live.
func (s *Session) waitEnd(ctx context.Context, sub *ari.Subscription) {
	a := s.r.o.ARI
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return
			}
			switch e := ev.(type) {
			case *ari.RecordingFinished:
				if e.Recording.Name == s.meta.Asterisk {
					return
				}
			case *ari.RecordingFailed:
				if e.Recording.Name == s.meta.Asterisk {
					s.log.Warn("Asterisk reports the recording failed", "cause", e.Recording.Cause)
					return
				}
			}
		case <-tick.C:
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := a.Recordings().Live(lctx, s.meta.Asterisk)
			cancel()
			if ari.IsNotFound(err) {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// collect fetches the finished file from Asterisk into Dir, completes the sidecar and deletes Asterisk's copy.
func (s *Session) collect(ctx context.Context) {
	r := s.r
	m := s.meta
	m.Ended = r.now().UTC()
	m.DurationS = m.Ended.Sub(m.Started).Round(time.Millisecond).Seconds()
	if err := r.fetch(ctx, &m); err != nil {
		s.log.Error("recording not collected", "err", err)
		m.State, m.Error = StateFailed, err.Error()
		_ = r.writeMetaLocked(m)
		return
	}
	s.log.Info("recording stored", "bytes", m.Bytes, "duration_s", m.DurationS, "file", r.path(m.ID, m.Format))
}

// fetch copies the stored recording m.Asterisk into Dir and marks m complete.
func (r *Recorder) fetch(ctx context.Context, m *Meta) error {
	a := r.o.ARI
	var rc io.ReadCloser
	var err error
	// Asterisk lists the file as stored a moment after RecordingFinished: retry briefly.
	for try := 0; try < 20; try++ {
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rc, err = a.Recordings().StoredFile(fctx, m.Asterisk)
		if err == nil {
			err = r.saveFile(m, rc)
			rc.Close()
			cancel()
			break
		}
		cancel()
		if !ari.IsNotFound(err) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(150 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("fetch %s from Asterisk: %w", m.Asterisk, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.Recordings().DeleteStored(dctx, m.Asterisk); err != nil && !ari.IsNotFound(err) {
		r.log.Warn("recording collected but Asterisk's copy not deleted: remove it from its spool", "recording", m.ID, "err", err)
	}
	return nil
}

// saveFile writes rc to the recording's file and its sidecar, each through a temporary name.
func (r *Recorder) saveFile(m *Meta, rc io.Reader) error {
	dst := r.path(m.ID, m.Format)
	tmp, err := os.CreateTemp(r.o.Dir, "."+m.ID+".*")
	if err != nil {
		return fmt.Errorf("create file in %s: %w", r.o.Dir, err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, rc)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := os.Chmod(tmp.Name(), 0o640); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("move recording into place: %w", err)
	}
	m.State, m.Bytes, m.Error = StateComplete, n, ""
	return r.writeMetaLocked(*m)
}

func (r *Recorder) path(id, format string) string {
	return filepath.Join(r.o.Dir, id+"."+format)
}

func (r *Recorder) metaPath(id string) string { return filepath.Join(r.o.Dir, id+".json") }

// writeMeta writes a sidecar; the caller holds r.mu.
func (r *Recorder) writeMeta(m Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode recording sidecar: %w", err)
	}
	tmp, err := os.CreateTemp(r.o.Dir, "."+m.ID+".json.*")
	if err != nil {
		return fmt.Errorf("write recording sidecar in %s: %w", r.o.Dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write recording sidecar: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), r.metaPath(m.ID))
}

func (r *Recorder) writeMetaLocked(m Meta) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writeMeta(m)
}

func (s *Session) fail(why string) {
	m := s.meta
	m.State, m.Error, m.Ended = StateFailed, why, s.r.now().UTC()
	if err := s.r.writeMetaLocked(m); err != nil {
		s.log.Warn("write recording sidecar", "err", err)
	}
}

// List returns every recording's sidecar, newest first.
func (r *Recorder) List() ([]Meta, error) {
	ents, err := os.ReadDir(r.o.Dir)
	if err != nil {
		return nil, fmt.Errorf("list recordings in %s: %w", r.o.Dir, err)
	}
	var out []Meta
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !ValidID(id) {
			continue
		}
		m, err := r.Get(id)
		if err != nil {
			continue
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Meta) int { return b.Started.Compare(a.Started) })
	return out, nil
}

// Get returns one recording's sidecar.
func (r *Recorder) Get(id string) (Meta, error) {
	if !ValidID(id) {
		return Meta{}, ErrNotFound
	}
	b, err := os.ReadFile(r.metaPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return Meta{}, ErrNotFound
	}
	if err != nil {
		return Meta{}, fmt.Errorf("read recording %s: %w", id, err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Errorf("recording %s: sidecar is corrupt: %w", id, err)
	}
	return m, nil
}

// Open opens a complete recording's file for reading.
func (r *Recorder) Open(id string) (*os.File, Meta, error) {
	m, err := r.Get(id)
	if err != nil {
		return nil, m, err
	}
	if m.State != StateComplete {
		return nil, m, fmt.Errorf("%w: recording %s is %s", ErrNotFound, id, m.State)
	}
	f, err := os.Open(r.path(m.ID, m.Format))
	if errors.Is(err, os.ErrNotExist) {
		return nil, m, ErrNotFound
	}
	return f, m, err
}

// Delete removes a recording and its sidecar. A recording still in progress is stopped first.
func (r *Recorder) Delete(ctx context.Context, id string) error {
	m, err := r.Get(id)
	if err != nil {
		return err
	}
	r.mu.Lock()
	s := r.live[id]
	r.mu.Unlock()
	if s != nil {
		s.Stop(ctx)
		select {
		case <-s.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := os.Remove(r.path(id, m.Format)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete recording %s: %w", id, err)
	}
	if err := os.Remove(r.metaPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete recording %s sidecar: %w", id, err)
	}
	return nil
}

// Run is the janitor: it collects recordings a previous run left in Asterisk, then removes recordings past
// Retention every interval (an hour, or a tenth of the retention if shorter) until ctx ends.
func (r *Recorder) Run(ctx context.Context) {
	r.recover(ctx)
	every := time.Hour
	if r.o.Retention > 0 && r.o.Retention/10 < every {
		every = max(r.o.Retention/10, time.Second)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		r.expire(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expire removes recordings that ended more than Retention ago.
func (r *Recorder) expire(ctx context.Context) {
	if r.o.Retention <= 0 {
		return
	}
	list, err := r.List()
	if err != nil {
		r.log.Warn("recording janitor", "err", err)
		return
	}
	cut := r.now().Add(-r.o.Retention)
	for _, m := range list {
		end := m.Ended
		if end.IsZero() {
			continue // still recording (or being recovered)
		}
		if end.Before(cut) {
			if err := r.Delete(ctx, m.ID); err != nil {
				r.log.Warn("recording janitor: delete expired recording", "recording", m.ID, "err", err)
				continue
			}
			r.log.Info("recording deleted: past its retention", "recording", m.ID, "ended", end, "retention", r.o.Retention)
		}
	}
}

// recover collects recordings whose sidecar still says "recording" but that no session of this process runs: a
// previous Patchbay stopped before collecting them. Asterisk keeps the file; if it has none the sidecar says why.
func (r *Recorder) recover(ctx context.Context) {
	list, err := r.List()
	if err != nil {
		r.log.Warn("recording janitor", "err", err)
		return
	}
	for _, m := range list {
		r.mu.Lock()
		_, live := r.live[m.ID]
		r.mu.Unlock()
		if live || m.State != StateRecording {
			continue
		}
		if m.Ended.IsZero() {
			m.Ended = r.now().UTC()
		}
		if err := r.fetch(ctx, &m); err != nil {
			m.State, m.Error = StateFailed, "Patchbay stopped before collecting it, and Asterisk has no file: "+err.Error()
			_ = r.writeMetaLocked(m)
			r.log.Warn("recording lost", "recording", m.ID, "err", err)
			continue
		}
		r.log.Info("recording collected after a restart", "recording", m.ID, "bytes", m.Bytes)
	}
}

// Close stops every recording in progress, waits (up to ctx) for them to be collected and refuses new ones.
func (r *Recorder) Close(ctx context.Context) {
	r.mu.Lock()
	r.closed = true
	live := make([]*Session, 0, len(r.live))
	for _, s := range r.live {
		live = append(live, s)
	}
	r.mu.Unlock()
	for _, s := range live {
		s.Stop(ctx)
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		r.cancel() // give up fetching: the next start's janitor collects what Asterisk kept
		<-done
	}
	r.cancel()
}
