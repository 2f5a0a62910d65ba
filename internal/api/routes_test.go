package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/wire"
)

// allRoutes is an API with every feature registered (no services behind them: only the routes matter).
func allRoutes(t *testing.T) *Server {
	t.Helper()
	keys, err := auth.NewAPIKeys(map[string]string{"backend": "k-0123456789abcdef0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	s := New(keys, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.RegisterCalls(nil)
	s.RegisterCallRecords(nil)
	s.RegisterRecordings(nil, nil)
	s.RegisterRooms(RoomsDeps{})
	s.RegisterTickets(nil, nil)
	return s
}

// TestOpenAPIMatchesRoutes keeps the OpenAPI document (the REST API's contract for clients written from it) true:
// every route the server has is documented and every documented operation exists, each documents 401 (any route
// answers it without a key), and the error codes named in response descriptions are wire codes.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := allRoutes(t)
	doc, err := mergeFragments(fragments)
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, item := range doc["paths"].(map[string]any) {
		for op, spec := range item.(map[string]any) {
			if op == "parameters" {
				continue
			}
			route := strings.ToUpper(op) + " " + path
			documented = append(documented, route)
			responses := spec.(map[string]any)["responses"].(map[string]any)
			if route != "GET /openapi.json" && responses["401"] == nil {
				t.Errorf("%s does not document 401 (unauthorized)", route)
			}
			for status, r := range responses {
				desc, _ := r.(map[string]any)["description"].(string)
				if status < "400" {
					continue
				}
				for _, w := range strings.FieldsFunc(desc, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r == '_') }) {
					if strings.Contains(w, "_") && !slices.Contains(wire.Codes, w) && !strings.Contains(desc, "."+w) &&
						!strings.Contains(desc, w+"_") && !knownFieldNames[w] {
						t.Errorf("%s %s names %q, which is not a wire code", route, status, w)
					}
				}
			}
		}
	}
	registered := append([]string{"GET /openapi.json"}, s.routes...)
	sort.Strings(documented)
	sort.Strings(registered)
	for _, r := range registered {
		if r != "GET /openapi.json" && !slices.Contains(documented, r) {
			t.Errorf("route %s is not in the OpenAPI document", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(registered, r) {
			t.Errorf("the OpenAPI document describes %s, which the server does not serve", r)
		}
	}
}

// knownFieldNames are snake_case words in response descriptions that are request fields or settings, not codes.
var knownFieldNames = map[string]bool{}

// TestUnknownRoutesAnswerJSON: a wrong path or method gets a JSON error body like every other error.
func TestUnknownRoutesAnswerJSON(t *testing.T) {
	s := allRoutes(t)
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", Prefix + "/nonsense", http.StatusNotFound, wire.CodeNotFound},
		{"PATCH", Prefix + "/rooms", http.StatusMethodNotAllowed, wire.CodeBadRequest},
		{"GET", Prefix + "/rooms", http.StatusUnauthorized, wire.CodeUnauthorized},
	} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		var e Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != tc.status || e.Code != tc.code || e.Message == "" {
			t.Errorf("%s %s: %d %q, want %d with a JSON %s error", tc.method, tc.path, rec.Code, rec.Body.String(), tc.status, tc.code)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.path, ct)
		}
		if tc.status == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
}
