package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/recording"
	"github.com/patchbay/patchbay/internal/rooms"
)

// Contact-center wiring: the recorder (recording.*) with its janitor, recording of rooms (by policy when their bridge
// is made, or through the API), and the API endpoints for recordings and bound tickets. The lead's New calls
// newCTI before the room registry and the call manager, and registerCTI with the other API routes; Run defers the
// stop startCTI returns.

// cti is the contact-center part of a Server.
type cti struct {
	log    *slog.Logger
	rec    *recording.Recorder // nil: recording.mode off
	always bool

	mu    sync.Mutex
	rooms map[string]*recording.Session // room → its recording in progress
}

// newCTI builds the recorder from recording.*.
func (s *Server) newCTI(cfg *config.Config, log *slog.Logger) error {
	c := &cti{log: log.With("component", "recording"), rooms: map[string]*recording.Session{},
		always: cfg.Recording.Mode == config.RecordingAlways}
	s.cti = c
	if cfg.Recording.Mode == config.RecordingOff {
		return nil
	}
	rec, err := recording.New(recording.Options{
		ARI:          s.ari,
		Dir:          cfg.Recording.Dir,
		Retention:    time.Duration(cfg.Recording.RetentionDays) * 24 * time.Hour,
		Announcement: cfg.Recording.Announcement,
		Logger:       c.log,
	})
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	c.rec = rec
	return nil
}

// ctiOptions are the call manager's contact-center options.
func (s *Server) ctiOptions() call.CTIOptions {
	return call.CTIOptions{Recorder: s.cti.rec, RecordAlways: s.cti.always}
}

// ctiRoomBridge is rooms.Options.OnBridge: with recording.mode always, a room is recorded from its first join.
func (s *Server) ctiRoomBridge(room, _ string) {
	if !s.cti.always {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.RecordRoom(ctx, room, true, "policy"); err != nil {
		s.cti.log.Warn("room not recorded", "room", room, "err", err)
	}
}

// RecordCall starts or stops recording a live call (api.RecordingControl).
func (s *Server) RecordCall(ctx context.Context, id string, start bool, by string) (string, error) {
	return s.calls.RecordCall(ctx, id, start, by)
}

// RecordRoom starts or stops recording a room (api.RecordingControl).
func (s *Server) RecordRoom(ctx context.Context, room string, start bool, by string) (string, error) {
	c := s.cti
	if c.rec == nil {
		return "", errors.New("recording is off")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.rooms[room]; cur != nil {
		select {
		case <-cur.Done(): // finished (the room ended, the maximum duration)
			delete(c.rooms, room)
			cur = nil
		default:
		}
		if cur != nil {
			if start {
				return cur.ID(), nil
			}
			cur.Stop(ctx)
			delete(c.rooms, room)
			c.log.Info("room recording stopped", "room", room, "recording", cur.ID(), "by", by)
			return cur.ID(), nil
		}
	}
	if !start {
		return "", call.ErrNotRecording
	}
	bridge, err := s.rooms.BridgeOf(room)
	if err != nil {
		return "", err
	}
	var parties []recording.Party
	if ps, err := s.rooms.Participants(room); err == nil {
		for _, p := range ps {
			parties = append(parties, recording.Party{Role: roleOr(p.Role), Kind: p.Kind, ID: p.CallerID, Name: p.Name})
		}
	}
	sess, err := c.rec.Start(ctx, recording.Target{Bridge: bridge}, recording.Meta{Room: room, Parties: parties, StartedBy: by}, nil)
	if err != nil {
		return "", err
	}
	c.rooms[room] = sess
	c.log.Info("room recording", "room", room, "recording", sess.ID(), "by", by)
	return sess.ID(), nil
}

func roleOr(r string) string {
	if r == "" {
		return rooms.RoleParticipant
	}
	return r
}

// registerCTI adds the recordings and tickets endpoints.
func (s *Server) registerCTI() {
	if s.cti.rec != nil {
		s.api.RegisterRecordings(s.cti.rec, s)
	} else {
		s.api.RegisterRecordings(nil, nil)
	}
	s.api.RegisterTickets(s.rooms, s.tickets)
}

// startCTI runs the recordings janitor; the returned stop stops it, then lets recordings in progress be collected
// (up to 10 s; what is left is collected at the next start).
func (s *Server) startCTI(ctx context.Context) (stop func()) {
	rec := s.cti.rec
	if rec == nil {
		return func() {}
	}
	jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { // owned by the Server: stop ends it
		defer close(done)
		rec.Run(jctx)
	}()
	return func() {
		cancel()
		<-done
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		rec.Close(cctx)
		ccancel()
	}
}
