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
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/mmsg"
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

// fakeBrowser stands in for *media.Peer on either path. On the lean path AppendRTP sends the plain packet at
// once (the SRTP side is media's, tested there); on pion's path the tracks are fakes.
type fakeBrowser struct {
	mode    media.Mode
	send    *net.UDPConn
	to      netip.AddrPort
	buf     []byte
	ssrc    uint32
	handler atomic.Pointer[media.RTPHandler]
	local   *udpTrack
	remote  *chanTrack
}

func (f *fakeBrowser) LockMode() media.Mode { return f.mode }
func (f *fakeBrowser) SetRTPHandler(h media.RTPHandler) {
	if h == nil {
		f.handler.Store(nil)
		return
	}
	f.handler.Store(&h)
}
func (f *fakeBrowser) AppendRTP(_ *media.Batch, seq uint16, ts uint32, marker bool, pl []byte, _ time.Time) error {
	b := f.buf[:12+len(pl)]
	b[0], b[1] = 0x80, 0
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], f.ssrc)
	copy(b[12:], pl)
	_, err := f.send.WriteToUDPAddrPort(b, f.to)
	return err
}
func (f *fakeBrowser) RTCPStats() media.RTCPStats { return media.RTCPStats{} }
func (f *fakeBrowser) localTrack() TrackWriter    { return f.local }
func (f *fakeBrowser) remoteTrack(ctx context.Context) (TrackReader, error) {
	return f.remote, nil
}

// fromBrowser delivers one packet from the browser as its path would: to the handler (lean) or the track (pion).
func (f *fakeBrowser) fromBrowser(t testing.TB, pkt []byte) {
	t.Helper()
	if f.mode == media.ModePion {
		f.remote.ch <- pkt
		return
	}
	h := f.handler.Load()
	if h == nil {
		t.Fatal("no RTP handler set")
	}
	(*h).HandleRTP(pkt)
	(*h).FlushRTP()
}

// harness wires a relay between a fake Asterisk socket and a fake browser socket over a Ports of its own.
type harness struct {
	pool         *Ports
	ast, browser *net.UDPConn
	fb           *fakeBrowser
	r            *Relay
}

var nextPort atomic.Int32

// newPool binds a Ports in a range of its own per test.
func newPool(t testing.TB) *Ports {
	t.Helper()
	base := 47300 + int(nextPort.Add(1)%50)*10
	p, err := NewPorts("127.0.0.1", base, base+9, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func newHarness(t testing.TB, mode media.Mode) *harness {
	t.Helper()
	h := &harness{pool: newPool(t), ast: listen(t), browser: listen(t)}
	h.fb = &fakeBrowser{mode: mode, send: listen(t), to: addrOf(h.browser), buf: make([]byte, 1500), ssrc: 0xB0B0B0B0,
		remote: newChanTrack()}
	h.fb.local = &udpTrack{conn: h.fb.send, to: addrOf(h.browser), buf: make([]byte, 1500), ssrc: 0xB0B0B0B0}
	sock, err := h.pool.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	h.r, err = newRelay(sock, h.fb, Options{Asterisk: addrOf(h.ast), PayloadType: 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.r.Close(); sock.Release() })
	return h
}

var modes = []media.Mode{media.ModeLean, media.ModePion}

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
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			h := newHarness(t, mode)
			in := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, PayloadType: 0, SequenceNumber: 7,
				Timestamp: 1234, SSRC: 0xCAFE, CSRC: []uint32{9}}, Payload: payload(160, 5), PaddingSize: 4}
			in.Header.Padding = true
			if err := in.SetExtension(1, []byte{0xAA, 0xBB}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-h.r.FirstPacket():
				t.Fatal("first packet reported before any")
			default:
			}
			h.fb.fromBrowser(t, marshal(t, in))
			got, from := readPkt(t, h.ast)
			if from != h.pool.Addr() {
				t.Fatalf("sent from %s, want the relay socket %s (strictrtp)", from, h.pool.Addr())
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
			select {
			case <-h.r.FirstPacket():
			case <-time.After(time.Second):
				t.Fatal("first packet not reported")
			}
			h.fb.fromBrowser(t, []byte{1, 2, 3})
			waitFor(t, func() bool { return h.r.Stats().ToAsterisk.Drops == 1 })
			if s := h.r.Stats(); s.ToAsterisk.Packets != 1 || s.ToAsterisk.Bytes != 160 || s.ToAsterisk.Last.IsZero() ||
				s.Lean != (mode == media.ModeLean) {
				t.Fatalf("stats %+v", s)
			}
		})
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
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			h := newHarness(t, mode)
			send := func(c *net.UDPConn, ssrc uint32, seq uint16, ts uint32, pt uint8) {
				b := marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq,
					Timestamp: ts, SSRC: ssrc}, Payload: payload(160, byte(seq))})
				if _, err := c.WriteToUDPAddrPort(b, h.pool.Addr()); err != nil {
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

			// A stranger (counted by the pool), and Asterisk with a wrong payload type (by the relay): dropped.
			stranger := listen(t)
			send(stranger, 1, 102, 8320, 0)
			send(h.ast, 1, 102, 8320, 13)
			expectNothing(t, h.browser, 100*time.Millisecond)
			if d := h.r.Stats().ToBrowser.Drops; d != 1 {
				t.Fatalf("relay drops = %d, want 1", d)
			}
			if u := h.pool.Stats().Unknown; u != 1 {
				t.Fatalf("pool unknown = %d, want 1", u)
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
			waitFor(t, func() bool { return h.r.Stats().ToBrowser.Packets == 4 }) // counted just after sending
		})
	}
}

func TestNothingBeforeAsteriskKnown(t *testing.T) {
	pool, ast := newPool(t), listen(t)
	fb := &fakeBrowser{mode: media.ModeLean, send: listen(t), to: addrOf(listen(t)), buf: make([]byte, 1500)}
	sock, _ := pool.Acquire()
	r, err := newRelay(sock, fb, Options{PayloadType: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fb.fromBrowser(t, marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8}, Payload: payload(160, 0)}))
	waitFor(t, func() bool { return r.Stats().ToAsterisk.Drops == 1 })
	r.SetAsterisk(addrOf(ast))
	fb.fromBrowser(t, marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8}, Payload: payload(160, 0)}))
	if p, _ := readPkt(t, ast); p.PayloadType != 8 {
		t.Fatalf("PT %d, want 8", p.PayloadType)
	}
}

func TestNewRejectsDynamicPayloadType(t *testing.T) {
	sock, _ := newPool(t).Acquire()
	if _, err := newRelay(sock, &fakeBrowser{}, Options{PayloadType: 111}); err == nil {
		t.Fatal("accepted PT 111, which Asterisk drops")
	}
}

func TestCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, mode := range modes {
		for range 3 {
			h := newHarness(t, mode)
			h.fb.fromBrowser(t, marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload(10, 0)}))
			readPkt(t, h.ast)
			if err := h.r.Start(); err == nil {
				t.Fatal("second Start accepted")
			}
			if err := h.r.Close(); err != nil {
				t.Fatal(err)
			}
			if err := h.r.Close(); err != nil {
				t.Fatal(err)
			}
			if err := h.r.Start(); !errors.Is(err, ErrClosed) {
				t.Fatalf("Start after Close: %v", err)
			}
			// After Close, Asterisk's packets for the call are strangers.
			if _, err := h.ast.WriteToUDPAddrPort(marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2},
				Payload: payload(10, 0)}), h.pool.Addr()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return h.pool.Stats().Unknown == 1 })
			_ = h.pool.Close()
		}
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

func TestPortsShareOneSocketAndSkipBusy(t *testing.T) {
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 47800})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	p, err := NewPorts("127.0.0.1", 47800, 47802, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := p.Acquire()
	b, err := p.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	if a.ExternalHost() != "127.0.0.1:47801" || b.ExternalHost() != a.ExternalHost() {
		t.Fatalf("got %s and %s, want both on the first free port 47801", a.ExternalHost(), b.ExternalHost())
	}
	if st := p.Stats(); st.InUse != 2 {
		t.Fatalf("stats %+v", st)
	}
	a.Release()
	a.Release()
	b.Release()
	if st := p.Stats(); st.InUse != 0 {
		t.Fatalf("stats after release %+v", st)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	if _, err := p.Acquire(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
	for _, bad := range [][2]int{{0, 10}, {10, 5}, {1, 70000}} {
		if _, err := NewPorts("127.0.0.1", bad[0], bad[1], 0); err == nil {
			t.Fatalf("range %v accepted", bad)
		}
	}
	if _, err := NewPorts("localhost", 1, 2, 0); err == nil {
		t.Fatal("host name accepted")
	}
	if _, err := NewPorts("127.0.0.1", 47800, 47800, 0); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("busy range: %v, want ErrNoPorts", err)
	}
}

// TestNoAllocsPerPacket drives both directions of the lean path packet by packet through the relay's own code:
// a batch from Asterisk as the reader hands it over, and a packet from the browser as the media demux hands it
// over, each sent on with sendmmsg. Allocations are counted across all goroutines. The read system call itself is
// outside (webrtc/mmsg's BenchmarkWriteReadBatch shows it allocates nothing).
func TestNoAllocsPerPacket(t *testing.T) {
	h := newHarness(t, media.ModeLean)
	fromAst := marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload(160, 0)})
	ext := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: payload(160, 0)}
	_ = ext.SetExtension(3, []byte{1, 2})
	fromBrowser := marshal(t, ext)
	work := make([]byte, 1500)
	msgs := []mmsg.Message{{Buf: make([]byte, 1500), Addr: addrOf(h.ast)}}
	buf := make([]byte, 1500)
	seq := uint16(0)
	step := func() {
		seq++
		binary.BigEndian.PutUint16(fromAst[2:], seq)
		msgs[0].N = copy(msgs[0].Buf, fromAst)
		h.pool.forward(msgs, time.Now())
		_, _, _ = h.browser.ReadFromUDPAddrPort(buf)
		h.r.HandleRTP(work[:copy(work, fromBrowser)])
		h.r.FlushRTP()
		_, _, _ = h.ast.ReadFromUDPAddrPort(buf)
	}
	_ = h.browser.SetReadDeadline(time.Now().Add(time.Minute))
	_ = h.ast.SetReadDeadline(time.Now().Add(time.Minute))
	step()
	if allocs := testing.AllocsPerRun(500, step); allocs > 0 && !raceEnabled { // the race detector allocates
		t.Fatalf("%.2f allocations per packet pair, want 0", allocs)
	}
	if s := h.r.Stats(); s.ToBrowser.Packets < 500 || s.ToAsterisk.Packets < 500 {
		t.Fatalf("stats %+v", s)
	}
}

// TestRefusedDatagramDropsAlone: a datagram the kernel refuses in a batch toward Asterisk (here an IPv6 destination
// on the IPv4 socket) is lost on its own; the other calls' packets queued around it are still sent.
func TestRefusedDatagramDropsAlone(t *testing.T) {
	p, err := NewPorts("127.0.0.1", 47840, 47860, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b := listen(t), listen(t)
	batch := newUDPBatch(4)
	for _, m := range []struct {
		pkt string
		to  netip.AddrPort
	}{{"to a", addrOf(a)}, {"nowhere", netip.MustParseAddrPort("[2001:db8::1]:4000")}, {"to b", addrOf(b)}} {
		if err := batch.add(p.mc, []byte(m.pkt), m.to); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.flush(p.mc); err == nil {
		t.Error("flush reported no error for the refused datagram")
	}
	buf := make([]byte, 100)
	for c, want := range map[*net.UDPConn]string{a: "to a", b: "to b"} {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != want {
			t.Errorf("got %q, %v; want %q", buf[:n], err, want)
		}
	}
}
