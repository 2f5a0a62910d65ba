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
// answers it without a key), the path parameters are the route's wildcards, every error reply is the Error object
// (but a file server's 416), every request body refuses unknown fields as DecodeJSON does, every $ref resolves,
// and the error codes named in response descriptions are wire codes.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := allRoutes(t)
	doc, err := mergeFragments(fragments)
	if err != nil {
		t.Fatal(err)
	}
	knownFieldNames := fieldNames(doc)
	checkRefs(t, doc, doc, "#")
	var documented []string
	opIDs := map[string]string{}
	for path, item := range doc["paths"].(map[string]any) {
		for op, spec := range item.(map[string]any) {
			if op == "parameters" {
				continue
			}
			route := strings.ToUpper(op) + " " + path
			documented = append(documented, route)
			checkPathParams(t, route, path, item.(map[string]any), spec.(map[string]any))
			if id, _ := spec.(map[string]any)["operationId"].(string); id == "" || opIDs[id] != "" {
				t.Errorf("%s: operationId %q is missing or also %s's", route, id, opIDs[id])
			} else {
				opIDs[id] = route
			}
			if body, ok := spec.(map[string]any)["requestBody"].(map[string]any); ok {
				schema, _ := body["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
				checkClosed(t, doc, route+" request body", schema)
			}
			responses := spec.(map[string]any)["responses"].(map[string]any)
			if route != "GET /openapi.json" && responses["401"] == nil {
				t.Errorf("%s does not document 401 (unauthorized)", route)
			}
			for status, r := range responses {
				desc, _ := r.(map[string]any)["description"].(string)
				if status < "400" {
					continue
				}
				if ref, _ := jsonPath(r, "content", "application/json", "schema", "$ref").(string); ref != "#/components/schemas/Error" && status != "416" {
					t.Errorf("%s %s is not documented as an Error object", route, status)
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

// fieldNames are the snake_case words a response description may name besides wire codes: the document's
// property and parameter names.
func fieldNames(v any) map[string]bool {
	names := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok {
				for name := range props {
					names[name] = true
				}
			}
			if name, ok := v["name"].(string); ok && v["in"] != nil {
				names[name] = true
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return names
}

// jsonPath follows keys through nested objects; nil when one is missing.
func jsonPath(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// resolve follows a local $ref ("#/components/schemas/X").
func resolve(doc map[string]any, schema map[string]any) map[string]any {
	ref, ok := schema["$ref"].(string)
	if !ok {
		return schema
	}
	target, _ := jsonPath(doc, strings.Split(strings.TrimPrefix(ref, "#/"), "/")...).(map[string]any)
	return target
}

// checkRefs reports every $ref that names nothing in the document.
func checkRefs(t *testing.T, doc map[string]any, v any, at string) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		if ref, ok := v["$ref"].(string); ok && resolve(doc, v) == nil {
			t.Errorf("%s: $ref %s names nothing", at, ref)
		}
		for k, e := range v {
			checkRefs(t, doc, e, at+"/"+k)
		}
	case []any:
		for _, e := range v {
			checkRefs(t, doc, e, at)
		}
	}
}

// checkClosed reports an object schema of a request body (or an object inside it) that does not say
// additionalProperties: false, when DecodeJSON refuses unknown fields.
func checkClosed(t *testing.T, doc map[string]any, at string, schema map[string]any) {
	t.Helper()
	schema = resolve(doc, schema)
	if schema == nil || schema["type"] != "object" {
		return
	}
	if schema["additionalProperties"] != false {
		t.Errorf("%s: an object without additionalProperties: false, but unknown fields are refused", at)
	}
	props, _ := schema["properties"].(map[string]any)
	for name, p := range props {
		checkClosed(t, doc, at+"."+name, p.(map[string]any))
	}
}

// checkPathParams reports a route whose path parameters (on the path or the operation) are not its wildcards, or
// are not required.
func checkPathParams(t *testing.T, route, path string, item, op map[string]any) {
	t.Helper()
	var want []string
	for _, seg := range strings.Split(path, "/") {
		if name, ok := strings.CutPrefix(seg, "{"); ok {
			want = append(want, strings.TrimSuffix(name, "}"))
		}
	}
	var got []string
	for _, list := range []any{item["parameters"], op["parameters"]} {
		ps, _ := list.([]any)
		for _, p := range ps {
			p := p.(map[string]any)
			if p["in"] != "path" {
				continue
			}
			got = append(got, p["name"].(string))
			if p["required"] != true {
				t.Errorf("%s: path parameter %v is not required", route, p["name"])
			}
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(want, got) {
		t.Errorf("%s: path parameters %v, want %v", route, got, want)
	}
}

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
