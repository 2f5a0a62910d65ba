package ari

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// waitEvent reads sub until an event of type typ arrives.
func waitEvent(t *testing.T, sub *Subscription, typ string, timeout time.Duration) Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				t.Fatalf("subscription closed while waiting for %s", typ)
			}
			if ev.EventType() == typ {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within %v", typ, timeout)
			return nil
		}
	}
}

// settleGoroutines waits until the goroutine count falls to at most base.
func settleGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d > %d after Run returned:\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunReconnectAndReconcile(t *testing.T) {
	f := newFakeARI(t)
	c, _ := newTestClient(t, f, nil)
	sub := c.Subscribe(Filter{Name: "test"})
	defer sub.Close()

	// After the reconnect Asterisk has only c-alive and an untracked c-orphan in our app.
	f.handle("GET /ari/channels", replyJSON(200, []map[string]any{
		{"id": "c-alive"},
		{"id": "c-orphan", "dialplan": map[string]any{"app_name": "Stasis", "app_data": testApp + ",x"}},
		{"id": "c-other", "dialplan": map[string]any{"app_name": "Echo"}},
	}))
	f.handle("GET /ari/bridges", replyJSON(200, []map[string]any{}))
	f.handle("GET /ari/applications/"+testApp, replyJSON(200, map[string]any{"name": testApp, "channel_ids": []string{"c-alive", "c-orphan"}}))
	f.handle("POST /ari/bridges", replyJSON(200, map[string]any{"id": "b-gone"}))

	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()

	ws := f.nextConn(2 * time.Second)
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(t, sub, TypeConnected, time.Second).(*Connected); ev.Reconnect {
		t.Error("first Connected says Reconnect")
	}
	for _, id := range []string{"c-alive", "c-gone"} {
		msg := `{"type":"StasisStart","application":"` + testApp + `","args":[],"channel":{"id":"` + id + `"}}`
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, sub, TypeStasisStart, time.Second)
	}
	if _, err := c.Bridges().Create(ctx, BridgeRequest{ID: "b-gone"}); err != nil {
		t.Fatal(err)
	}

	// The server drops the socket: the client must report it, back off and come back.
	dropped := time.Now()
	ws.Close()
	if d := waitEvent(t, sub, TypeDisconnected, time.Second).(*Disconnected); d.Err == nil {
		t.Error("Disconnected without error after server drop")
	}
	ws2 := f.nextConn(3 * time.Second)
	gap := time.Since(dropped)
	if gap < minBackoff/2 {
		t.Errorf("reconnected after %v: no backoff", gap)
	}
	if ev := waitEvent(t, sub, TypeConnected, time.Second).(*Connected); !ev.Reconnect {
		t.Error("second Connected lacks Reconnect")
	}
	rec := waitEvent(t, sub, TypeReconciled, 2*time.Second).(*Reconciled)
	if rec.Err != nil {
		t.Fatalf("Reconciled.Err = %v", rec.Err)
	}
	if !slices.Equal(rec.AliveChannels, []string{"c-alive"}) || !slices.Equal(rec.GoneChannels, []string{"c-gone"}) ||
		!slices.Equal(rec.GoneBridges, []string{"b-gone"}) || !slices.Equal(rec.UnknownChannels, []string{"c-orphan"}) {
		t.Errorf("Reconciled = %+v", rec)
	}
	if tc, tb := c.Tracked(); !slices.Equal(tc, []string{"c-alive"}) || len(tb) != 0 {
		t.Errorf("Tracked after reconcile = %v %v", tc, tb)
	}

	// Clean shutdown: a close frame reaches the server and Run returns nil.
	gotClose := make(chan int, 1)
	go func() {
		for {
			if _, _, err := ws2.ReadMessage(); err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					gotClose <- ce.Code
				} else {
					gotClose <- -1
				}
				return
			}
		}
	}()
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run = %v, want nil on cancel", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if code := <-gotClose; code != websocket.CloseNormalClosure {
		t.Errorf("server saw close code %d, want %d", code, websocket.CloseNormalClosure)
	}
	ws2.Close()
	f.srv.CloseClientConnections()
	c.http.CloseIdleConnections()
	settleGoroutines(t, base)
}

func TestRunUnauthorized(t *testing.T) {
	f := newFakeARI(t)
	f.wsAuth = http.StatusUnauthorized
	c, _ := newTestClient(t, f, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.Run(ctx)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Run = %v, want ErrUnauthorized", err)
	}
	for _, s := range []string{"401", "ari.conf"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
	if strings.Contains(err.Error(), testPass) {
		t.Error("password in error")
	}
	if werr := c.WaitConnected(ctx); !errors.Is(werr, ErrUnauthorized) {
		t.Errorf("WaitConnected = %v", werr)
	}
}

func TestRunRetriesWhileServerRefuses(t *testing.T) {
	f := newFakeARI(t)
	f.wsAuth = http.StatusServiceUnavailable // e.g. res_ari still loading
	c, lb := newTestClient(t, f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(400 * time.Millisecond)
	f.mu.Lock()
	f.wsAuth = 0
	f.mu.Unlock()
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
	defer wcancel()
	if err := c.WaitConnected(wctx); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
	f.nextConn(time.Second)
	if n := strings.Count(lb.String(), "connect failed"); n < 2 {
		t.Errorf("only %d retries logged", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestRunTwiceRefused(t *testing.T) {
	f := newFakeARI(t)
	c, _ := newTestClient(t, f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	f.nextConn(2 * time.Second)
	if err := c.Run(ctx); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second Run = %v", err)
	}
	cancel()
	<-done
}

func TestPingKeepalive(t *testing.T) {
	f := newFakeARI(t)
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.PingInterval = 30 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	ws := f.nextConn(2 * time.Second)
	var pings atomic.Int32
	ws.SetPingHandler(func(data string) error {
		pings.Add(1)
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	if pings.Load() < 3 {
		t.Errorf("server saw %d pings in 300ms at 30ms interval", pings.Load())
	}
	if !c.Connected() {
		t.Error("connection dropped although pongs were answered")
	}
	cancel()
	<-done
}

func TestDeadPeerDetected(t *testing.T) {
	// A server that never answers pings (a NAT that silently dropped the
	// flow) is declared dead after ~2.5 ping intervals and reconnected.
	f := newFakeARI(t)
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.PingInterval = 40 * time.Millisecond })
	sub := c.Subscribe(Filter{Types: []string{TypeDisconnected}})
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	f.nextConn(2 * time.Second) // never read: pings go unanswered
	d := waitEvent(t, sub, TypeDisconnected, 2*time.Second).(*Disconnected)
	if d.Err == nil || !strings.Contains(d.Err.Error(), "timeout") {
		t.Errorf("Disconnected.Err = %v, want a read timeout", d.Err)
	}
	f.nextConn(2 * time.Second)
	cancel()
	<-done
}

func TestOrphans(t *testing.T) {
	f := newFakeARI(t)
	c, _ := newTestClient(t, f, nil)
	f.handle("GET /ari/applications/"+testApp, replyJSON(200, map[string]any{"name": testApp,
		"channel_ids": []string{"c-mine", "c-sub"}, "bridge_ids": []string{"b-sub"}}))
	f.handle("GET /ari/channels", replyJSON(200, []map[string]any{
		{"id": "c-mine", "dialplan": map[string]any{"app_name": "Stasis", "app_data": testApp}},
		{"id": "c-sub"},
		{"id": "c-stasis", "dialplan": map[string]any{"app_name": "Stasis", "app_data": testApp + ",arg"}},
		{"id": "c-otherapp", "dialplan": map[string]any{"app_name": "Stasis", "app_data": "other"}},
		{"id": "c-dialplan", "dialplan": map[string]any{"app_name": "Echo"}},
	}))
	f.handle("GET /ari/bridges", replyJSON(200, []map[string]any{
		{"id": "b-sub", "bridge_class": "stasis"}, {"id": "b-mine", "bridge_class": "stasis"},
		{"id": "b-created", "bridge_class": "stasis", "creator": testApp}, {"id": "b-conf", "bridge_class": "base"},
	}))
	f.handle("POST /ari/bridges", replyJSON(200, map[string]any{"id": "b-mine"}))
	ctx := context.Background()
	if _, err := c.Bridges().Create(ctx, BridgeRequest{ID: "b-mine"}); err != nil {
		t.Fatal(err)
	}
	c.track.addChannel("c-mine")

	owned, err := c.Owned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var oc, ob []string
	for _, ch := range owned.Channels {
		oc = append(oc, ch.ID)
	}
	for _, b := range owned.Bridges {
		ob = append(ob, b.ID)
	}
	// c-sub is only watched by the app (like the ;2 half of a Local channel): not owned.
	if !slices.Equal(oc, []string{"c-mine", "c-stasis"}) || !slices.Equal(ob, []string{"b-sub", "b-mine"}) {
		t.Errorf("Owned = %v %v", oc, ob)
	}
	orph, err := c.Orphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oc, ob = nil, nil
	for _, ch := range orph.Channels {
		oc = append(oc, ch.ID)
	}
	for _, b := range orph.Bridges {
		ob = append(ob, b.ID)
	}
	if !slices.Equal(oc, []string{"c-stasis"}) || !slices.Equal(ob, []string{"b-sub"}) {
		t.Errorf("Orphans = %v %v", oc, ob)
	}
}

func TestExternalMediaWaitsForStasisStart(t *testing.T) {
	f := newFakeARI(t)
	c, _ := newTestClient(t, f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ws := f.nextConn(2 * time.Second)
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	var stasisSent atomic.Bool
	f.handle("POST /ari/channels/externalMedia", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("channelId")
		replyJSON(200, map[string]any{"id": id, "channelvars": map[string]string{
			"UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1", "UNICASTRTP_LOCAL_PORT": "12000"}})(w, r)
		// Like Asterisk: StasisStart follows the reply a little later.
		go func() {
			time.Sleep(50 * time.Millisecond)
			stasisSent.Store(true)
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"StasisStart","application":"`+testApp+`","channel":{"id":"`+id+`"}}`))
		}()
	})
	m, err := c.Channels().ExternalMedia(ctx, ExternalMediaRequest{App: testApp, ExternalHost: "127.0.0.1:4000", Format: "ulaw"})
	if err != nil {
		t.Fatalf("ExternalMedia: %v", err)
	}
	if !stasisSent.Load() {
		t.Error("ExternalMedia returned before the StasisStart")
	}
	if !strings.HasPrefix(m.Channel.ID, "pb-") || m.LocalPort != 12000 {
		t.Errorf("ExternalMedia = %+v", m)
	}
}
