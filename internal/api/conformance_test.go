package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/dialplan"
	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/internal/recording"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/internal/tickets"
	"github.com/patchbay/patchbay/wire"
)

const (
	testKey = "k-0123456789abcdef0123456789abcdef"
	testRec = "rec-aaaaaaaaaaaaaaaaaaaaaaaaaa"
)

// nullBackend mixes nothing: rooms without Asterisk.
type nullBackend struct{ kind string }

func (b nullBackend) Kind() string { return b.kind }
func (b nullBackend) Attach(context.Context, string, string, string) (rooms.Attachment, error) {
	return nullAttachment{}, nil
}
func (b nullBackend) Close(context.Context) error { return nil }

type nullAttachment struct{}

func (nullAttachment) Detach(context.Context) error { return nil }

// fakeRecordings is a store holding one complete recording, testRec, and a control for call c1 (recordable), c2
// (not recordable), room r1 (recordable) and room conf (ConfBridge).
type fakeRecordings struct{ file string }

func (f *fakeRecordings) meta() recording.Meta {
	return recording.Meta{ID: testRec, CallID: "c1", StartedBy: "policy", State: recording.StateComplete, Format: "wav", Bytes: 4}
}

func (f *fakeRecordings) List() ([]recording.Meta, error) { return []recording.Meta{f.meta()}, nil }
func (f *fakeRecordings) Get(id string) (recording.Meta, error) {
	if id != testRec {
		return recording.Meta{}, recording.ErrNotFound
	}
	return f.meta(), nil
}
func (f *fakeRecordings) Open(id string) (*os.File, recording.Meta, error) {
	m, err := f.Get(id)
	if err != nil {
		return nil, m, err
	}
	fh, err := os.Open(f.file)
	return fh, m, err
}
func (f *fakeRecordings) Delete(_ context.Context, id string) error {
	_, err := f.Get(id)
	return err
}
func (f *fakeRecordings) RecordCall(_ context.Context, id string, start bool, _ string) (string, error) {
	switch {
	case id == "c2":
		return "", recording.ErrNotRecordable
	case id != "c1":
		return "", &call.Refusal{Code: wire.CodeUnknownCall, Message: "no call in progress"}
	case !start:
		return "", call.ErrNotRecording
	}
	return testRec, nil
}
func (f *fakeRecordings) RecordRoom(_ context.Context, room string, start bool, _ string) (string, error) {
	switch {
	case !start:
		return "", call.ErrNotRecording
	case room == "conf":
		return "", rooms.ErrNotRecordable
	case room != "r1":
		return "", rooms.ErrNotFound
	}
	return testRec, nil
}

// docServer is the API with every feature over fakes: full has a number store, token signing, tickets and
// recordings; without, each of them is off (as on a server that does not configure it).
func docServer(t *testing.T, full bool) (*Server, *fakeCalls) {
	t.Helper()
	keys, err := auth.NewAPIKeys(map[string]string{"crm": testKey})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(keys, log)
	rm := rooms.New(rooms.Options{Logger: log, NewBackend: func(kind, _ string) rooms.Backend { return nullBackend{kind} }})
	for _, o := range []rooms.CreateOptions{{ID: "r1"}, {ID: "conf", Backend: rooms.BackendConfBridge}} {
		if _, err := rm.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	// r1 has a customer who joined with a ticket and shares a screen; conf is empty.
	m, err := rm.Join(context.Background(), "r1", rooms.JoinSpec{Kind: rooms.KindBrowser, Name: "Jane", CallerID: "jane",
		Role: rooms.RoleCustomer, Channel: "pb.test.1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rm.SetSharing("r1", m.ID(), true); err != nil {
		t.Fatal(err)
	}
	calls := &fakeCalls{}
	s.RegisterCalls(calls)
	s.RegisterCallRecords(&fakeRecords{})
	if !full {
		s.RegisterRooms(RoomsDeps{Rooms: rm, Logger: log})
		s.RegisterTickets(rm, nil)
		s.RegisterRecordings(nil, nil)
		return s, calls
	}
	signer, err := auth.NewSigner([]byte("0123456789abcdef0123456789abcdef0123456789abcdef"), "patchbay")
	if err != nil {
		t.Fatal(err)
	}
	numbers := dialplan.NewMemoryStore()
	if err := numbers.Map(context.Background(), "+442079460000", "r1", 0); err != nil {
		t.Fatal(err)
	}
	s.RegisterRooms(RoomsDeps{Rooms: rm, Numbers: numbers, Signer: signer, Logger: log})
	s.RegisterTickets(rm, tickets.NewMemory())
	file := filepath.Join(t.TempDir(), testRec+".wav")
	if err := os.WriteFile(file, []byte("RIFF"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := &fakeRecordings{file: file}
	s.RegisterRecordings(rec, rec)
	return s, calls
}

// documented reports whether the OpenAPI document promises status for the operation r reached: listed under it,
// or one the document's description promises for any request (401, 413, 500, and 400 for a request body).
func documented(t *testing.T, s *Server, doc map[string]any, r *http.Request, status int) bool {
	t.Helper()
	_, pattern := s.mux.Handler(r)
	method, path, _ := strings.Cut(pattern, " ")
	path = strings.TrimPrefix(path, Prefix)
	op, _ := jsonPath(doc, "paths", path, strings.ToLower(method)).(map[string]any)
	if op == nil {
		t.Errorf("%s %s: no operation %s %s in the OpenAPI document", r.Method, r.URL, method, path)
		return false
	}
	switch status {
	case http.StatusUnauthorized, http.StatusRequestEntityTooLarge, http.StatusInternalServerError:
		return true
	case http.StatusBadRequest:
		if op["requestBody"] != nil {
			return true
		}
	}
	return jsonPath(op, "responses", strconv.Itoa(status)) != nil
}

// replySchema is the JSON schema the document gives for the reply of status to r, nil if none.
func replySchema(s *Server, doc map[string]any, r *http.Request, status int) map[string]any {
	_, pattern := s.mux.Handler(r)
	method, path, _ := strings.Cut(pattern, " ")
	schema, _ := jsonPath(doc, "paths", strings.TrimPrefix(path, Prefix), strings.ToLower(method), "responses",
		strconv.Itoa(status), "content", "application/json", "schema").(map[string]any)
	return schema
}

// checkShape reports where v does not have the shape schema documents: a field the schema does not name, a required
// field missing, a value of another JSON type or outside its enum. It knows the subset of JSON Schema the fragments
// use ($ref, allOf, type, properties, required, items, enum).
func checkShape(t *testing.T, doc, schema map[string]any, v any, at string) {
	t.Helper()
	schema = resolve(doc, schema)
	if all, ok := schema["allOf"].([]any); ok {
		merged := map[string]any{"type": "object"}
		props, required := map[string]any{}, []any{}
		for _, sub := range all {
			sub := resolve(doc, sub.(map[string]any))
			for k, p := range sub["properties"].(map[string]any) {
				props[k] = p
			}
			if r, ok := sub["required"].([]any); ok {
				required = append(required, r...)
			}
		}
		merged["properties"], merged["required"] = props, required
		schema = merged
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, v) {
		t.Errorf("%s: %v is not one of %v", at, v, enum)
	}
	switch schema["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s: %v is not an object", at, v)
			return
		}
		props, _ := schema["properties"].(map[string]any)
		required, _ := schema["required"].([]any)
		for _, r := range required {
			if _, ok := obj[r.(string)]; !ok {
				t.Errorf("%s: required field %s is missing", at, r)
			}
		}
		for k, fv := range obj {
			p, ok := props[k].(map[string]any)
			if !ok {
				t.Errorf("%s: field %s is not in the document", at, k)
				continue
			}
			checkShape(t, doc, p, fv, at+"."+k)
		}
	case "array":
		list, ok := v.([]any)
		if !ok {
			t.Errorf("%s: %v is not an array", at, v)
			return
		}
		for i, e := range list {
			checkShape(t, doc, schema["items"].(map[string]any), e, at+"["+strconv.Itoa(i)+"]")
		}
	case "string":
		if _, ok := v.(string); !ok {
			t.Errorf("%s: %v is not a string", at, v)
		}
	case "number", "integer":
		if f, ok := v.(float64); !ok || schema["type"] == "integer" && f != float64(int64(f)) {
			t.Errorf("%s: %v is not a%s %s", at, v, map[bool]string{true: "n", false: ""}[schema["type"] == "integer"], schema["type"])
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			t.Errorf("%s: %v is not a boolean", at, v)
		}
	}
}

// TestRepliesAreDocumented drives every operation through its success and its errors, checks each reply's status and
// code, and that the OpenAPI document lists that status for the operation; every error is a JSON Error.
func TestRepliesAreDocumented(t *testing.T) {
	doc, err := mergeFragments(fragments)
	if err != nil {
		t.Fatal(err)
	}
	bearer := "Bearer " + testKey
	for _, tc := range []struct {
		full               bool
		method, path, body string
		auth               string // Authorization header; "" is the test key
		header             [2]string
		status             int
		code               string
	}{
		// authentication
		{full: true, method: "GET", path: "/rooms", auth: "bearer " + testKey, status: 200},
		{full: true, method: "GET", path: "/rooms", auth: "BEARER  " + testKey + " ", status: 200},
		{full: true, method: "GET", path: "/rooms", auth: "-", header: [2]string{"X-API-Key", testKey}, status: 200},
		{full: true, method: "GET", path: "/rooms", auth: "Basic eDp5", header: [2]string{"X-API-Key", testKey}, status: 200},
		{full: true, method: "GET", path: "/rooms", auth: "Bearer " + testKey + "x", status: 401, code: wire.CodeUnauthorized},
		{full: true, method: "GET", path: "/rooms", auth: "-", status: 401, code: wire.CodeUnauthorized},
		// bodies
		{full: true, method: "POST", path: "/rooms", body: "\n {\"id\":\"r9\"}\n", status: 201},
		{full: true, method: "POST", path: "/rooms", body: "", status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms", body: "null", status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms", body: `["r9"]`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms", body: `{"id":`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms", body: `{"id":"r9",}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms", body: `{"grace_seconds":"60"}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms", body: `{"id":"r9"} {"id":"r8"}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms", body: `{"id":"r9"}` + strings.Repeat(" ", MaxBody), status: 413, code: wire.CodeTooLarge},
		{full: true, method: "POST", path: "/rooms", body: `{"name":"` + strings.Repeat("a", MaxBody) + `"}`, status: 413, code: wire.CodeTooLarge},
		// calls
		{full: true, method: "POST", path: "/calls", body: `{"to":"101","connect":{"create_room":true}}`, status: 201},
		{full: true, method: "POST", path: "/calls", body: `{"to":"101","connect":{"create_room":"yes"}}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/calls", body: `{"to":"101","connect":{"create_room":true},"ticket":{"user":"Jane Doe"}}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/calls", body: `{"to":"+19005550100","connect":{"create_room":true}}`, status: 403, code: wire.CodeForbiddenDestination},
		{full: true, method: "POST", path: "/calls", body: `{"to":"busy","connect":{"create_room":true}}`, status: 429, code: wire.CodeTooManyCalls},
		{full: true, method: "POST", path: "/calls", body: `{"to":"internal","connect":{"create_room":true}}`, status: 500, code: wire.CodeInternal},
		{full: true, method: "GET", path: "/calls/c1", status: 200},
		{full: true, method: "GET", path: "/calls/nope", status: 404, code: wire.CodeUnknownCall},
		{full: true, method: "DELETE", path: "/calls/nope", status: 404, code: wire.CodeUnknownCall},
		{full: true, method: "DELETE", path: "/calls/c1", status: 202},
		{full: true, method: "GET", path: "/calls?since=2026-11-29T12:00:00Z&limit=5", status: 200},
		{full: true, method: "GET", path: "/calls?limit=x", status: 400, code: wire.CodeBadRequest},
		// rooms
		{full: true, method: "POST", path: "/rooms", body: `{"id":"r2","backend":"confbridge"}`, status: 201},
		{full: true, method: "POST", path: "/rooms", body: `{"id":"r1"}`, status: 409, code: wire.CodeConflict},
		{full: true, method: "POST", path: "/rooms", body: `{"id":"bad id"}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms", body: `{"grace_seconds":86401}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "GET", path: "/rooms/r1", status: 200},
		{full: true, method: "HEAD", path: "/rooms/r1", status: 200},
		{full: true, method: "GET", path: "/rooms/nope", status: 404, code: wire.CodeNotFound},
		{full: true, method: "GET", path: "/rooms/r1/participants", status: 200},
		{full: true, method: "GET", path: "/rooms/nope/participants", status: 404, code: wire.CodeNotFound},
		{full: true, method: "POST", path: "/rooms/r1/participants/p-x/mute", body: `{"muted":true}`, status: 404, code: wire.CodeNotFound},
		{full: true, method: "POST", path: "/rooms/r1/participants/p-x/mute", body: `{}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "DELETE", path: "/rooms/r1/participants/p-x", status: 404, code: wire.CodeNotFound},
		{full: true, method: "DELETE", path: "/rooms/nope", status: 404, code: wire.CodeNotFound},
		{full: true, method: "DELETE", path: "/rooms/conf", status: 204},
		{full: true, method: "POST", path: "/rooms/r1/tokens", body: `{"user":"alice","role":"moderator"}`, status: 201},
		{full: true, method: "POST", path: "/rooms/r1/tokens", body: `{"user":"Alice"}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms/r1/tokens", body: `{"user":"alice","role":"agent"}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms/r1/tokens", body: `{"user":"alice","ttl_seconds":86401}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms/nope/tokens", body: `{"user":"alice"}`, status: 404, code: wire.CodeNotFound},
		{full: true, method: "POST", path: "/agent-tokens", body: `{"user":"agent-7","role":"supervisor"}`, status: 201},
		{full: true, method: "POST", path: "/agent-tokens", body: `{"user":"agent-7","role":"moderator"}`, status: 400, code: wire.CodeBadRequest},
		{method: "POST", path: "/rooms/r1/tokens", body: `{"user":"alice"}`, status: 503, code: wire.CodeUnavailable},
		{method: "POST", path: "/agent-tokens", body: `{"user":"alice"}`, status: 503, code: wire.CodeUnavailable},
		// numbers
		{full: true, method: "PUT", path: "/numbers/+44%2020%207946%200000", body: `{"room":"r1","ttl_seconds":60}`, status: 200},
		{full: true, method: "PUT", path: "/numbers/8200", body: `{"room":"nope"}`, status: 404, code: wire.CodeNotFound},
		{full: true, method: "PUT", path: "/numbers/8200", body: `{}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "PUT", path: "/numbers/8200", body: `{"room":"r1","ttl_seconds":31622401}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "PUT", path: "/numbers/abc", body: `{"room":"r1"}`, status: 400, code: wire.CodeInvalidNumber},
		{full: true, method: "GET", path: "/numbers", status: 200},
		{full: true, method: "GET", path: "/numbers/+442079460000", status: 200},
		{full: true, method: "GET", path: "/numbers/8201", status: 404, code: wire.CodeNotMapped},
		{full: true, method: "GET", path: "/numbers/abc", status: 400, code: wire.CodeInvalidNumber},
		{full: true, method: "DELETE", path: "/numbers/8201", status: 404, code: wire.CodeNotMapped},
		{full: true, method: "DELETE", path: "/numbers/abc", status: 400, code: wire.CodeInvalidNumber},
		{full: true, method: "DELETE", path: "/numbers/+442079460000", status: 204},
		{method: "GET", path: "/numbers", status: 503, code: wire.CodeUnavailable},
		{method: "PUT", path: "/numbers/8200", body: `{"room":"r1"}`, status: 503, code: wire.CodeUnavailable},
		{method: "GET", path: "/numbers/8200", status: 503, code: wire.CodeUnavailable},
		{method: "DELETE", path: "/numbers/8200", status: 503, code: wire.CodeUnavailable},
		// tickets
		{full: true, method: "POST", path: "/rooms/r1/tickets", body: `{}`, status: 201},
		{full: true, method: "POST", path: "/rooms/r1/tickets", body: `{"for_caller":"+442079460000","number":"8200"}`, status: 201},
		{full: true, method: "POST", path: "/rooms/r1/tickets", body: `{"name":"Jane Doe"}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms/r1/tickets", body: `{"number":"8200"}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms/r1/tickets", body: `{"user":"x"}`, status: 400, code: wire.CodeBadRequest},
		{full: true, method: "POST", path: "/rooms/nope/tickets", body: `{}`, status: 404, code: wire.CodeNotFound},
		{method: "POST", path: "/rooms/r1/tickets", body: `{}`, status: 503, code: wire.CodeUnavailable},
		// recordings
		{full: true, method: "GET", path: "/recordings", status: 200},
		{full: true, method: "GET", path: "/recordings/" + testRec, status: 200},
		{full: true, method: "GET", path: "/recordings/rec-nope", status: 404, code: wire.CodeNotFound},
		{full: true, method: "GET", path: "/recordings/" + testRec + "/file", status: 200},
		{full: true, method: "GET", path: "/recordings/" + testRec + "/file", header: [2]string{"Range", "bytes=0-1"}, status: 206},
		{full: true, method: "GET", path: "/recordings/" + testRec + "/file", header: [2]string{"Range", "bytes=100-"}, status: 416},
		{full: true, method: "GET", path: "/recordings/rec-nope/file", status: 404, code: wire.CodeNotFound},
		{full: true, method: "DELETE", path: "/recordings/" + testRec, status: 204},
		{full: true, method: "DELETE", path: "/recordings/rec-nope", status: 404, code: wire.CodeNotFound},
		{full: true, method: "POST", path: "/calls/c1/recording", status: 201},
		{full: true, method: "POST", path: "/calls/c2/recording", status: 409, code: wire.CodeConflict},
		{full: true, method: "POST", path: "/calls/nope/recording", status: 404, code: wire.CodeUnknownCall},
		{full: true, method: "DELETE", path: "/calls/c1/recording", status: 409, code: wire.CodeConflict},
		{full: true, method: "DELETE", path: "/calls/nope/recording", status: 404, code: wire.CodeUnknownCall},
		{full: true, method: "POST", path: "/rooms/r1/recording", status: 201},
		{full: true, method: "POST", path: "/rooms/conf/recording", status: 409, code: wire.CodeConflict},
		{full: true, method: "POST", path: "/rooms/nope/recording", status: 404, code: wire.CodeUnknownRoom},
		{full: true, method: "DELETE", path: "/rooms/r1/recording", status: 409, code: wire.CodeConflict},
		{method: "GET", path: "/recordings", status: 503, code: wire.CodeUnavailable},
		{method: "GET", path: "/recordings/" + testRec, status: 503, code: wire.CodeUnavailable},
		{method: "GET", path: "/recordings/" + testRec + "/file", status: 503, code: wire.CodeUnavailable},
		{method: "DELETE", path: "/recordings/" + testRec, status: 503, code: wire.CodeUnavailable},
		{method: "POST", path: "/calls/c1/recording", status: 503, code: wire.CodeUnavailable},
		{method: "DELETE", path: "/calls/c1/recording", status: 503, code: wire.CodeUnavailable},
		{method: "POST", path: "/rooms/r1/recording", status: 503, code: wire.CodeUnavailable},
		{method: "DELETE", path: "/rooms/r1/recording", status: 503, code: wire.CodeUnavailable},
	} {
		name := tc.method + " " + tc.path + " " + tc.body
		if len(name) > 120 {
			name = name[:120]
		}
		t.Run(name, func(t *testing.T) {
			s, calls := docServer(t, tc.full)
			req := httptest.NewRequest(tc.method, Prefix+tc.path, strings.NewReader(tc.body))
			switch tc.auth {
			case "":
				req.Header.Set("Authorization", bearer)
			case "-":
			default:
				req.Header.Set("Authorization", tc.auth)
			}
			if tc.header[0] != "" {
				req.Header.Set(tc.header[0], tc.header[1])
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if !documented(t, s, doc, req, rec.Code) {
				t.Errorf("status %d is not in the OpenAPI document for this operation", rec.Code)
			}
			if schema := replySchema(s, doc, req, rec.Code); schema != nil && rec.Code < 300 && req.Method != "HEAD" {
				var body any
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
					t.Fatalf("reply is not JSON: %v: %s", err, rec.Body)
				}
				checkShape(t, doc, schema, body, "reply")
			}
			if rec.Code < 400 || rec.Code == http.StatusRequestedRangeNotSatisfiable {
				return
			}
			var e Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != tc.code || e.Message == "" {
				t.Errorf("body %s, want a JSON %s error", rec.Body, tc.code)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			for _, leak := range []string{"Go struct", "Go value", "float64", "secret"} {
				if strings.Contains(e.Message, leak) {
					t.Errorf("message %q shows internals (%q)", e.Message, leak)
				}
			}
			if tc.path == "/calls" && strings.Contains(tc.body, "Jane Doe") && calls.last.To != "" {
				t.Errorf("a bad ticket.user reached the call manager: %+v", calls.last)
			}
		})
	}
}

// TestRoomAlwaysListsParticipants: GET /rooms/{room} of an empty room has participant_list [], as documented
// (required), not an absent field.
func TestRoomAlwaysListsParticipants(t *testing.T) {
	s, _ := docServer(t, true)
	req := httptest.NewRequest("GET", Prefix+"/rooms/conf", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var out map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || string(out["participant_list"]) != "[]" {
		t.Fatalf("%d %s: want participant_list []", rec.Code, rec.Body)
	}
}

// TestBodyErrorsNameTheProblem: a refused body is explained in JSON terms.
func TestBodyErrorsNameTheProblem(t *testing.T) {
	s, _ := docServer(t, true)
	for body, want := range map[string]string{
		``:                        "empty",
		`null`:                    "must be a JSON object, not null",
		`[1]`:                     "not an array",
		`{"id":`:                  "ends in the middle",
		`{"id":"a",}`:             "not valid JSON (at byte",
		`{"grace_seconds":"60"}`:  "field grace_seconds must be a number, not string",
		`{"grace_seconds":1e400}`: "field grace_seconds is out of range: 1e400",
		`{"idd":"a"}`:             `unknown field "idd"; see /api/v1/openapi.json`,
		`{"id":"a"}` + strings.Repeat(" ", MaxBody): "over 65536 bytes",
	} {
		req := httptest.NewRequest("POST", Prefix+"/rooms", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		var e Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Message, want) {
			t.Errorf("%.40q: %d %s, want a message with %q", body, rec.Code, rec.Body, want)
		}
	}
}

// TestBodyFieldErrors: a field of the wrong JSON type, or a number too large for it, is named in the reply.
func TestBodyFieldErrors(t *testing.T) {
	s, _ := docServer(t, true)
	for body, want := range map[string]string{
		`{"to":"101","map_ttl_seconds":1.5}`:       "field map_ttl_seconds must be an integer, not number 1.5",
		`{"to":"101","map_ttl_seconds":1e30}`:      "field map_ttl_seconds is out of range: 1e30",
		`{"to":"101","connect":{"create_room":1}}`: "field connect.create_room must be true or false, not number",
		`{"to":["101"]}`:                           "field to must be a string, not array",
		`{"to":"101","ticket":"participant"}`:      "field ticket must be an object, not string",
	} {
		req := httptest.NewRequest("POST", Prefix+"/calls", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		var e Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != 400 || e.Message != want {
			t.Errorf("%s: %d %s, want 400 %q", body, rec.Code, rec.Body, want)
		}
	}
}
