package synth

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkConcurrentEchoCalls runs n synthetic calls at once against an
// in-process echo built on media.API (ICE-lite, one muxed port) and reports
// the CPU both sides spent per call-second, with loss and echo RTT.
// Run with -benchtime=1x: one op is one batch of calls.
func BenchmarkConcurrentEchoCalls(b *testing.B) {
	for _, n := range []int{50, 200} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			base := newFakeServer(b)
			eng, err := NewEngine(EngineOptions{LoopbackOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			const callDur = 5 * time.Second
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				var wg sync.WaitGroup
				reps := make([]*Report, n)
				errs := make([]error, n)
				cpu0, t0 := cpuTime(), time.Now()
				for i := range n {
					srv := &fakeServer{api: base.api, p: newPipe()}
					wg.Add(2)
					go func() { defer wg.Done(); srv.serveOutgoing(ctx) }()
					go func() {
						defer wg.Done()
						reps[i], errs[i] = eng.Call(ctx, srv.p, CallOptions{To: "600", Duration: callDur})
					}()
				}
				wg.Wait()
				cpu, wall := cpuTime()-cpu0, time.Since(t0)
				cancel()
				var rtts []time.Duration
				var sent, recv, lost uint64
				var setup []time.Duration
				for i, r := range reps {
					if errs[i] != nil {
						b.Fatalf("call %d: %v", i, errs[i])
					}
					rtts = append(rtts, r.RTTs...)
					sent += r.Sent
					recv += r.Received
					lost += uint64(r.Lost)
					setup = append(setup, r.FirstEchoAfter)
				}
				s, su := Summarize(rtts), Summarize(setup)
				b.ReportMetric(float64(cpu.Milliseconds())/(float64(n)*callDur.Seconds()), "cpu-ms/call-s")
				b.ReportMetric(float64(s.P99.Microseconds()), "rtt-p99-µs")
				b.ReportMetric(float64(su.P99.Milliseconds()), "setup-p99-ms")
				b.ReportMetric(float64(lost)/float64(max(sent, 1)), "loss")
				b.Logf("%d calls: wall %v cpu %v sent %d received %d lost %d rtt %+v first-echo %+v",
					n, wall.Round(time.Millisecond), cpu.Round(time.Millisecond), sent, recv, lost, s, su)
			}
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
