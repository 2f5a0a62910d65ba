//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// TestAsteriskRestartMidCall: Asterisk goes away under a live call. The browser is told the call ended, Patchbay
// forgets it, the ARI client reconnects by itself, and the next call works without restarting Patchbay.
func TestAsteriskRestartMidCall(t *testing.T) {
	e := newBrowserCallEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn := e.pb.Dial(t, ctx, "alice", "ext")
	done := make(chan *synth.Report, 1)
	go func() {
		rep, _ := e.eng.Call(ctx, conn, synth.CallOptions{To: "600", Duration: -1}) // until the far end hangs up
		done <- rep
	}()
	deadline := time.Now().Add(10 * time.Second)
	for e.pb.Server.ActiveCalls() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("call never became active")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // media flowing
	restartAt := time.Now()
	e.ast.Restart(t)
	var rep *synth.Report
	select {
	case rep = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("browser was not told the call ended after Asterisk restarted")
	}
	t.Logf("browser saw the end %v after the restart began: hung up by %s, cause %s", time.Since(restartAt).Round(time.Millisecond), rep.HungUpBy, rep.Cause)
	if rep.HungUpBy != "remote" {
		t.Errorf("hung up by %q, want remote (Patchbay ending the call)", rep.HungUpBy)
	}
	waitNoCalls(t, e.pb)

	// Patchbay keeps serving: a new call on a new connection works once ARI is back.
	var err error
	for i := 0; i < 20; i++ {
		conn2 := e.pb.Dial(t, ctx, "alice", "ext")
		rep, err = e.eng.Call(ctx, conn2, synth.CallOptions{To: "600", Duration: 2 * time.Second})
		if err == nil {
			break
		}
		if signal.ErrorCode(err) != wire.CodeUnavailable {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil || !rep.Heard.Detected(5) {
		t.Fatalf("call after Asterisk restart: err %v, heard %+v", err, rep.Heard)
	}
	e.assertClean(t)
}
