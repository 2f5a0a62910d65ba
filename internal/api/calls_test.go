package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/call"
	"github.com/patchbay/patchbay/wire"
)

type fakeCalls struct{ last call.OriginateRequest }

func (f *fakeCalls) Originate(_ context.Context, r call.OriginateRequest) (call.OriginateResult, error) {
	f.last = r
	switch r.To {
	case "+19005550100":
		return call.OriginateResult{}, &call.Refusal{Code: wire.CodeForbiddenDestination, Message: "blocked"}
	case "busy":
		return call.OriginateResult{}, &call.Refusal{Code: wire.CodeTooManyCalls, Message: "limit"}
	case "internal":
		return call.OriginateResult{}, &call.Refusal{Code: wire.CodeInternal, Message: "limiter: secret detail"}
	}
	return call.OriginateResult{ID: "c1", State: call.StateDialing, Room: "r1", Ticket: "pbt_x"}, nil
}

func (f *fakeCalls) APICall(id, key string) (call.APICall, bool) {
	if id == "c1" && key == "crm" {
		return call.APICall{ID: "c1", State: call.StateRinging, To: "101", Kind: "extension", Created: time.Now().UTC()}, true
	}
	return call.APICall{}, false
}

func (f *fakeCalls) HangupAPICall(id, key string) error {
	if _, ok := f.APICall(id, key); !ok {
		return &call.Refusal{Code: wire.CodeUnknownCall, Message: "no such call"}
	}
	return nil
}

func TestCallsEndpoints(t *testing.T) {
	keys, err := auth.NewAPIKeys(map[string]string{"crm": "crm-key-0123456789abcdef", "other": "other-key-0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	s := New(keys, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f := &fakeCalls{}
	s.RegisterCalls(f)
	do := func(method, path, key, body string) (int, map[string]any) {
		req := httptest.NewRequest(method, Prefix+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		var out map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &out)
		return w.Code, out
	}
	const crm = "crm-key-0123456789abcdef"
	if st, out := do("POST", "/calls", crm, `{"to":"101","connect":{"create_room":true},"ticket":{"role":"moderator"}}`); st != http.StatusCreated || out["ticket"] != "pbt_x" {
		t.Errorf("create: %d %v", st, out)
	}
	if f.last.APIKey != "crm" || !f.last.CreateRoom || f.last.TicketRole != "moderator" {
		t.Errorf("request passed on as %+v", f.last)
	}
	for body, want := range map[string]struct {
		status int
		code   string
	}{
		`{"to":"+19005550100","connect":{"create_room":true}}`: {403, wire.CodeForbiddenDestination},
		`{"to":"busy","connect":{"create_room":true}}`:         {429, wire.CodeTooManyCalls},
		`{"to":"101","from":"+1"}`:                             {400, "bad_request"},
		`{"to":"101","map_ttl_seconds":-1}`:                    {400, "bad_request"},
	} {
		if st, out := do("POST", "/calls", crm, body); st != want.status || out["error"] != want.code {
			t.Errorf("%s: %d %v, want %d %s", body, st, out, want.status, want.code)
		}
	}
	if st, out := do("GET", "/calls/c1", crm, ""); st != 200 || out["state"] != "ringing" {
		t.Errorf("get: %d %v", st, out)
	}
	if st, _ := do("GET", "/calls/c1", "other-key-0123456789abcdef", ""); st != 404 {
		t.Errorf("another key sees the call: %d", st)
	}
	if st, _ := do("DELETE", "/calls/c1", "other-key-0123456789abcdef", ""); st != 404 {
		t.Errorf("another key hangs up the call: %d", st)
	}
	if st, _ := do("DELETE", "/calls/c1", crm, ""); st != 202 {
		t.Errorf("delete: %d", st)
	}
}
