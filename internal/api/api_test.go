package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/auth"
)

func TestAuthAndErrors(t *testing.T) {
	keys, err := auth.NewAPIKeys(map[string]string{"crm": "crm-key-0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	s := New(keys, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.Handle("POST /echo", func(w http.ResponseWriter, r *http.Request, caller string) error {
		var in struct{ Text string }
		if err := DecodeJSON(r, &in); err != nil {
			return err
		}
		if in.Text == "boom" {
			return io.ErrUnexpectedEOF // an internal error: its text must not leak
		}
		WriteJSON(w, http.StatusOK, map[string]string{"caller": caller, "text": in.Text})
		return nil
	})
	for _, tc := range []struct {
		name, auth, body string
		status           int
		code             string
	}{
		{"no key", "", `{"text":"hi"}`, 401, "unauthorized"},
		{"wrong key", "Bearer nope-nope-nope-nope", `{"text":"hi"}`, 401, "unauthorized"},
		{"ok", "Bearer crm-key-0123456789abcdef", `{"text":"hi"}`, 200, ""},
		{"unknown field", "Bearer crm-key-0123456789abcdef", `{"txt":"hi"}`, 400, "bad_request"},
		{"trailing", "Bearer crm-key-0123456789abcdef", `{"text":"hi"} {}`, 400, "bad_request"},
		{"too large", "Bearer crm-key-0123456789abcdef", `{"text":"` + strings.Repeat("a", MaxBody) + `"}`, 413, "too_large"},
		{"internal", "Bearer crm-key-0123456789abcdef", `{"text":"boom"}`, 500, "internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", Prefix+"/echo", strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			var out map[string]string
			json.Unmarshal(rec.Body.Bytes(), &out)
			if out["error"] != tc.code {
				t.Fatalf("error %q, want %q", out["error"], tc.code)
			}
			if strings.Contains(rec.Body.String(), "unexpected EOF") {
				t.Fatal("internal error text leaked")
			}
		})
	}
}

func TestOpenAPIMerges(t *testing.T) {
	s := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"/openapi.json", nil))
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	var doc map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["openapi"] != "3.1.0" || doc["paths"] == nil {
		t.Fatalf("bad document: %v", doc)
	}
}
