package mmsg

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func listen(t *testing.T, addr string) (*net.UDPConn, *Conn) {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return c, m
}

func port(c *net.UDPConn) uint16 { return uint16(c.LocalAddr().(*net.UDPAddr).Port) }

// TestBatchesCarryDatagramsBothWays: one WriteBatch reaches several sockets, each datagram intact and to its own
// destination, and one ReadBatch gets several with their sources, on an IPv4 socket and on a dual-stack one (where
// IPv4 peers must come out as IPv4, as the media path keys its maps by them).
func TestBatchesCarryDatagramsBothWays(t *testing.T) {
	defer goleak.VerifyNone(t)
	for _, tc := range []struct{ name, bind string }{
		{"ipv4 socket", "127.0.0.1:0"},
		{"dual-stack socket", "0.0.0.0:0"}, // Go opens AF_INET6 with IPV6_V6ONLY off for a wildcard "udp"
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, sm := listen(t, tc.bind)
			dst1, dm := listen(t, "127.0.0.1:0")
			dst2, _ := listen(t, "127.0.0.1:0")
			to := []netip.AddrPort{
				netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port(dst1)),
				netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port(dst2)),
				netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port(dst1)),
			}
			out := make([]Message, len(to))
			for i := range out {
				out[i] = Message{Buf: []byte(fmt.Sprintf("datagram %d", i)), Addr: to[i]}
			}
			s := NewScratch(8)
			if n, err := sm.WriteBatch(out, s); n != 3 || err != nil {
				t.Fatalf("WriteBatch = %d, %v; want 3", n, err)
			}
			// dst2 got its one datagram, as a plain socket sees it.
			buf := make([]byte, 100)
			_ = dst2.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, from, err := dst2.ReadFromUDPAddrPort(buf)
			if err != nil || string(buf[:n]) != "datagram 1" || from.Port() != port(src) {
				t.Fatalf("dst2 got %q from %v, %v", buf[:n], from, err)
			}
			// dst1 reads its two in one batch.
			in := make([]Message, 4)
			for i := range in {
				in[i].Buf = make([]byte, 1500)
			}
			got := 0
			for got < 2 {
				k, err := dm.ReadBatch(in[got:], NewScratch(4))
				if err != nil {
					t.Fatal(err)
				}
				got += k
			}
			for i, want := range []string{"datagram 0", "datagram 2"} {
				m := in[i]
				if !bytes.Equal(m.Buf[:m.N], []byte(want)) {
					t.Errorf("datagram %d: %q, want %q", i, m.Buf[:m.N], want)
				}
				if m.Addr.Port() != port(src) || !m.Addr.Addr().Is4() || m.Addr.Addr().String() != "127.0.0.1" {
					t.Errorf("datagram %d from %v, want 127.0.0.1:%d (IPv4, not mapped)", i, m.Addr, port(src))
				}
			}
		})
	}
}

// TestWriteBatchStopsAtAnUnsendableDatagram: a datagram the socket cannot send (an IPv6 destination on an IPv4
// socket) fails alone; what precedes it was sent and what follows it can be, and WriteAll sends both.
func TestWriteBatchStopsAtAnUnsendableDatagram(t *testing.T) {
	_, sm := listen(t, "127.0.0.1:0")
	dst, _ := listen(t, "127.0.0.1:0")
	good := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port(dst))
	ms := []Message{{Buf: []byte("a"), Addr: good}, {Buf: []byte("b"), Addr: netip.MustParseAddrPort("[2001:db8::1]:5000")},
		{Buf: []byte("c"), Addr: good}}
	s := NewScratch(3)
	n, err := sm.WriteBatch(ms, s)
	if n != 1 || err != nil {
		t.Fatalf("first WriteBatch = %d, %v; want 1 sent", n, err)
	}
	if n, err = sm.WriteBatch(ms[1:], s); n != 0 || err == nil {
		t.Fatalf("WriteBatch of the IPv6 destination = %d, %v; want an error", n, err)
	}
	if n, err = sm.WriteBatch(ms[2:], s); n != 1 || err != nil {
		t.Fatalf("WriteBatch after it = %d, %v; want 1 sent", n, err)
	}
	// WriteAll goes past it by itself.
	if n, err = sm.WriteAll(ms, s); n != 2 || err == nil {
		t.Fatalf("WriteAll = %d, %v; want 2 sent and the refused one's error", n, err)
	}
	buf := make([]byte, 10)
	for _, want := range []string{"a", "c", "a", "c"} {
		_ = dst.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, _, err := dst.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q, %v; want %q", buf[:n], err, want)
		}
	}
}

// TestReadBatchEndsWhenTheSocketCloses: a reader waiting in the netpoller returns net.ErrClosed.
func TestReadBatchEndsWhenTheSocketCloses(t *testing.T) {
	defer goleak.VerifyNone(t)
	c, m := listen(t, "127.0.0.1:0")
	done := make(chan error, 1)
	go func() {
		_, err := m.ReadBatch([]Message{{Buf: make([]byte, 1500)}}, NewScratch(1))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadBatch after close: %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadBatch still waiting after the socket closed")
	}
}

// BenchmarkWriteReadBatch: 16 datagrams through one WriteBatch and ReadBatch on loopback; no allocation.
func BenchmarkWriteReadBatch(b *testing.B) {
	src, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()
	sm, _ := New(src)
	dm, _ := New(dst)
	const n = 16
	out, in := make([]Message, n), make([]Message, n)
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port(dst))
	for i := range out {
		out[i] = Message{Buf: make([]byte, 172), Addr: to}
		in[i].Buf = make([]byte, 1500)
	}
	ws, rs := NewScratch(n), NewScratch(n)
	b.ReportAllocs()
	for b.Loop() {
		if k, err := sm.WriteBatch(out, ws); k != n || err != nil {
			b.Fatal(k, err)
		}
		for got := 0; got < n; {
			k, err := dm.ReadBatch(in[got:], rs)
			if err != nil {
				b.Fatal(err)
			}
			got += k
		}
	}
}

// TestDefaultPaceAbove: three datagrams per tick, none without pacing.
func TestDefaultPaceAbove(t *testing.T) {
	for _, tc := range []struct {
		pace time.Duration
		want int
	}{{0, 0}, {-time.Millisecond, 0}, {400 * time.Microsecond, 7500}, {time.Millisecond, 3000}} {
		if got := DefaultPaceAbove(tc.pace); got != tc.want {
			t.Errorf("DefaultPaceAbove(%v) = %d, want %d", tc.pace, got, tc.want)
		}
	}
}
