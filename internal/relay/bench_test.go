package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/patchbay/patchbay/webrtc/media"
)

// pingPong sends one RTP packet from src to dst and waits for it at sink:
// one op is one packet through the forwarder under test.
type pingPong struct {
	src  *net.UDPConn
	dst  netip.AddrPort
	sink *net.UDPConn
	pkt  []byte
	buf  []byte
	seq  uint16
}

func newPingPong(b *testing.B, src *net.UDPConn, dst netip.AddrPort, sink *net.UDPConn) *pingPong {
	pkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload(160, 0)}).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	_ = sink.SetReadDeadline(time.Now().Add(10 * time.Minute))
	return &pingPong{src: src, dst: dst, sink: sink, pkt: pkt, buf: make([]byte, 1500)}
}

func (p *pingPong) once(b *testing.B) {
	p.seq++
	binary.BigEndian.PutUint16(p.pkt[2:], p.seq)
	if _, err := p.src.WriteToUDPAddrPort(p.pkt, p.dst); err != nil {
		b.Fatal(err)
	}
	if _, _, err := p.sink.ReadFromUDPAddrPort(p.buf); err != nil {
		b.Fatal(err)
	}
}

// startPlain runs the baseline: a UDP forwarder that reads a datagram and
// writes it on, nothing else.
func startPlain(b *testing.B) *pingPong {
	src, fwd, sink := listen(b), listen(b), listen(b)
	to := addrOf(sink)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := fwd.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = fwd.WriteToUDPAddrPort(buf[:n], to)
		}
	}()
	b.Cleanup(func() { _ = fwd.SetReadDeadline(time.Unix(1, 0)); <-done })
	return newPingPong(b, src, addrOf(fwd), sink)
}

// startRelay runs the relay's Asterisk→browser direction on the lean path, with a browser that sends the plain
// packet by UDP (the SRTP cost is measured in webrtc/media: BenchmarkLeanSRTP).
func startRelay(b *testing.B) *pingPong {
	h := newHarness(b, media.ModeLean)
	return newPingPong(b, h.ast, h.pool.Addr(), h.browser)
}

func BenchmarkPlainUDPForwarder(b *testing.B) {
	p := startPlain(b)
	b.ReportAllocs()
	for b.Loop() {
		p.once(b)
	}
}

func BenchmarkRelayAsteriskToBrowser(b *testing.B) {
	p := startRelay(b)
	b.ReportAllocs()
	for b.Loop() {
		p.once(b)
	}
}

// BenchmarkRelayBrowserToAsterisk: one decrypted packet handed over by the media demux, stripped and sent with
// sendmmsg, then read by "Asterisk".
func BenchmarkRelayBrowserToAsterisk(b *testing.B) {
	h := newHarness(b, media.ModeLean)
	ext := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload(160, 0)}
	_ = ext.SetExtension(3, []byte{1, 2})
	pkt, _ := ext.Marshal()
	work := make([]byte, 1500)
	buf := make([]byte, 1500)
	_ = h.ast.SetReadDeadline(time.Now().Add(10 * time.Minute))
	b.ReportAllocs()
	for b.Loop() {
		h.r.HandleRTP(work[:copy(work, pkt)])
		h.r.FlushRTP()
		if _, _, err := h.ast.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelayVsPlain alternates both forwarders in one run and reports
// the cost ratio, so machine noise hits both alike.
func BenchmarkRelayVsPlain(b *testing.B) {
	plain, relay := startPlain(b), startRelay(b)
	var tPlain, tRelay time.Duration
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		plain.once(b)
		t1 := time.Now()
		relay.once(b)
		tRelay += time.Since(t1)
		tPlain += t1.Sub(t0)
		n++
	}
	b.ReportMetric(float64(tPlain.Nanoseconds())/float64(n), "plain-ns/pkt")
	b.ReportMetric(float64(tRelay.Nanoseconds())/float64(n), "relay-ns/pkt")
	b.ReportMetric(float64(tRelay)/float64(tPlain), "relay/plain")
}
