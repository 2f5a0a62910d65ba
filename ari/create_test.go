package ari_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/ari/aritest"
)

// A caller that gives up while a create is in flight gets its error at once, and what the create made once
// Asterisk carries it out is removed: nothing is left for the sweep. Run waits for that before it returns.
func TestAbandonedCreatesLeaveNothing(t *testing.T) {
	srv := aritest.New(t)
	c, err := ari.New(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Delay("POST", "/channels/create", 300*time.Millisecond)
	srv.Delay("POST", "/bridges", 300*time.Millisecond)

	for _, tc := range []struct {
		name   string
		create func(context.Context) error
	}{
		{"channel", func(ctx context.Context) error {
			_, err := c.Channels().Create(ctx, ari.CreateRequest{Endpoint: "Local/600@default", App: c.Application(), ChannelID: ari.NewID()})
			return err
		}},
		{"bridge", func(ctx context.Context) error {
			_, err := c.Bridges().Create(ctx, ari.BridgeRequest{ID: ari.NewID()})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gave := errors.New("the call ended")
			cctx, ccancel := context.WithCancelCause(context.Background())
			time.AfterFunc(50*time.Millisecond, func() { ccancel(gave) })
			start := time.Now()
			err := tc.create(cctx)
			if !errors.Is(err, gave) {
				t.Fatalf("create: %v, want the caller's cause", err)
			}
			if took := time.Since(start); took > 250*time.Millisecond {
				t.Errorf("the caller waited %v for a create it gave up on", took)
			}
		})
	}
	// Asterisk carries both creates out after the callers gave up; then what they made must go.
	carriedOut := func() bool {
		n := 0
		for _, r := range srv.Requests() {
			if r.Method == "POST" && r.Status != 0 {
				n++
			}
		}
		return n == 2
	}
	deadline := time.Now().Add(5 * time.Second)
	for !carriedOut() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for (len(srv.Channels()) > 0 || len(srv.Bridges()) > 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	srv.AssertClean(t)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
