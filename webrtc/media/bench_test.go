package media

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// BenchmarkInterceptors measures one 20 ms G.711 frame each way through a
// connected pair (SRTP both sides): the lean path, and pion's track path with
// the interceptor sets on offer. One op is one packet browser→server read plus
// one server→browser write. The pion client's own cost is in every variant
// alike, so compare cpu-ns/op between variants of one run. The -tcp variants
// carry the call over ICE-TCP (a client that may not use UDP).
func BenchmarkInterceptors(b *testing.B) {
	for _, v := range []struct {
		name string
		o    Options
	}{
		{"lean", Options{}},
		{"pion-none", Options{PionMedia: true}},
		{"pion-rtcp-reports", Options{RTCPReports: true}},
		{"pion-defaults", Options{pionDefaults: true}},
		{"lean-tcp", Options{ICETCP: true}},
		{"pion-none-tcp", Options{ICETCP: true, PionMedia: true}},
	} {
		b.Run(v.name, func(b *testing.B) {
			a := newTestAPI(b, v.o)
			c := newClient(b, PCMU.Codec())
			if v.o.ICETCP {
				c = newTCPClient(b)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p, answer, err := a.Answer(ctx, c.offer(b), PeerOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			if p.Mode() == ModeLean {
				h := &chanHandler{ch: make(chan []byte, 1)}
				p.SetRTPHandler(h)
				benchLean(b, ctx, c, p, answer, h)
				return
			}
			if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
				b.Fatal(err)
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 160)}
			// Until the remote track fires, keep sending so pion sees the SSRC.
			got := make(chan *webrtc.TrackRemote, 1)
			go func() {
				tr, err := p.RemoteTrack(ctx)
				if err == nil {
					got <- tr
				}
				close(got)
			}()
			var tr *webrtc.TrackRemote
			for tr == nil {
				select {
				case tr = <-got:
				case <-time.After(20 * time.Millisecond):
					pkt.SequenceNumber++
					_ = c.track.WriteRTP(pkt)
				}
				if ctx.Err() != nil {
					b.Fatal("no remote track")
				}
			}
			if _, _, err := tr.Read(make([]byte, 1500)); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1500)
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				pkt.SequenceNumber++
				pkt.Timestamp += 160
				if err := c.track.WriteRTP(pkt); err != nil {
					b.Fatal(err)
				}
				if _, _, err := tr.Read(buf); err != nil {
					b.Fatal(err)
				}
				if err := p.LocalTrack().WriteRTP(pkt); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user+system CPU time: wall time per op is mostly
// wake-up latency here, CPU per op is what a packet costs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAnswer is the server's share of call setup: offer in, answer
// with candidates out (ICE-lite on the mux gathers at once), then close.
func BenchmarkAnswer(b *testing.B) {
	a := newTestAPI(b, Options{})
	offer := newClient(b, PCMU.Codec()).offer(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, _, err := a.Answer(ctx, offer, PeerOptions{})
		if err != nil {
			b.Fatal(err)
		}
		_ = p.Close()
	}
}

// BenchmarkAnswerAudioOnVideoAPI is BenchmarkAnswer on an API built with
// Options.Video: an audio-only offer must cost the same as without it.
func BenchmarkAnswerAudioOnVideoAPI(b *testing.B) {
	a := newTestAPI(b, Options{Video: true})
	offer := newClient(b, PCMU.Codec()).offer(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		p, _, err := a.Answer(ctx, offer, PeerOptions{})
		if err != nil {
			b.Fatal(err)
		}
		_ = p.Close()
	}
}

// benchLean is BenchmarkInterceptors' loop on the lean path: the handler hands each packet over, AppendRTP and a
// sendmmsg send one back.
func benchLean(b *testing.B, ctx context.Context, c *client, p *Peer, answer string, h *chanHandler) {
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		b.Fatal(err)
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 160)}
	out := NewBatch(1)
	for p.tap.dst.Load() == nil || !p.tap.ready() {
		pkt.SequenceNumber++
		_ = c.track.WriteRTP(pkt)
		select {
		case <-h.ch:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			b.Fatal("lean path never came up")
		}
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		pkt.SequenceNumber++
		pkt.Timestamp += 160
		if err := c.track.WriteRTP(pkt); err != nil {
			b.Fatal(err)
		}
		<-h.ch
		if err := p.AppendRTP(out, pkt.SequenceNumber, pkt.Timestamp, false, pkt.Payload, time.Now()); err != nil {
			b.Fatal(err)
		}
		if err := out.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
