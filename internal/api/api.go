// Package api is Patchbay's REST API for trusted backends under /api/v1. Every request carries an API key
// (Authorization: Bearer KEY); each feature registers its routes and an OpenAPI fragment of its own.
package api

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"reflect"
	"sort"
	"strings"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/wire"
)

// Prefix is where the API lives.
const Prefix = "/api/v1"

// MaxBody bounds request bodies.
const MaxBody = 64 << 10

// Error is a JSON error reply with a stable code.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf makes an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// HandlerFunc serves one authenticated request; caller is the API key's name. A returned *Error is sent as is;
// any other error is logged and answered with 500 internal, without its text (it may hold internals).
type HandlerFunc func(w http.ResponseWriter, r *http.Request, caller string) error

// Server routes /api/v1.
type Server struct {
	keys   *auth.APIKeys
	log    *slog.Logger
	mux    *http.ServeMux
	routes []string // every pattern registered through Handle, for the test that keeps the OpenAPI document true
}

// New returns an API server; with no keys configured every request is refused (the API is off).
func New(keys *auth.APIKeys, log *slog.Logger) *Server {
	s := &Server{keys: keys, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET "+Prefix+"/openapi.json", s.openAPI)
	return s
}

// Handle registers h for a Go 1.22 pattern relative to Prefix, e.g. Handle("POST /rooms", h).
func (s *Server) Handle(pattern string, h HandlerFunc) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		panic("api: pattern needs a method: " + pattern) // a programming error at start-up, never input
	}
	s.routes = append(s.routes, method+" "+path)
	s.mux.HandleFunc(method+" "+Prefix+path, func(w http.ResponseWriter, r *http.Request) {
		caller, ok := s.authenticate(r)
		if !ok {
			s.log.Warn("security: API request with a missing or wrong key", "remote", r.RemoteAddr, "path", r.URL.Path)
			WriteError(w, Errorf(http.StatusUnauthorized, wire.CodeUnauthorized, "send a valid API key as 'Authorization: Bearer KEY'"))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		if err := h(w, r, caller); err != nil {
			var ae *Error
			if !errors.As(err, &ae) {
				s.log.Error("API request failed", "path", r.URL.Path, "caller", caller, "err", err)
				ae = Errorf(http.StatusInternalServerError, wire.CodeInternal, "internal error; see Patchbay's log")
			}
			WriteError(w, ae)
		}
	})
}

// ServeHTTP implements http.Handler. A path or method the API does not have gets a JSON error like any other
// (not_found 404, or bad_request 405 with the Allow header), not the mux's plain text.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r) // the mux itself, which sets the path values (Handler does not)
		return
	}
	probe := &statusProbe{header: http.Header{}}
	h.ServeHTTP(probe, r) // the mux's own 404 or 405, to learn which and the Allow header
	switch allow := probe.header.Get("Allow"); probe.status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", allow)
		WriteError(w, Errorf(http.StatusMethodNotAllowed, wire.CodeBadRequest, "method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow))
	case http.StatusNotFound:
		WriteError(w, Errorf(http.StatusNotFound, wire.CodeNotFound, "no API endpoint %s %s; see %s/openapi.json", r.Method, r.URL.Path, Prefix))
	default: // e.g. the mux's redirect of a cleaned path
		h.ServeHTTP(w, r)
	}
}

// statusProbe records the status and headers a handler writes and drops its body.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header { return p.header }
func (p *statusProbe) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}
func (p *statusProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

func (s *Server) authenticate(r *http.Request) (string, bool) {
	if s.keys == nil {
		return "", false
	}
	key := r.Header.Get("X-API-Key")
	// The scheme name is case-insensitive (RFC 9110, 11.1): "bearer KEY" is as good as "Bearer KEY".
	if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		key = cred
	}
	key = strings.TrimSpace(key)
	if key == "" {
		return "", false
	}
	return s.keys.Check(key)
}

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes e as JSON.
func WriteError(w http.ResponseWriter, e *Error) { WriteJSON(w, e.Status, e) }

// DecodeJSON reads a JSON object from the body into v, refusing any other JSON value, unknown fields and trailing
// data. The body is read as JSON whatever its Content-Type says.
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if errors.As(err, new(*http.MaxBytesError)) {
			return bodyError(err)
		}
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "request body has data after the JSON object")
	}
	if raw[0] != '{' {
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "request body must be a JSON object, not %s", jsonKind(raw[0]))
	}
	obj := json.NewDecoder(bytes.NewReader(raw))
	obj.DisallowUnknownFields()
	if err := obj.Decode(v); err != nil {
		return bodyError(err)
	}
	return nil
}

// bodyError says what is wrong with a request body in a client's terms (JSON fields and types, not Go's).
func bodyError(err error) *Error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, new(*http.MaxBytesError)):
		return Errorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "request body over %d bytes", MaxBody)
	case errors.Is(err, io.EOF):
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "request body ends in the middle of its JSON")
	case errors.As(err, &syntax):
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "request body is not valid JSON (at byte %d): %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typ) && typ.Field != "":
		num, isNum := strings.CutPrefix(typ.Value, "number ")
		if isNum && (jsonTypeOf(typ.Type) == "a number" || !strings.Contains(num, ".")) {
			return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "field %s is out of range: %s", typ.Field, num)
		}
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "field %s must be %s, not %s", typ.Field, jsonTypeOf(typ.Type), typ.Value)
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "request body has unknown field %s; see %s/openapi.json", field, Prefix)
	}
	return Errorf(http.StatusBadRequest, wire.CodeBadRequest, "request body is not valid JSON for this endpoint: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names the JSON value that starts with b.
func jsonKind(b byte) string {
	switch b {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// jsonTypeOf names the JSON type a Go field type is decoded from.
func jsonTypeOf(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

//go:embed openapi/*.json
var fragments embed.FS

// openAPI serves one OpenAPI 3.1 document merged from the fragments in openapi/: base.json holds the header and
// components, each feature's file adds "paths" (and "components.schemas").
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) {
	doc, err := mergeFragments(fragments)
	if err != nil {
		s.log.Error("OpenAPI fragments do not merge", "err", err)
		WriteError(w, Errorf(http.StatusInternalServerError, wire.CodeInternal, "OpenAPI document unavailable"))
		return
	}
	WriteJSON(w, http.StatusOK, doc)
}

func mergeFragments(fsys fs.FS) (map[string]any, error) {
	names, err := fs.Glob(fsys, "openapi/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	doc := map[string]any{}
	paths := map[string]any{}
	schemas := map[string]any{}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		var frag map[string]any
		if err := json.Unmarshal(b, &frag); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		for k, v := range frag {
			switch k {
			case "paths":
				// Two fragments may describe one path (POST /calls for click-to-call, GET /calls for records),
				// never the same operation of it.
				for p, item := range v.(map[string]any) {
					prev, ok := paths[p].(map[string]any)
					if !ok {
						paths[p] = item
						continue
					}
					for op, spec := range item.(map[string]any) {
						if _, dup := prev[op]; dup {
							return nil, fmt.Errorf("%s: %s %s defined twice", n, op, p)
						}
						prev[op] = spec
					}
				}
			case "components":
				if sc, ok := v.(map[string]any)["schemas"].(map[string]any); ok {
					for name, s := range sc {
						schemas[name] = s
					}
				}
				for ck, cv := range v.(map[string]any) {
					if ck != "schemas" {
						comps, _ := doc["components"].(map[string]any)
						if comps == nil {
							comps = map[string]any{}
							doc["components"] = comps
						}
						comps[ck] = cv
					}
				}
			default:
				doc[k] = v
			}
		}
	}
	doc["paths"] = paths
	comps, _ := doc["components"].(map[string]any)
	if comps == nil {
		comps = map[string]any{}
		doc["components"] = comps
	}
	comps["schemas"] = schemas
	return doc, nil
}
