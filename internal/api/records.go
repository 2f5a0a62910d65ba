package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/wire"
)

// RecordSource is where recent call records come from (the cdr.Recorder's in-memory ring).
type RecordSource interface {
	Since(t time.Time, limit int) []cdr.Record
}

// MaxRecords bounds one GET /calls reply.
const MaxRecords = 1000

// RegisterCallRecords adds GET /calls?since=RFC3339&limit=N: recent call records of every direction, oldest
// first (see openapi/records.json). Every API key sees every record: keys belong to trusted backends.
func (s *Server) RegisterCallRecords(src RecordSource) {
	s.Handle("GET /calls", func(w http.ResponseWriter, r *http.Request, _ string) error {
		var since time.Time
		if v := r.URL.Query().Get("since"); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				hint := ""
				if strings.Contains(v, " ") { // an offset's '+' sent unencoded arrives as a space
					hint = "; encode a '+' in the query as %2B"
				}
				return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "since=%q is not an RFC 3339 time such as 2026-11-29T12:00:00Z%s", v, hint)
			}
			since = t
		}
		limit := MaxRecords
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxRecords {
				return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "limit=%q must be 1 to %d", v, MaxRecords)
			}
			limit = n
		}
		recs := src.Since(since, limit)
		if recs == nil {
			recs = []cdr.Record{}
		}
		WriteJSON(w, http.StatusOK, map[string]any{"calls": recs})
		return nil
	})
}
