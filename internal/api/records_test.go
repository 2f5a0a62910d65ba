package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/internal/cdr"
)

type fakeRecords struct {
	since time.Time
	limit int
}

func (f *fakeRecords) Since(t time.Time, limit int) []cdr.Record {
	f.since, f.limit = t, limit
	if t.IsZero() {
		return nil
	}
	return []cdr.Record{{ID: "rec-1", CallID: "c1", Direction: cdr.DirBrowserOut, Cause: "normal_clearing"}}
}

func TestCallRecordsEndpoint(t *testing.T) {
	keys, err := auth.NewAPIKeys(map[string]string{"crm": "crm-key-0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	s := New(keys, slog.New(slog.NewTextHandler(io.Discard, nil)))
	src := &fakeRecords{}
	s.RegisterCallRecords(src)
	get := func(q string, withKey bool) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", Prefix+"/calls"+q, nil)
		if withKey {
			req.Header.Set("Authorization", "Bearer crm-key-0123456789abcdef")
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	if rec := get("", false); rec.Code != 401 {
		t.Errorf("without a key: %d", rec.Code)
	}
	rec := get("?since=2026-11-29T12:00:00Z&limit=5", true)
	if rec.Code != 200 || src.limit != 5 || !src.since.Equal(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("status %d, since %v, limit %d: %s", rec.Code, src.since, src.limit, rec.Body)
	}
	var out struct{ Calls []cdr.Record }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || len(out.Calls) != 1 || out.Calls[0].CallID != "c1" {
		t.Fatalf("body %s (%v)", rec.Body, err)
	}
	if rec := get("", true); rec.Code != 200 || rec.Body.String() != "{\"calls\":[]}\n" || src.limit != MaxRecords {
		t.Errorf("no records: %d %q", rec.Code, rec.Body)
	}
	for _, q := range []string{"?since=yesterday", "?limit=0", "?limit=5000"} {
		if rec := get(q, true); rec.Code != 400 {
			t.Errorf("%s: status %d", q, rec.Code)
		}
	}
}

func TestOpenAPIHasBothCallsOperations(t *testing.T) {
	doc, err := mergeFragments(fragments)
	if err != nil {
		t.Fatal(err)
	}
	calls := doc["paths"].(map[string]any)["/calls"].(map[string]any)
	if calls["get"] == nil || calls["post"] == nil {
		t.Errorf("/calls has %v", calls)
	}
	if doc["components"].(map[string]any)["schemas"].(map[string]any)["CallRecord"] == nil {
		t.Error("CallRecord schema missing")
	}
}

// TestSinceWithUnencodedPlus: an offset's '+' sent unencoded arrives as a space; the refusal says how to send it.
func TestSinceWithUnencodedPlus(t *testing.T) {
	keys, err := auth.NewAPIKeys(map[string]string{"crm": "crm-key-0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	s := New(keys, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.RegisterCallRecords(&fakeRecords{})
	for q, want := range map[string]string{
		"?since=2026-11-29T12:00:00+01:00":   "%2B",
		"?since=2026-11-29T12:00:00%2B01:00": "",
	} {
		req := httptest.NewRequest("GET", Prefix+"/calls"+q, nil)
		req.Header.Set("Authorization", "Bearer crm-key-0123456789abcdef")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		var e Error
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		if want == "" && rec.Code != 200 || want != "" && (rec.Code != 400 || !strings.Contains(e.Message, want)) {
			t.Errorf("%s: %d %s", q, rec.Code, rec.Body)
		}
	}
}

// TestCallRecordDirections: every kind of call writes records with its kind as direction, so the CallRecord schema
// lists them all.
func TestCallRecordDirections(t *testing.T) {
	doc, err := mergeFragments(fragments)
	if err != nil {
		t.Fatal(err)
	}
	enum, _ := jsonPath(doc, "components", "schemas", "CallRecord", "properties", "direction", "enum").([]any)
	for _, k := range []call.Kind{call.KindBrowserOut, call.KindPhoneIn, call.KindRoom, call.KindPhoneRoom, call.KindPhonePSTN,
		call.KindAPI, call.KindTransfer, call.KindSupervise} {
		if !slices.Contains(enum, any(string(k))) {
			t.Errorf("direction %q is not in CallRecord's enum %v", k, enum)
		}
	}
}
