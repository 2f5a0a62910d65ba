package aritest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequests feeds arbitrary methods, paths, queries and bodies straight to
// the handler: net/http would swallow a handler panic, so this calls it
// directly. Every answer must be a status with, for errors, a JSON message.
func FuzzRequests(f *testing.F) {
	for _, seed := range []struct{ method, target, body string }{
		{"POST", "/ari/channels?endpoint=PJSIP/1&app=a&channelId=c1", `{"variables":{"CALLERID(num)":"1"}}`},
		{"POST", "/ari/channels/create?endpoint=Local/1@x&app=a", ""},
		{"POST", "/ari/channels/externalMedia?app=a&external_host=127.0.0.1:1&format=ulaw", ""},
		{"POST", "/ari/channels/c1/dial?timeout=-5", ""},
		{"POST", "/ari/channels/c1/continue?priority=x", ""},
		{"DELETE", "/ari/channels/c1?reason_code=999999999999", ""},
		{"POST", "/ari/bridges/b1/addChannel?channel=,,,", ""},
		{"POST", "/ari/bridges?type=mixing,holding", ""},
		{"POST", "/ari/channels/c1/play/p1/extra?media=", ""},
		{"POST", "/ari/applications/a/subscription?eventSource=::", ""},
		{"GET", "/ari/recordings/live/%2e%2e", ""},
		{"PUT", "/ari/channels", `[1,2]`},
		{"POST", "/ari/channels/c1/snoop?spy=up", `{"app": 5}`},
	} {
		f.Add(seed.method, seed.target, seed.body)
	}
	s := New(f)
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(method, " \t\r\n") || method == "" {
			t.Skip()
		}
		if strings.HasPrefix(target, "/ari/events") {
			t.Skip() // a WebSocket upgrade needs a real connection
		}
		req, err := http.NewRequest(method, "http://fake"+target, strings.NewReader(body))
		if err != nil {
			t.Skip()
		}
		req.SetBasicAuth(s.user, s.pass)
		rec := httptest.NewRecorder()
		s.serveHTTP(rec, req)
		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("%s %s: status %d", method, target, rec.Code)
		}
		if rec.Code >= 400 && !strings.Contains(rec.Body.String(), `"message"`) {
			t.Fatalf("%s %s: %d without a JSON message: %q", method, target, rec.Code, rec.Body.String())
		}
	})
}
