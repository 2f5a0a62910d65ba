//go:build linux

package mmsg

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func detach(t *testing.T, o Options) (*Conn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().(*net.UDPAddr).AddrPort()
	m, err := Detach(c, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, addr
}

// reader reads m until it is closed, sending each datagram's delay (from the send time it carries) and each
// batch's size.
func reader(m *Conn) (delays chan time.Duration, batches chan int, done chan error) {
	delays, batches, done = make(chan time.Duration, 100000), make(chan int, 100000), make(chan error, 1)
	go func() {
		ms := make([]Message, 64)
		for i := range ms {
			ms[i].Buf = make([]byte, 64)
		}
		s := NewScratch(64)
		for {
			n, err := m.ReadBatch(ms, s)
			if err != nil {
				done <- err
				return
			}
			now := time.Now()
			batches <- n
			for _, msg := range ms[:n] {
				if msg.N >= 8 {
					delays <- now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(msg.Buf))))
				}
			}
		}
	}()
	return delays, batches, done
}

func stamp() []byte { return binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano())) }

// TestDetachedSocket: a socket out of Go's netpoller still reads, writes (one datagram or a batch) and closes:
// Close wakes a reader waiting for a datagram, and is safe twice.
func TestDetachedSocket(t *testing.T) {
	defer goleak.VerifyNone(t)
	m, addr := detach(t, Options{})
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if got := m.LocalAddr().(*net.UDPAddr).AddrPort(); got != addr {
		t.Errorf("LocalAddr = %v, want %v", got, addr)
	}
	delays, _, done := reader(m)
	for range 3 {
		if _, err := peer.WriteToUDPAddrPort(stamp(), addr); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		select {
		case <-delays:
		case <-time.After(2 * time.Second):
			t.Fatalf("datagram %d never read", i)
		}
	}
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := m.WriteToAddrPort([]byte("one"), to); err != nil {
		t.Fatal(err)
	}
	if n, err := m.WriteAll([]Message{{Buf: []byte("two"), Addr: to}, {Buf: []byte("three"), Addr: to}}, NewScratch(4)); n != 2 || err != nil {
		t.Fatalf("WriteAll = %d, %v", n, err)
	}
	buf := make([]byte, 16)
	for _, want := range []string{"one", "two", "three"} {
		_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != want || from != addr {
			t.Fatalf("peer read %q from %v (%v), want %q from %v", buf[:n], from, err, want, addr)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("reader ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not wake the reader")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := m.WriteToAddrPort([]byte("late"), to); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v, want net.ErrClosed", err)
	}
}

// TestPacedUnderLoad: above PaceAbove the socket is read on the timer, in batches, losing nothing and delaying no
// datagram much past Pace; when the rate falls it is woken per datagram again.
func TestPacedUnderLoad(t *testing.T) {
	defer goleak.VerifyNone(t)
	const pace = 2 * time.Millisecond
	m, addr := detach(t, Options{Pace: pace, PaceAbove: 1000})
	delays, batches, done := reader(m)
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	send := func(every time.Duration, burst int, d time.Duration) int {
		var sent int
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(every) {
			for range burst {
				if _, err := peer.WriteToUDPAddrPort(stamp(), addr); err != nil {
					t.Fatal(err)
				}
				sent++
			}
		}
		return sent
	}
	// 2 datagrams every 0.5 ms, spread: about 4000 a second (fewer when the sleeps run long), over 1000.
	var wg sync.WaitGroup
	var sent int
	wg.Add(1)
	go func() { defer wg.Done(); sent = send(500*time.Microsecond, 2, 600*time.Millisecond) }()
	deadline := time.After(3 * time.Second)
	for !m.Paced() {
		select {
		case <-deadline:
			t.Fatal("never paced at about 4000 datagrams a second")
		case <-time.After(5 * time.Millisecond):
		}
	}
	wg.Wait()
	var got, reads int
	var worst time.Duration
	for got < sent {
		select {
		case d := <-delays:
			got++
			worst = max(worst, d)
		case n := <-batches:
			if n > 0 {
				reads++
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("read %d of %d datagrams", got, sent)
		}
	}
	for len(batches) > 0 {
		if <-batches > 0 {
			reads++
		}
	}
	t.Logf("paced: %d datagrams in %d reads, worst delay %v", got, reads, worst)
	if reads*3 > got*2 {
		t.Errorf("%d datagrams took %d reads: paced reads should batch them", got, reads)
	}
	// Race detector and a busy host: a generous bound, still far below what a lost wake-up would cost.
	if worst > pace+50*time.Millisecond {
		t.Errorf("a datagram waited %v, with a %v pace", worst, pace)
	}
	// A trickle, below half of PaceAbove: back to a wake-up per datagram, and the trickle is read.
	n := send(20*time.Millisecond, 1, 400*time.Millisecond)
	for range n {
		select {
		case <-delays:
		case <-time.After(2 * time.Second):
			t.Fatal("a datagram of the trickle was never read")
		}
	}
	if m.Paced() {
		t.Error("still paced at 50 datagrams a second")
	}
	_ = m.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("reader ended with %v", err)
	}
}
