package ari_test

import (
	"context"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/ari/aritest"
)

// An events socket that stays open but no longer carries the application's events (Asterisk deactivated the
// app) is found by the app check and replaced, and events flow again; the canaries are never published.
func TestAppCheckReconnectsADeafSocket(t *testing.T) {
	srv := aritest.New(t)
	cfg := srv.Config()
	cfg.AppCheckInterval = 300 * time.Millisecond
	c, err := ari.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sub := c.Subscribe(ari.Filter{Name: "test"})
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}

	// Healthy: several checks pass without a reconnect, and no canary reaches subscribers.
	quiet := time.After(2 * time.Second)
	for waiting := true; waiting; {
		select {
		case ev := <-sub.Events():
			switch ev.EventType() {
			case ari.TypeDisconnected, ari.TypeChannelUserevent:
				t.Fatalf("healthy socket: got %s", ev.EventType())
			}
		case <-quiet:
			waiting = false
		}
	}

	srv.Deafen(cfg.Application)
	deafened := time.Now()
	var reconnected bool
	deadline := time.After(5 * time.Second)
	for !reconnected {
		select {
		case ev := <-sub.Events():
			if cn, ok := ev.(*ari.Connected); ok && cn.Reconnect {
				reconnected = true
			}
		case <-deadline:
			t.Fatal("a deaf events socket was not replaced within 5s")
		}
	}
	t.Logf("deaf socket replaced after %v", time.Since(deafened).Round(time.Millisecond))

	// The new socket hears: a channel sent to Stasis arrives.
	srv.Endpoint("PJSIP/", aritest.Answer(0))
	id := c.ResourceID("t")
	if _, err := c.Channels().Originate(ctx, ari.OriginateRequest{ChannelID: id, Endpoint: "PJSIP/101", App: cfg.Application}); err != nil {
		t.Fatal(err)
	}
	deadline = time.After(3 * time.Second)
	for {
		select {
		case ev := <-sub.Events():
			if ss, ok := ev.(*ari.StasisStart); ok && ss.Channel.ID == id {
				return
			}
		case <-deadline:
			t.Fatal("no StasisStart on the new socket")
		}
	}
}
