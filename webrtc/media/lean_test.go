package media

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/patchbay/patchbay/webrtc/mmsg"
)

// leanPair is a lean tap keyed by hand (no ICE or DTLS) and the "browser" side of it: an SRTP context that
// encrypts what the tap decrypts, and a socket that receives what the tap sends.
type leanPair struct {
	tap     *tap
	browser *srtp.Context // encrypts toward the tap and decrypts from it
	sock    *net.UDPConn  // the browser's socket
	seq     uint16
	plain   []byte
	enc     []byte
	h       rtp.Header
}

type countHandler struct{ n, flushed int }

func (c *countHandler) HandleRTP([]byte) { c.n++ }
func (c *countHandler) FlushRTP()        { c.flushed++ }

func newLeanPair(t testing.TB) *leanPair {
	t.Helper()
	server, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	browser, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = browser.Close() })
	key, salt := make([]byte, 16), make([]byte, 12)
	for i := range key {
		key[i] = byte(i)
	}
	mk := func() *srtp.Context {
		c, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm, srtp.SRTPReplayProtection(64))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dm, err := newDemux(server, quietLog(), mmsg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dm.mc.Close() })
	tp := newTap(dm, PCMU)
	tp.in, tp.out, tp.ssrc = mk(), mk(), 0x5eed
	dst := browser.LocalAddr().(*net.UDPAddr).AddrPort()
	tp.dst.Store(&route{addr: dst})
	tp.state.Store(tapReady)
	lp := &leanPair{tap: tp, browser: mk(), sock: browser, plain: make([]byte, 172), enc: make([]byte, 1500)}
	lp.plain[0] = 0x80
	return lp
}

// fromBrowser encrypts the next frame as the browser would.
func (lp *leanPair) fromBrowser(t testing.TB) []byte {
	lp.seq++
	lp.plain[2], lp.plain[3] = byte(lp.seq>>8), byte(lp.seq)
	lp.plain[11] = 0x42 // browser SSRC
	out, err := lp.browser.EncryptRTP(lp.enc[:0], lp.plain, &lp.h)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLeanPathNoAllocs: a packet from the browser decrypted and handed over, and one to it protected and sent
// with sendmmsg, allocate nothing.
func TestLeanPathNoAllocs(t *testing.T) {
	lp := newLeanPair(t)
	h := &countHandler{}
	lp.tap.handler.Store(&handlerBox{h})
	from := lp.sock.LocalAddr().(*net.UDPAddr).AddrPort() // symmetric RTP: what it sends from is where it gets
	b := NewBatch(4)
	payload := make([]byte, 160)
	buf := make([]byte, 1500)
	_ = lp.sock.SetReadDeadline(time.Now().Add(time.Minute))
	ok := true
	step := func() {
		ok = ok && lp.tap.inbound(lp.fromBrowser(t), from, time.Now()) == h
		_ = lp.tap.appendRTP(b, lp.seq, uint32(lp.seq)*160, false, payload, time.Now())
		_ = b.Flush()
		_, _ = lp.sock.Read(buf)
	}
	step()
	allocs := testing.AllocsPerRun(300, step)
	if !ok {
		t.Fatal("a packet was not handed to the handler")
	}
	if allocs > 0 && !raceEnabled {
		t.Fatalf("%.2f allocations per packet each way, want 0", allocs)
	}
	if st := lp.tap.stats(); st.FromBrowser.Packets < 300 || st.ToBrowser.Packets < 300 || st.Undecryptable != 0 ||
		st.FromBrowser.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestLeanRTCP: the tap's sender report reaches the browser, and the browser's receiver report on it gives an RTT.
func TestLeanRTCP(t *testing.T) {
	lp := newLeanPair(t)
	b := NewBatch(1)
	if err := lp.tap.appendRTP(b, 1, 160, true, make([]byte, 160), time.Now()); err != nil {
		t.Fatal(err)
	}
	_ = b.Flush()
	buf := make([]byte, 1500)
	_ = lp.sock.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := lp.sock.Read(buf); err != nil {
		t.Fatal(err)
	}
	lp.tap.inbound(lp.fromBrowser(t), lp.sock.LocalAddr().(*net.UDPAddr).AddrPort(), time.Now())
	sent := time.Now()
	lp.tap.sendRTCP(sent, "cname")
	n, err := lp.sock.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := lp.browser.DecryptRTCP(nil, buf[:n], nil)
	if err != nil {
		t.Fatalf("browser cannot decrypt the sender report: %v", err)
	}
	if dec[1] != 200 || dec[0]&0x1f != 1 {
		t.Fatalf("want an SR with one report block, got PT %d RC %d", dec[1], dec[0]&0x1f)
	}
	// The browser answers 30 ms later with an RR on our SSRC: LSR from our SR, DLSR 10 ms.
	lsr := uint32(dec[10])<<24 | uint32(dec[11])<<16 | uint32(dec[12])<<8 | uint32(dec[13])
	rr := make([]byte, 32)
	rr[0], rr[1], rr[3] = 0x81, 201, 7
	rr[7] = 0x42
	rr[8], rr[9], rr[10], rr[11] = 0, 0, 0x5e, 0xed
	rr[24], rr[25], rr[26], rr[27] = byte(lsr>>24), byte(lsr>>16), byte(lsr>>8), byte(lsr)
	dlsr := uint32(10 * 65536 / 1000)
	rr[28], rr[29], rr[30], rr[31] = byte(dlsr>>24), byte(dlsr>>16), byte(dlsr>>8), byte(dlsr)
	enc, err := lp.browser.EncryptRTCP(nil, rr, nil)
	if err != nil {
		t.Fatal(err)
	}
	lp.tap.inbound(enc, lp.sock.LocalAddr().(*net.UDPAddr).AddrPort(), sent.Add(30*time.Millisecond))
	if rtt := lp.tap.stats().RTT; rtt < 18*time.Millisecond || rtt > 22*time.Millisecond {
		t.Fatalf("RTT %v, want about 20 ms", rtt)
	}
}

// BenchmarkLeanPacket is the lean path's CPU per packet without sockets on the way in: decrypt and hand over
// (in), protect and send with sendmmsg (out).
func BenchmarkLeanPacket(b *testing.B) {
	b.Run("in", func(b *testing.B) {
		lp := newLeanPair(b)
		lp.tap.handler.Store(&handlerBox{&countHandler{}})
		from := netip.MustParseAddrPort("127.0.0.1:9")
		var pkts [][]byte
		b.ReportAllocs()
		for b.Loop() {
			if len(pkts) == 0 {
				b.StopTimer()
				for range 4096 {
					pkts = append(pkts, append([]byte(nil), lp.fromBrowser(b)...))
				}
				b.StartTimer()
			}
			lp.tap.inbound(pkts[0], from, time.Now())
			pkts = pkts[1:]
		}
	})
	b.Run("out", func(b *testing.B) {
		lp := newLeanPair(b)
		out := NewBatch(1)
		payload := make([]byte, 160)
		seq := uint16(0)
		b.ReportAllocs()
		for b.Loop() {
			seq++
			if err := lp.tap.appendRTP(out, seq, uint32(seq)*160, false, payload, time.Now()); err != nil {
				b.Fatal(err)
			}
			_ = out.Flush()
		}
	})
}

// TestBatchAcrossAPIs: one batch fed by peers of two APIs (two sockets) sends each packet from its own socket.
func TestBatchAcrossAPIs(t *testing.T) {
	a, b := newLeanPair(t), newLeanPair(t)
	batch := NewBatch(8)
	buf := make([]byte, 1500)
	for i, lp := range []*leanPair{a, b, a} {
		if err := lp.tap.appendRTP(batch, uint16(i+1), 160, false, make([]byte, 160), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		lp   *leanPair
		want int
	}{{a, 2}, {b, 1}} {
		_ = c.lp.sock.SetReadDeadline(time.Now().Add(time.Second))
		for range c.want {
			n, from, err := c.lp.sock.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatal(err)
			}
			if from != c.lp.tap.d.mc.LocalAddr().(*net.UDPAddr).AddrPort() {
				t.Fatalf("packet came from %s, not its API's socket", from)
			}
			if _, err := c.lp.browser.DecryptRTP(nil, buf[:n], nil); err != nil {
				t.Fatalf("browser cannot decrypt: %v", err)
			}
		}
	}
}
