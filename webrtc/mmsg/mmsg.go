// Package mmsg moves batches of UDP datagrams with one recvmmsg or sendmmsg each, for the media path's shared
// sockets (the browsers' ICE socket and the socket toward Asterisk's externalMedia channels).
//
// golang.org/x/net/ipv4's ReadBatch and WriteBatch make the same system calls, but through syscall.Syscall, which
// marks the goroutine's P as in a system call. With GOMAXPROCS 1 (Patchbay pinned to one core, as the benchmark
// runs it) the runtime's sysmon then keeps waking every 20 µs to take that P back and start another thread on it:
// `perf record` of the benchmark at 100 calls put 28 % of Patchbay's CPU in sysmon and another 5 % in thread
// hand-offs. These sockets are non-blocking (Go makes every socket so), so the kernel never waits inside these
// calls: on Linux they are made with RawSyscall, which keeps the P, and a would-block result waits in the netpoller
// exactly as any Go socket read or write does. Reading also gives netip.AddrPort, so no *net.UDPAddr is allocated
// per datagram.
//
// Detach goes one step further for the media path's two sockets (paced_linux.go): the socket leaves Go's netpoller
// for an epoll set of its own, which the netpoller watches instead, so that a busy socket can be read on a timer
// (Options.Pace) rather than on every datagram.
package mmsg

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

// Message is one datagram.
type Message struct {
	// Buf is where ReadBatch puts a datagram (its length is the most it takes), or the datagram WriteBatch sends.
	Buf []byte
	// N is the length of the datagram ReadBatch put in Buf.
	N int
	// Addr is where a datagram came from (ReadBatch; an IPv4 address arriving on a dual-stack socket is given as
	// IPv4, not IPv4-mapped), or where it goes (WriteBatch).
	Addr netip.AddrPort
}

// Options tune a detached socket (Detach); outside Linux there is no pacing.
type Options struct {
	// Pace is the timer's period while the socket is busy; 0 never paces.
	Pace time.Duration
	// PaceAbove is the rate (datagrams a second, measured over 100 ms) from which the socket is read on the
	// timer; it goes back to being woken per datagram below half of it. 0: three datagrams per tick. The timer only
	// saves anything when each tick finds several datagrams: at about one per tick (50 calls at 400 µs) the bench
	// measured 60 % more CPU for Patchbay than being woken per datagram, at three (150 calls) 15 % less.
	PaceAbove int
}

// DefaultPaceAbove is PaceAbove's value when it is 0: three datagrams per tick of pace.
func DefaultPaceAbove(pace time.Duration) int {
	if pace <= 0 {
		return 0
	}
	return int(3 * time.Second / pace)
}

var errNoneSent = errors.New("mmsg: the socket took none of the batch")

// WriteAll sends every message in batches of up to s.Len(), going on past a datagram the kernel refuses (that one is
// lost alone, not the other calls' packets after it). It returns how many were sent and the last error; it stops
// early only when the socket is closed.
func (c *Conn) WriteAll(ms []Message, s *Scratch) (int, error) {
	var sent int
	var err error
	for off := 0; off < len(ms); {
		k, werr := c.WriteBatch(ms[off:], s)
		if k == 0 && werr == nil {
			// A write that takes nothing and says nothing would loop here forever: count it as a refusal.
			werr = errNoneSent
		}
		off += k
		sent += k
		if werr != nil {
			err = werr
			if errors.Is(werr, net.ErrClosed) {
				break
			}
			off++ // the refused one
		}
	}
	return sent, err
}
