package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// udpTrack stands in for the pion local track: it marshals what the relay
// writes and sends it to a socket the test reads ("the browser").
type udpTrack struct {
	conn *net.UDPConn
	to   netip.AddrPort
	buf  []byte
	ssrc uint32
}

func (u *udpTrack) WriteRTP(p *rtp.Packet) error {
	p.SSRC = u.ssrc // as pion does: the binding's SSRC wins
	n, err := p.MarshalTo(u.buf)
	if err != nil {
		return err
	}
	_, err = u.conn.WriteToUDPAddrPort(u.buf[:n], u.to)
	return err
}

// chanTrack stands in for the pion remote track.
type chanTrack struct {
	ch       chan []byte
	stopOnce sync.Once
	stop     chan struct{}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func newChanTrack() *chanTrack {
	return &chanTrack{ch: make(chan []byte, 16), stop: make(chan struct{})}
}

func (c *chanTrack) Read(b []byte) (int, interceptor.Attributes, error) {
	select {
	case p := <-c.ch:
		return copy(b, p), nil, nil
	case <-c.stop:
		return 0, nil, timeoutErr{}
	}
}

func (c *chanTrack) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Now()) {
		c.stopOnce.Do(func() { close(c.stop) })
	}
	return nil
}

func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// harness wires relay ⇄ fake Asterisk socket and fake browser socket.
type harness struct {
	relaySock, ast, browser *net.UDPConn
	remote                  *chanTrack
	r                       *Relay
	cancel                  context.CancelFunc
	runDone                 chan error
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{relaySock: listen(t), ast: listen(t), browser: listen(t), remote: newChanTrack()}
	tr := &udpTrack{conn: listen(t), to: addrOf(h.browser), buf: make([]byte, 1500), ssrc: 0xB0B0B0B0}
	var err error
	h.r, err = New(h.relaySock, tr, Options{Asterisk: addrOf(h.ast), PayloadType: 0})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.runDone = make(chan error, 1)
	go func() { h.runDone <- h.r.Run(ctx) }()
	if err := h.r.Attach(h.remote); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = h.r.Close() })
	return h
}

func readPkt(t testing.TB, c *net.UDPConn) (rtp.Packet, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(append([]byte(nil), buf[:n]...)); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return p, from
}

func expectNothing(t testing.TB, c *net.UDPConn, d time.Duration) {
	t.Helper()
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(d))
	if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("unexpected %d-byte packet", n)
	}
}

func marshal(t testing.TB, p *rtp.Packet) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return b
}

func TestParseRTP(t *testing.T) {
	ext := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, CSRC: []uint32{1, 2}}, Payload: payload(160, 1)}
	_ = ext.SetExtension(3, []byte{1, 2, 3})
	padded := marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload(160, 2)})
	padded[0] |= 0x20
	padded = append(padded, 0, 0, 3)
	tests := []struct {
		name    string
		b       []byte
		ok      bool
		payload []byte
	}{
		{"plain", marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload(160, 0)}), true, payload(160, 0)},
		{"csrc and extension", marshal(t, ext), true, payload(160, 1)},
		{"padding", padded, true, payload(160, 2)},
		{"short", []byte{0x80, 0, 0}, false, nil},
		{"version 1", append([]byte{0x40}, make([]byte, 20)...), false, nil},
		{"header only", marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2}}), false, nil},
		{"padding longer than payload", append(append([]byte{0xa0}, make([]byte, 11)...), 1, 200), false, nil},
		{"extension past end", []byte{0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9}, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, ok := parseRTP(tc.b)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if ok && !bytes.Equal(tc.b[h.start:h.end], tc.payload) {
				t.Fatalf("payload mismatch")
			}
		})
	}
}

func TestBrowserToAsteriskStripsAndSendsFromRelaySocket(t *testing.T) {
	h := newHarness(t)
	in := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, PayloadType: 0, SequenceNumber: 7,
		Timestamp: 1234, SSRC: 0xCAFE, CSRC: []uint32{9}}, Payload: payload(160, 5), PaddingSize: 4}
	in.Header.Padding = true
	if err := in.SetExtension(1, []byte{0xAA, 0xBB}); err != nil {
		t.Fatal(err)
	}
	h.remote.ch <- marshal(t, in)
	got, from := readPkt(t, h.ast)
	if from != addrOf(h.relaySock) {
		t.Fatalf("sent from %s, want the relay socket %s (strictrtp)", from, addrOf(h.relaySock))
	}
	if got.Extension || len(got.CSRC) != 0 || got.Padding {
		t.Fatalf("header not cleaned: %+v", got.Header)
	}
	if !got.Marker || got.SequenceNumber != 7 || got.Timestamp != 1234 || got.SSRC != 0xCAFE || got.PayloadType != 0 {
		t.Fatalf("header fields changed: %+v", got.Header)
	}
	if !bytes.Equal(got.Payload, payload(160, 5)) {
		t.Fatal("payload changed")
	}
	h.remote.ch <- []byte{1, 2, 3}
	waitFor(t, func() bool { return h.r.Stats().ToAsterisk.Drops == 1 })
	if s := h.r.Stats().ToAsterisk; s.Packets != 1 || s.Bytes != 160 || s.Last.IsZero() {
		t.Fatalf("stats %+v", s)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 2s")
}

func TestAsteriskToBrowserFiltersAndKeepsStreamContinuous(t *testing.T) {
	h := newHarness(t)
	send := func(c *net.UDPConn, ssrc uint32, seq uint16, ts uint32, pt uint8) {
		b := marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq,
			Timestamp: ts, SSRC: ssrc}, Payload: payload(160, byte(seq))})
		if _, err := c.WriteToUDPAddrPort(b, addrOf(h.relaySock)); err != nil {
			t.Fatal(err)
		}
	}
	send(h.ast, 1, 100, 8000, 0)
	p1, _ := readPkt(t, h.browser)
	send(h.ast, 1, 101, 8160, 0)
	p2, _ := readPkt(t, h.browser)
	if p2.SequenceNumber != p1.SequenceNumber+1 || p2.Timestamp != p1.Timestamp+160 {
		t.Fatalf("not continuous: %v then %v", p1.Header, p2.Header)
	}

	// A stranger, and Asterisk with a wrong payload type: dropped.
	stranger := listen(t)
	send(stranger, 1, 102, 8320, 0)
	send(h.ast, 1, 102, 8320, 13)
	expectNothing(t, h.browser, 100*time.Millisecond)
	if d := h.r.Stats().ToBrowser.Drops; d != 2 {
		t.Fatalf("drops = %d, want 2", d)
	}

	// Injection continues the sequence.
	if err := h.r.Inject(payload(160, 9)); err != nil {
		t.Fatal(err)
	}
	p3, _ := readPkt(t, h.browser)
	if p3.SequenceNumber != p2.SequenceNumber+1 || p3.Timestamp-p2.Timestamp < 160 || !p3.Marker {
		t.Fatalf("inject broke the stream: %v after %v", p3.Header, p2.Header)
	}

	// Asterisk changes SSRC and jumps sequence: the browser sees one stream.
	send(h.ast, 2, 5000, 999, 0)
	p4, _ := readPkt(t, h.browser)
	if p4.SequenceNumber != p3.SequenceNumber+1 || p4.Timestamp-p3.Timestamp < 160 || p4.Timestamp-p3.Timestamp > 8000 {
		t.Fatalf("SSRC change not smoothed: %v after %v", p4.Header, p3.Header)
	}
	for _, p := range []rtp.Packet{p1, p2, p3, p4} {
		if p.SSRC != 0xB0B0B0B0 {
			t.Fatalf("SSRC toward browser changed: %x", p.SSRC)
		}
	}
	if s := h.r.Stats().ToBrowser; s.Packets != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNothingBeforeAsteriskKnown(t *testing.T) {
	relaySock, ast := listen(t), listen(t)
	tr := &udpTrack{conn: listen(t), to: addrOf(listen(t)), buf: make([]byte, 1500)}
	r, err := New(relaySock, tr, Options{PayloadType: 8})
	if err != nil {
		t.Fatal(err)
	}
	remote := newChanTrack()
	go func() { _ = r.Run(context.Background()) }()
	if err := r.Attach(remote); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	remote.ch <- marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8}, Payload: payload(160, 0)})
	waitFor(t, func() bool { return r.Stats().ToAsterisk.Drops == 1 })
	r.SetAsterisk(addrOf(ast))
	remote.ch <- marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8}, Payload: payload(160, 0)})
	if p, _ := readPkt(t, ast); p.PayloadType != 8 {
		t.Fatalf("PT %d, want 8", p.PayloadType)
	}
}

func TestNewRejectsDynamicPayloadType(t *testing.T) {
	if _, err := New(listen(t), &udpTrack{}, Options{PayloadType: 111}); err == nil {
		t.Fatal("accepted PT 111, which Asterisk drops")
	}
}

func TestCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 3 {
		h := newHarness(t)
		h.remote.ch <- marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload(10, 0)})
		readPkt(t, h.ast)
		if err := h.r.Close(); err != nil {
			t.Fatal(err)
		}
		if err := h.r.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-h.runDone:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Run did not return after Close")
		}
		if err := h.r.Attach(newChanTrack()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Attach after Close: %v", err)
		}
		if err := h.r.Run(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Run after Close: %v", err)
		}
	}
	// Run's context alone also stops it.
	h := newHarness(t)
	h.cancel()
	<-h.runDone
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

func TestPortsDrainBeforeReuse(t *testing.T) {
	const port = 47391
	p, err := NewPorts("127.0.0.1", port, port, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s, err := p.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	if s.ExternalHost() != "127.0.0.1:47391" {
		t.Fatalf("ExternalHost %q", s.ExternalHost())
	}
	if _, err := p.Acquire(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("second Acquire: %v, want ErrNoPorts", err)
	}
	s.Release()
	s.Release()
	if st := p.Stats(); st.Draining != 1 || st.InUse != 0 || st.Free != 0 {
		t.Fatalf("stats while draining %+v", st)
	}
	// A stale packet from the old call arrives during the drain.
	stale := listen(t)
	if _, err := stale.WriteToUDPAddrPort([]byte("stale"), s.Addr()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Acquire(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("Acquire during drain: %v, want ErrNoPorts", err)
	}
	var s2 *Socket
	waitFor(t, func() bool { s2, err = p.Acquire(); return err == nil })
	defer s2.Release()
	if s2.Addr() != s.Addr() {
		t.Fatalf("reused %s, want %s", s2.Addr(), s.Addr())
	}
	expectNothing(t, s2.Conn(), 50*time.Millisecond)
}

func TestPortsSkipBusyAndRoundRobin(t *testing.T) {
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 47401})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	p, err := NewPorts("127.0.0.1", 47400, 47402, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, _ := p.Acquire()
	b, err := p.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr().Port() != 47400 || b.Addr().Port() != 47402 {
		t.Fatalf("got %d and %d", a.Addr().Port(), b.Addr().Port())
	}
	a.Release()
	b.Release()
	for _, bad := range [][2]int{{0, 10}, {10, 5}, {1, 70000}} {
		if _, err := NewPorts("127.0.0.1", bad[0], bad[1], 0); err == nil {
			t.Fatalf("range %v accepted", bad)
		}
	}
	if _, err := NewPorts("localhost", 1, 2, 0); err == nil {
		t.Fatal("host name accepted")
	}
}

func TestPortsCloseStopsDrainers(t *testing.T) {
	before := runtime.NumGoroutine()
	p, err := NewPorts("127.0.0.1", 47410, 47419, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		s, err := p.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		s.Release()
	}
	done := make(chan struct{})
	go func() { _ = p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not stop drainers")
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
	if _, err := p.Acquire(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
}

// TestNoAllocsPerPacket drives both directions packet by packet and counts
// heap allocations across all goroutines.
func TestNoAllocsPerPacket(t *testing.T) {
	h := newHarness(t)
	fromAst := marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload(160, 0)})
	ext := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload(160, 0)}
	_ = ext.SetExtension(3, []byte{1, 2})
	fromBrowser := marshal(t, ext)
	buf := make([]byte, 1500)
	relay := addrOf(h.relaySock)
	seq := uint16(0)
	step := func() {
		seq++
		binary.BigEndian.PutUint16(fromAst[2:], seq)
		_, _ = h.ast.WriteToUDPAddrPort(fromAst, relay)
		_, _, _ = h.browser.ReadFromUDPAddrPort(buf)
		h.remote.ch <- fromBrowser
		_, _, _ = h.ast.ReadFromUDPAddrPort(buf)
	}
	_ = h.browser.SetReadDeadline(time.Now().Add(time.Minute))
	_ = h.ast.SetReadDeadline(time.Now().Add(time.Minute))
	step()
	if allocs := testing.AllocsPerRun(500, step); allocs > 0 {
		t.Fatalf("%.2f allocations per packet pair, want 0", allocs)
	}
	if s := h.r.Stats(); s.ToBrowser.Packets < 500 || s.ToAsterisk.Packets < 500 {
		t.Fatalf("stats %+v", s)
	}
}
