package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/internal/recording"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/wire"
)

// RecordingStore is the recordings Patchbay keeps (internal/recording).
type RecordingStore interface {
	List() ([]recording.Meta, error)
	Get(id string) (recording.Meta, error)
	Open(id string) (*os.File, recording.Meta, error)
	Delete(ctx context.Context, id string) error
}

// RecordingControl starts and stops recordings of live calls and rooms; each returns the recording's ID.
type RecordingControl interface {
	RecordCall(ctx context.Context, callID string, start bool, by string) (string, error)
	RecordRoom(ctx context.Context, room string, start bool, by string) (string, error)
}

type recordingsAPI struct {
	store RecordingStore
	ctl   RecordingControl
}

// RegisterRecordings adds /recordings (list, get, download, delete) and the start/stop endpoints of calls and rooms
// (see openapi/recordings.json). With a nil store (recording.mode off) they answer 503 unavailable.
func (s *Server) RegisterRecordings(store RecordingStore, ctl RecordingControl) {
	h := &recordingsAPI{store: store, ctl: ctl}
	s.Handle("GET /recordings", h.list)
	s.Handle("GET /recordings/{id}", h.get)
	s.Handle("GET /recordings/{id}/file", h.file)
	s.Handle("DELETE /recordings/{id}", h.delete)
	s.Handle("POST /calls/{id}/recording", h.callRecording(true))
	s.Handle("DELETE /calls/{id}/recording", h.callRecording(false))
	s.Handle("POST /rooms/{room}/recording", h.roomRecording(true))
	s.Handle("DELETE /rooms/{room}/recording", h.roomRecording(false))
}

func (h *recordingsAPI) off() error {
	if h.store == nil || h.ctl == nil {
		return Errorf(http.StatusServiceUnavailable, wire.CodeUnavailable, "recording is off on this server (recording.mode)")
	}
	return nil
}

func recordingError(err error) error {
	var ref *call.Refusal
	switch {
	case errors.Is(err, recording.ErrNotFound):
		return Errorf(http.StatusNotFound, wire.CodeNotFound, "no such recording")
	case errors.Is(err, recording.ErrNotRecordable), errors.Is(err, rooms.ErrNotRecordable):
		return Errorf(http.StatusConflict, wire.CodeConflict, "%v", err)
	case errors.Is(err, call.ErrNotRecording):
		return Errorf(http.StatusConflict, wire.CodeConflict, "%v", err)
	case errors.Is(err, rooms.ErrNotFound):
		return Errorf(http.StatusNotFound, wire.CodeUnknownRoom, "%v", err)
	case errors.As(err, &ref):
		return callError(err)
	}
	return err
}

func (h *recordingsAPI) list(w http.ResponseWriter, r *http.Request, _ string) error {
	if err := h.off(); err != nil {
		return err
	}
	list, err := h.store.List()
	if err != nil {
		return err
	}
	if list == nil {
		list = []recording.Meta{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"recordings": list})
	return nil
}

func (h *recordingsAPI) get(w http.ResponseWriter, r *http.Request, _ string) error {
	if err := h.off(); err != nil {
		return err
	}
	m, err := h.store.Get(r.PathValue("id"))
	if err != nil {
		return recordingError(err)
	}
	WriteJSON(w, http.StatusOK, m)
	return nil
}

func (h *recordingsAPI) file(w http.ResponseWriter, r *http.Request, _ string) error {
	if err := h.off(); err != nil {
		return err
	}
	f, m, err := h.store.Open(r.PathValue("id"))
	if err != nil {
		return recordingError(err)
	}
	defer f.Close()
	w.Header().Set("Content-Type", "audio/"+m.Format)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.%s"`, m.ID, m.Format))
	w.Header().Set("Cache-Control", "no-store")
	http.ServeContent(w, r, m.ID+"."+m.Format, m.Ended, f)
	return nil
}

func (h *recordingsAPI) delete(w http.ResponseWriter, r *http.Request, caller string) error {
	if err := h.off(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := h.store.Delete(ctx, r.PathValue("id")); err != nil {
		return recordingError(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type recordingStarted struct {
	Recording string `json:"recording"`
}

func (h *recordingsAPI) callRecording(start bool) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, caller string) error {
		if err := h.off(); err != nil {
			return err
		}
		id, err := h.ctl.RecordCall(r.Context(), r.PathValue("id"), start, "api:"+caller)
		return h.reply(w, id, start, err)
	}
}

func (h *recordingsAPI) roomRecording(start bool) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, caller string) error {
		if err := h.off(); err != nil {
			return err
		}
		id, err := h.ctl.RecordRoom(r.Context(), r.PathValue("room"), start, "api:"+caller)
		return h.reply(w, id, start, err)
	}
}

func (h *recordingsAPI) reply(w http.ResponseWriter, id string, start bool, err error) error {
	if err != nil {
		return recordingError(err)
	}
	if start {
		w.Header().Set("Location", Prefix+"/recordings/"+id)
		WriteJSON(w, http.StatusCreated, recordingStarted{Recording: id})
		return nil
	}
	WriteJSON(w, http.StatusOK, recordingStarted{Recording: id})
	return nil
}
