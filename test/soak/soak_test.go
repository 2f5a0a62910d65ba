//go:build soak

// Package soak holds the long-call soak (`make soak`, not part of `make test`): one long call and N parallel
// shorter calls from synthetic browsers through Patchbay and Asterisk to a SIPp carrier that echoes the audio and
// answers session refreshes, reporting every gap in the audio heard back.
//
//	SOAK_LONG=60m SOAK_SHORT=10m SOAK_N=10 make soak
//
// SOAK_TO=echo calls Asterisk's Echo (600) instead of the carrier: no SIP leg, so a gap there is Patchbay's or
// Asterisk's own, never the carrier's (SIPp echoes RTP from its main loop and stalls when the machine is busy: its
// "watchdog timer tripped" warnings in the log mark those stalls).
package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
)

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
		return d
	}
	return def
}

func envInt(t *testing.T, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
		return n
	}
	return def
}

// MaxGapAllowed is the longest silence tolerated in a soak call.
const MaxGapAllowed = time.Second

func TestSoak(t *testing.T) {
	long := envDuration(t, "SOAK_LONG", 60*time.Minute)
	short := envDuration(t, "SOAK_SHORT", 10*time.Minute)
	n := envInt(t, "SOAK_N", 10)
	to := os.Getenv("SOAK_TO")
	sp := testenv.StartSIPp(t, testenv.SIPpOptions{Scenario: testenv.CarrierUASRefresh, RTPEcho: true})
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{Params: func(p *asteriskconfigs.Params) {
		p.Trunk = asteriskconfigs.Trunk{Name: "pstn", Host: sp.Addr(), Match: []string{sp.IP}}
	}})
	pb := testenv.StartPatchbay(t, a, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Asterisk.Trunk.Name = "pstn"
		c.Media.PublicIPs = []string{"127.0.0.1"}
		c.Limits.PerToken = config.LimitSet{} // unlimited: the soak measures audio, not limits
		c.Limits.MaxCallDuration = 0
	}})
	// The carrier's trunk must be qualified before it is dialled.
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := a.CLI(context.Background(), "pjsip show contacts")
		if err == nil && testenv.ContactUsable(out, "pstn") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trunk never reachable:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), long+5*time.Minute)
	defer cancel()

	type result struct {
		name string
		want time.Duration
		rep  *synth.Report
		err  error
	}
	results := make([]result, n+1)
	var wg sync.WaitGroup
	for i := 0; i <= n; i++ {
		d, name := short, fmt.Sprintf("short-%02d", i)
		if i == 0 {
			d, name = long, "long"
		}
		cl := auth.Claims{Name: name, Dial: []string{"pstn", "ext"}, CallerIDs: []string{"+442071230009"}}
		cl.Subject = "soak-" + strings.ReplaceAll(name, "-", "")
		tok, err := pb.Server.Signer().Mint(cl, long+time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := signal.Dial(ctx, pb.URL, tok, signal.DialOptions{TLSConfig: pb.TLS})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		wg.Add(1)
		go func(i int, d time.Duration, name string) {
			defer wg.Done()
			dest := fmt.Sprintf("+1415555%04d", i)
			if to == "echo" {
				dest = "600"
			}
			rep, err := eng.Call(ctx, conn, synth.CallOptions{To: dest, ToneHz: 1000, Duration: d,
				RecordMax: 10 * time.Second})
			results[i] = result{name, d, rep, err}
		}(i, d, name)
	}
	wg.Wait()

	var b strings.Builder
	via := "the SIPp carrier (RTP echo, session refreshes)"
	if to == "echo" {
		via = "Asterisk's Echo (600)"
	}
	fmt.Fprintf(&b, "soak: 1 × %v and %d × %v through %s, gaps ≥ %v counted\n", long, n, short, via, synth.GapThreshold)
	fmt.Fprintf(&b, "%-9s %9s %8s %8s %7s %5s %9s  %s\n", "call", "lasted", "sent", "heard", "loss", "gaps", "max gap", "gaps over 1 s")
	for _, r := range results {
		if r.rep == nil {
			fmt.Fprintf(&b, "%-9s failed: %v\n", r.name, r.err)
			t.Errorf("%s: %v", r.name, r.err)
			continue
		}
		var big []string
		for _, g := range r.rep.Gaps {
			if g.Length > MaxGapAllowed {
				big = append(big, fmt.Sprintf("%v at %v", g.Length.Round(time.Millisecond), g.At.Round(time.Second)))
			}
		}
		fmt.Fprintf(&b, "%-9s %9v %8d %8d %6.2f%% %5d %9v  %s\n", r.name, r.rep.Duration.Round(time.Second), r.rep.Sent,
			r.rep.Received, 100*r.rep.Loss, len(r.rep.Gaps), r.rep.MaxGap().Round(time.Millisecond), strings.Join(big, ", "))
		switch {
		case r.err != nil:
			t.Errorf("%s ended with %v after %v", r.name, r.err, r.rep.Duration.Round(time.Second))
		case r.rep.HungUpBy == "remote":
			t.Errorf("%s was hung up by the far end (%s) after %v", r.name, r.rep.Cause, r.rep.Duration.Round(time.Second))
		case len(big) > 0:
			t.Errorf("%s: %d gaps over %v", r.name, len(big), MaxGapAllowed)
		}
	}
	t.Log("\n" + b.String())
	if err := os.MkdirAll(testenv.ArtifactsDir(), 0o755); err == nil {
		path := filepath.Join(testenv.ArtifactsDir(), "soak-report.txt")
		if os.WriteFile(path, []byte(b.String()), 0o644) == nil {
			t.Logf("report in %s", path)
		}
	}
}
