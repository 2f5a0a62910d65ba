package ari_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/ari/aritest"
)

// The sweep (own.go) against the ARI fake: what this instance made and no live call claims goes; what is claimed,
// what another instance made, and what nobody of ours made stay; a phone the dialplan just handed over is spared
// while young.

// instance is a client of fake for instance id with its own Stasis application; it runs (events socket open) until
// the returned stop is called.
func instance(t *testing.T, fake *aritest.Server, id string, tweak func(*ari.Config), beforeRun ...func(*ari.Client)) (*ari.Client, func()) {
	t.Helper()
	cfg := fake.Config()
	cfg.Application, cfg.Instance = "app-"+id, id
	cfg.SweepInterval = -1 // sweeps only when the test asks
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := ari.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range beforeRun {
		f(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := c.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	return c, func() { cancel(); <-done }
}

func ids[T any](xs []T, id func(T) string) []string {
	var out []string
	for _, x := range xs {
		out = append(out, id(x))
	}
	slices.Sort(out)
	return out
}

func TestSweepTakesOnlyWhatThisInstanceOwnsAndNobodyClaims(t *testing.T) {
	// SweepMinAge of an hour: only SweepAll takes a phone handed over during the test.
	defer goleak.VerifyNone(t)
	fake := aritest.New(t)
	defer fake.Close()
	mine, stopMine := instance(t, fake, "a", func(c *ari.Config) { c.SweepMinAge = time.Hour })
	defer stopMine()
	other, stopOther := instance(t, fake, "b", nil)
	defer stopOther()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	bridge := func(c *ari.Client, id string) string {
		t.Helper()
		if _, err := c.Bridges().Create(ctx, ari.BridgeRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	channel := func(c *ari.Client, id string) string {
		t.Helper()
		if _, err := c.Channels().Create(ctx, ari.CreateRequest{Endpoint: "PJSIP/101", App: c.Application(), ChannelID: id}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	claimedBr, claimedCh := mine.ResourceID("br"), mine.ResourceID("far")
	mine.Claim(claimedBr, claimedCh) // claimed before the requests, as calls do
	bridge(mine, claimedBr)
	channel(mine, claimedCh)
	orphanBr, orphanCh := bridge(mine, mine.ResourceID("br")), channel(mine, mine.ResourceID("em"))
	claimedPhone := fake.Incoming(aritest.Call{Endpoint: "PJSIP/102", App: mine.Application(), Args: []string{"inbound", "alice"}})
	mine.Claim(claimedPhone)
	orphanPhone := fake.Incoming(aritest.Call{Endpoint: "PJSIP/103", App: mine.Application(), Args: []string{"inbound", "alice"}})
	theirs := []string{
		bridge(other, other.ResourceID("br")),
		channel(other, other.ResourceID("far")),
		fake.Incoming(aritest.Call{Endpoint: "PJSIP/104", App: other.Application(), Args: []string{"inbound", "bob"}}),
	}
	nobodys := bridge(other, "conference-made-by-hand") // not ours: no prefix, no Stasis app of ours

	swept := mine.Subscribe(ari.Filter{Types: []string{ari.TypeSwept}})
	defer swept.Close()
	// Our own IDs are claimed before they are made, so unclaimed ones go at any age; a phone the dialplan just
	// handed over is spared while young (its StasisStart may still be on its way to its call).
	rep, err := mine.Sweep(ctx)
	if err != nil || rep.Channels != 1 || rep.Bridges != 1 || rep.Spared.IsZero() {
		t.Errorf("first sweep: %+v, %v; want the orphan channel and bridge removed, the young phone spared", rep, err)
	}
	if _, ok := fake.Channel(orphanPhone); !ok {
		t.Errorf("a phone handed over a moment ago was swept")
	}
	rep, err = mine.SweepAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Channels != 1 || rep.Bridges != 0 || rep.Failed != 0 {
		t.Errorf("sweep without the age rule %+v, want the phone no call holds", rep)
	}
	wantCh := []string{claimedCh, claimedPhone, theirs[1], theirs[2]}
	wantBr := []string{claimedBr, theirs[0], nobodys}
	slices.Sort(wantCh)
	slices.Sort(wantBr)
	gotCh := ids(fake.Channels(), func(c ari.Channel) string { return c.ID })
	gotBr := ids(fake.Bridges(), func(b ari.Bridge) string { return b.ID })
	if !slices.Equal(gotCh, wantCh) || !slices.Equal(gotBr, wantBr) {
		t.Errorf("after the sweep\n channels %v\n  bridges %v\nwant\n channels %v\n  bridges %v", gotCh, gotBr, wantCh, wantBr)
	}
	for _, gone := range []string{orphanBr, orphanCh, orphanPhone} {
		if slices.Contains(gotCh, gone) || slices.Contains(gotBr, gone) {
			t.Errorf("%s survived the sweep", gone)
		}
	}
	for range 2 { // one Swept per sweep
		select {
		case ev := <-swept.Events():
			if _, ok := ev.(*ari.Swept); !ok {
				t.Errorf("event %T, want Swept", ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no Swept event")
		}
	}

	// Released, the rest of ours goes too; the other instance's and nobody's stay.
	mine.Release(claimedBr, claimedCh, claimedPhone)
	if rep, err := mine.SweepAll(ctx); err != nil || rep.Channels != 2 || rep.Bridges != 1 {
		t.Errorf("sweep after release: %+v, %v", rep, err)
	}
	if got := len(fake.Channels()) + len(fake.Bridges()); got != 4 {
		t.Errorf("%d resources left, want the other instance's 3 and the hand-made bridge", got)
	}
	for _, id := range theirs[1:] {
		_ = other.Channel(id).Hangup(ctx, "normal")
	}
	_ = other.Bridge(theirs[0]).Delete(ctx)
	_ = other.Bridge(nobodys).Delete(ctx)
	fake.AssertClean(t)
}

// What a crashed run (kill -9) left is swept as soon as the next run connects: it predates the new client, so no
// age rule spares it, and no call of the new run claims it.
func TestSweepAtStartRemovesWhatACrashedRunLeft(t *testing.T) {
	defer goleak.VerifyNone(t)
	fake := aritest.New(t)
	defer fake.Close()
	crashed, stop := instance(t, fake, "a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	br := crashed.ResourceID("br")
	crashed.Claim(br)
	if _, err := crashed.Bridges().Create(ctx, ari.BridgeRequest{ID: br}); err != nil {
		t.Fatal(err)
	}
	em := crashed.ResourceID("em")
	if _, err := crashed.Channels().Create(ctx, ari.CreateRequest{Endpoint: "PJSIP/101", App: crashed.Application(), ChannelID: em}); err != nil {
		t.Fatal(err)
	}
	stop() // the process dies with its claims; Asterisk keeps the resources

	var sub *ari.Subscription
	_, stopNext := instance(t, fake, "a", func(c *ari.Config) { c.SweepInterval = time.Hour }, func(c *ari.Client) {
		sub = c.Subscribe(ari.Filter{Types: []string{ari.TypeSwept}})
	})
	defer stopNext()
	defer sub.Close()
	select {
	case ev := <-sub.Events():
		if rep := ev.(*ari.Swept).Report; rep.Channels != 1 || rep.Bridges != 1 {
			t.Errorf("sweep at start %+v, want 1 channel and 1 bridge", rep)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no sweep at start")
	}
	fake.AssertClean(t)
}
