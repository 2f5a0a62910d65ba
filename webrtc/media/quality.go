package media

import (
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// LegQuality is what the browser's RTCP receiver reports said about the audio Patchbay sends it.
type LegQuality struct {
	// Reports is how many receiver reports arrived; the other fields mean nothing while it is 0.
	Reports int
	// FractionLost is the loss the last report gave (0..1); TotalLost the browser's cumulative count.
	FractionLost float64
	TotalLost    uint32
	// Jitter is the last report's interarrival jitter.
	Jitter time.Duration
	// RTT from the last report's LSR/DLSR; 0 when unknown (Patchbay sends no sender reports unless
	// Options.RTCPReports is on, and without them browsers leave LSR at 0).
	RTT time.Duration
}

type legReports struct {
	mu sync.Mutex
	q  LegQuality
}

// Quality returns what the browser's receiver reports said so far.
func (p *Peer) Quality() LegQuality {
	p.rr.mu.Lock()
	defer p.rr.mu.Unlock()
	return p.rr.q
}

// readReports reads the audio sender's RTCP (the browser's receiver reports about what Patchbay sends) until
// the connection closes. Reading also keeps pion's RTCP buffer from filling; one small read per report.
func (p *Peer) readReports(s *webrtc.RTPSender) {
	if s == nil {
		return
	}
	clock := float64(p.law.Codec().ClockRate)
	p.readWG.Add(1)
	go func() {
		defer p.readWG.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := s.Read(buf)
			if err != nil {
				return
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			now := time.Now()
			for _, pkt := range pkts {
				rr, ok := pkt.(*rtcp.ReceiverReport)
				if !ok {
					continue
				}
				for _, r := range rr.Reports {
					p.rr.mu.Lock()
					q := &p.rr.q
					q.Reports++
					q.FractionLost = float64(r.FractionLost) / 256
					q.TotalLost = r.TotalLost
					if clock > 0 {
						q.Jitter = time.Duration(float64(r.Jitter) / clock * float64(time.Second))
					}
					if r.LastSenderReport != 0 {
						q.RTT = rttFromReport(now, r.LastSenderReport, r.Delay)
					}
					p.rr.mu.Unlock()
				}
			}
		}
	}()
}

// rttFromReport is RFC 3550 §6.4.1: now (as NTP middle 32 bits) − LSR − DLSR, in 1/65536 s.
func rttFromReport(now time.Time, lsr, dlsr uint32) time.Duration {
	secs := uint64(now.Unix()) + 2208988800 // NTP epoch
	frac := uint64(now.Nanosecond()) << 32 / 1e9
	mid := uint32((secs<<32 | frac) >> 16)
	d := int64(mid - lsr - dlsr)
	if d < 0 || d > 10*65536 {
		return 0
	}
	return time.Duration(d * int64(time.Second) / 65536)
}
