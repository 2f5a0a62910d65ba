package ari

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestNewValidates(t *testing.T) {
	ok := Config{URL: "http://127.0.0.1:8088", Username: "u", Password: "p", Application: "a"}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"ok", func(*Config) {}, ""},
		{"trailing /ari is tolerated", func(c *Config) { c.URL = "http://127.0.0.1:8088/ari/" }, ""},
		{"empty URL", func(c *Config) { c.URL = "" }, "URL is empty"},
		{"bad scheme", func(c *Config) { c.URL = "ftp://127.0.0.1" }, "scheme"},
		{"no host", func(c *Config) { c.URL = "http://" }, "no host"},
		{"credentials in URL", func(c *Config) { c.URL = "http://u:p@127.0.0.1:8088" }, "contains credentials"},
		{"query", func(c *Config) { c.URL = "http://127.0.0.1:8088?x=1" }, "query"},
		{"no user", func(c *Config) { c.Username = "" }, "Username"},
		{"no password", func(c *Config) { c.Password = "" }, "Password"},
		{"no app", func(c *Config) { c.Application = "" }, "Application is required"},
		{"app with comma", func(c *Config) { c.Application = "a,b" }, "must not contain"},
		{"negative ping", func(c *Config) { c.PingInterval = -1 }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			c, err := New(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.cfg.PingInterval != DefaultPingInterval || c.cfg.MaxBackoff != DefaultMaxBackoff {
					t.Errorf("defaults not applied: %+v", c.cfg)
				}
				if got := c.restURL("/channels", nil); got != "http://127.0.0.1:8088/ari/channels" {
					t.Errorf("restURL = %q", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New err = %v, want containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "http://u:p@") {
				t.Errorf("error repeats credentials: %v", err)
			}
		})
	}
}

func TestEventsURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"http://127.0.0.1:8088", "ws://127.0.0.1:8088/ari/events?app=my-app&subscribeAll=false"},
		{"https://127.0.0.1:8089/", "wss://127.0.0.1:8089/ari/events?app=my-app&subscribeAll=false"},
		{"http://127.0.0.1:8088/asterisk", "ws://127.0.0.1:8088/asterisk/ari/events?app=my-app&subscribeAll=false"},
	} {
		c, err := New(Config{URL: tt.in, Username: "u", Password: "p", Application: "my-app"})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.eventsURL(); got != tt.want {
			t.Errorf("eventsURL(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestRESTRequests(t *testing.T) {
	f := newFakeARI(t)
	c, _ := newTestClient(t, f, nil)
	ctx := context.Background()
	chJSON := map[string]any{"id": "pb-1", "name": "Local/600@internal-00000001;1", "state": "Down",
		"channelvars": map[string]string{"UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1", "UNICASTRTP_LOCAL_PORT": "18234"}}
	f.handle("POST /ari/channels", replyJSON(200, chJSON))
	f.handle("POST /ari/channels/externalMedia", replyJSON(200, chJSON))
	f.handle("DELETE /ari/channels/Local/600@internal-1;1", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	f.handle("POST /ari/bridges", replyJSON(200, map[string]any{"id": "br-1", "bridge_type": "mixing"}))
	f.handle("POST /ari/bridges/br-1/addChannel", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	f.handle("GET /ari/asterisk/variable", replyJSON(200, map[string]string{"value": "1234"}))
	f.handle("POST /ari/channels/pb-1/dtmf", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	f.handle("POST /ari/channels/pb-1/play", replyJSON(201, map[string]any{"id": "pl-1", "state": "queued"}))

	ch, err := c.Channels().Originate(ctx, OriginateRequest{
		Endpoint: "Local/600@internal", App: testApp, AppArgs: "a,b", Formats: "ulaw",
		ChannelID: "pb-1", OtherChannelID: "pb-2", CallerID: `"Alice" <100>`, Timeout: 1500 * time.Millisecond,
		Variables: map[string]string{"CALLERID(name)": "Alice"},
	})
	if err != nil || ch.ID != "pb-1" {
		t.Fatalf("Originate = %+v, %v", ch, err)
	}
	em, err := c.Channels().ExternalMedia(ctx, ExternalMediaRequest{App: testApp, ExternalHost: "127.0.0.1:40000", Format: "ulaw", ChannelID: "pb-em"})
	if err != nil {
		t.Fatalf("ExternalMedia: %v", err)
	}
	if em.LocalAddrPort() != "127.0.0.1:18234" {
		t.Errorf("LocalAddrPort = %q", em.LocalAddrPort())
	}
	if err := c.Channel("Local/600@internal-1;1").Hangup(ctx, "busy"); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	if _, err := c.Bridges().Create(ctx, BridgeRequest{ID: "br-1", Name: "room 7"}); err != nil {
		t.Fatalf("bridge create: %v", err)
	}
	if err := c.Bridge("br-1").AddChannel(ctx, AddChannelOptions{Role: "participant", AbsorbDTMF: true}, "pb-1", "pb-em"); err != nil {
		t.Fatalf("AddChannel: %v", err)
	}
	if v, err := c.Asterisk().Variable(ctx, "LAST_DTMF_READ"); err != nil || v != "1234" {
		t.Fatalf("Variable = %q, %v", v, err)
	}
	if err := c.Channel("pb-1").SendDTMF(ctx, "12#", DTMFOptions{Duration: 100 * time.Millisecond}); err != nil {
		t.Fatalf("SendDTMF: %v", err)
	}
	if pb, err := c.Channel("pb-1").Play(ctx, PlayOptions{Media: []string{"sound:hello", "tone:440"}, PlaybackID: "pl-1"}); err != nil || pb.ID != "pl-1" {
		t.Fatalf("Play = %+v, %v", pb, err)
	}

	reqs := f.requests()
	want := []struct {
		method, rawPath string
		query           url.Values
		bodyHas         string
	}{
		{"POST", "/ari/channels", url.Values{"endpoint": {"Local/600@internal"}, "app": {testApp}, "appArgs": {"a,b"},
			"formats": {"ulaw"}, "channelId": {"pb-1"}, "otherChannelId": {"pb-2"}, "callerId": {`"Alice" <100>`}, "timeout": {"2"}},
			`{"variables":{"CALLERID(name)":"Alice"}}`},
		{"POST", "/ari/channels/externalMedia", url.Values{"app": {testApp}, "external_host": {"127.0.0.1:40000"}, "format": {"ulaw"}, "channelId": {"pb-em"}}, ""},
		{"DELETE", "/ari/channels/Local%2F600@internal-1%3B1", url.Values{"reason": {"busy"}}, ""},
		{"POST", "/ari/bridges", url.Values{"type": {"mixing"}, "bridgeId": {"br-1"}, "name": {"room 7"}}, ""},
		{"POST", "/ari/bridges/br-1/addChannel", url.Values{"channel": {"pb-1,pb-em"}, "role": {"participant"}, "absorbDTMF": {"true"}}, ""},
		{"GET", "/ari/asterisk/variable", url.Values{"variable": {"LAST_DTMF_READ"}}, ""},
		{"POST", "/ari/channels/pb-1/dtmf", url.Values{"dtmf": {"12#"}, "duration": {"100"}}, ""},
		{"POST", "/ari/channels/pb-1/play", url.Values{"media": {"sound:hello,tone:440"}, "playbackId": {"pl-1"}}, ""},
	}
	if len(reqs) != len(want) {
		t.Fatalf("got %d requests, want %d: %+v", len(reqs), len(want), reqs)
	}
	for i, w := range want {
		r := reqs[i]
		if r.Method != w.method || r.RawPath != w.rawPath {
			t.Errorf("req %d: %s %s, want %s %s", i, r.Method, r.RawPath, w.method, w.rawPath)
		}
		got, _ := url.ParseQuery(r.Query)
		if got.Encode() != w.query.Encode() {
			t.Errorf("req %d query = %s, want %s", i, got.Encode(), w.query.Encode())
		}
		if w.bodyHas != "" && !strings.Contains(r.Body, w.bodyHas) {
			t.Errorf("req %d body = %s, want %s", i, r.Body, w.bodyHas)
		}
		if r.User != testUser || r.Pass != testPass {
			t.Errorf("req %d: basic auth %q/%q", i, r.User, r.Pass)
		}
	}
	chans, bridges := c.Tracked()
	if strings.Join(chans, ",") != "pb-1" || strings.Join(bridges, ",") != "br-1" {
		// pb-1 came back from both originate and externalMedia in this fake.
		t.Errorf("Tracked = %v %v", chans, bridges)
	}
}

func TestRequestValidation(t *testing.T) {
	c, err := New(Config{URL: "http://127.0.0.1:1", Username: "u", Password: "p", Application: "a"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, err := range map[string]error{
		"originate without endpoint": func() error { _, e := c.Channels().Originate(ctx, OriginateRequest{App: "a"}); return e }(),
		"originate without target":   func() error { _, e := c.Channels().Originate(ctx, OriginateRequest{Endpoint: "Local/1@x"}); return e }(),
		"externalMedia without host": func() error {
			_, e := c.Channels().ExternalMedia(ctx, ExternalMediaRequest{App: "a", Format: "ulaw"})
			return e
		}(),
		"play without media":       func() error { _, e := c.Channel("x").Play(ctx, PlayOptions{}); return e }(),
		"record without name":      func() error { _, e := c.Bridge("x").Record(ctx, RecordOptions{Format: "wav"}); return e }(),
		"addChannel without chans": c.Bridge("x").AddChannel(ctx, AddChannelOptions{}),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		status  int
		message string
		is      error
		wantIn  []string
	}{
		{401, "", ErrUnauthorized, []string{"401", "ari.conf", testUser}},
		{403, "", ErrForbidden, []string{"403", "read_only"}},
		{404, "Channel not found", ErrNotFound, []string{"404", "Channel not found", "/channels/nope"}},
		{409, "Channel not in Stasis application", ErrConflict, []string{"409", "not in Stasis"}},
		{400, "Bridge type not supported", ErrBadRequest, []string{"400"}},
		{412, "Channel in invalid state", ErrPrecondition, []string{"412"}},
		{422, "Endpoint not found", ErrUnprocessable, []string{"422"}},
		{500, "Allocation failed", nil, []string{"500", "Allocation failed"}},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			f := newFakeARI(t)
			c, _ := newTestClient(t, f, nil)
			f.handle("GET /ari/channels/nope", replyJSON(tt.status, map[string]string{"message": tt.message}))
			_, err := c.Channel("nope").Get(context.Background())
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != tt.status || ae.Message != tt.message || ae.Method != "GET" {
				t.Fatalf("err = %#v", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			if IsNotFound(err) != (tt.status == 404) {
				t.Errorf("IsNotFound = %v", IsNotFound(err))
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if strings.Contains(err.Error(), testPass) {
				t.Errorf("password in error: %v", err)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, err := New(Config{URL: "http://" + addr, Username: testUser, Password: testPass, Application: testApp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Asterisk().Ping(ctx)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	for _, s := range []string{"not reachable", addr, "http.conf"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if strings.Contains(err.Error(), testPass) {
		t.Errorf("password in error")
	}
	// The events socket says the same.
	_, err = c.dial(ctx)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "http.conf") {
		t.Errorf("dial err = %v", err)
	}
}

func TestContextCancelled(t *testing.T) {
	f := newFakeARI(t)
	c, _ := newTestClient(t, f, nil)
	block := make(chan struct{})
	defer close(block)
	f.handle("GET /ari/asterisk/ping", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Asterisk().Ping(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestParseExternalMedia(t *testing.T) {
	tests := []struct {
		vars     map[string]string
		addr     string
		connID   string
		wantErr  bool
		wantPort int
	}{
		{map[string]string{"UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1", "UNICASTRTP_LOCAL_PORT": "10042"}, "127.0.0.1:10042", "", false, 10042},
		{map[string]string{"MEDIA_WEBSOCKET_CONNECTION_ID": "abc-123"}, "", "abc-123", false, 0},
		{map[string]string{"UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1", "UNICASTRTP_LOCAL_PORT": "x"}, "", "", true, 0},
		{map[string]string{"UNICASTRTP_LOCAL_PORT": "70000"}, "", "", true, 0},
	}
	for _, tt := range tests {
		m, err := parseExternalMedia(Channel{ID: "c", ChannelVars: tt.vars})
		if (err != nil) != tt.wantErr {
			t.Errorf("%v: err = %v", tt.vars, err)
			continue
		}
		if err == nil && (m.LocalAddrPort() != tt.addr || m.ConnectionID != tt.connID || m.LocalPort != tt.wantPort) {
			t.Errorf("%v: got %+v", tt.vars, m)
		}
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if len(id) != 35 || seen[id] {
			t.Fatalf("bad or repeated ID %q", id)
		}
		seen[id] = true
	}
}

func TestBackoff(t *testing.T) {
	max := 2 * time.Second
	for n := range 20 {
		want := minBackoff << min(n, 10)
		if want > max {
			want = max
		}
		for range 50 {
			d := backoff(n, max)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

func TestConfigNeverShowsPassword(t *testing.T) {
	cfg := Config{URL: "http://127.0.0.1:8088", Username: "u", Password: testPass, Application: "a"}
	lb := &logBuf{}
	slog.New(slog.NewTextHandler(lb, nil)).Info("config", "ari", cfg)
	slog.New(slog.NewJSONHandler(lb, nil)).Info("config", "ari", cfg)
	for _, s := range []string{lb.String(), fmt.Sprint(cfg), fmt.Sprintf("%v %+v %s", cfg, cfg, cfg)} {
		if strings.Contains(s, testPass) {
			t.Errorf("password shown: %s", s)
		}
		if !strings.Contains(s, "[redacted]") {
			t.Errorf("no redaction marker: %s", s)
		}
	}
}

func TestRoute(t *testing.T) {
	for in, want := range map[string]string{
		"/channels/pb-far-1/dial":             "/channels/{id}/dial",
		"/channels/externalMedia":             "/channels/externalMedia",
		"/bridges/pb-br-x/addChannel":         "/bridges/{id}/addChannel",
		"/asterisk/info":                      "/asterisk/info",
		"/asterisk/modules/res_ari.so":        "/asterisk/modules/{id}",
		"/applications/patchbay/subscription": "/applications/{id}/subscription",
		"/recordings/live/rec-1/stop":         "/recordings/live/{id}/stop",
		"/channels/Local%2F600@x-00000001;1":  "/channels/{id}",
		"/endpoints/PJSIP/101":                "/endpoints/{id}/{id}",
	} {
		if got := Route(in); got != want {
			t.Errorf("Route(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestObserveHook(t *testing.T) {
	f := newFakeARI(t)
	type seen struct {
		method, route string
		status        int
	}
	var got []seen
	c, _ := newTestClient(t, f, func(cfg *Config) {
		cfg.Observe = func(method, route string, status int, d time.Duration) {
			if d < 0 {
				t.Errorf("negative duration")
			}
			got = append(got, seen{method, route, status})
		}
	})
	f.handle("GET /ari/channels/pb-far-9", replyJSON(404, map[string]string{"message": "Channel not found"}))
	_, _ = c.Channel("pb-far-9").Get(context.Background())
	if len(got) != 1 || got[0] != (seen{"GET", "/channels/{id}", 404}) {
		t.Errorf("observed %+v", got)
	}
}
