package media

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestICEIPsLimitCandidates: with the ICE socket bound to every address, media.ice_ips leaves one UDP and one
// TCP host candidate, on the listed address, and the call still connects.
func TestICEIPsLimitCandidates(t *testing.T) {
	a, err := NewAPI(Options{ICETCP: true, IncludeLoopback: true, ICEIPs: []string{"127.0.0.1"}, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	c := newClient(t, PCMU.Codec())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, answer := answerAndApply(t, ctx, a, c)
	var udp, tcp int
	for _, m := range candLine.FindAllStringSubmatch(answer, -1) {
		if m[3] != "127.0.0.1" {
			t.Errorf("candidate on an address not in ice_ips: %s", m[0])
		}
		switch strings.ToLower(m[2]) {
		case "udp":
			udp++
		case "tcp":
			tcp++
		}
	}
	if udp != 1 || tcp != 1 {
		t.Fatalf("want one UDP and one TCP candidate, got %d and %d:\n%s", udp, tcp, answer)
	}
	select {
	case <-p.Connected():
	case <-ctx.Done():
		t.Fatal("the call did not connect on the one candidate")
	}
}

func TestICEIPsRefused(t *testing.T) {
	for _, ips := range [][]string{{"not-an-ip"}, {"::1"}, {"192.0.2.254"}} {
		if a, err := NewAPI(Options{IncludeLoopback: true, ICEIPs: ips, Logger: quietLog()}); err == nil {
			_ = a.Close()
			t.Errorf("ICEIPs %v accepted", ips)
		}
	}
}
