//go:build !linux

package mmsg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// Conn makes batched reads and writes on one UDP socket (one datagram per call outside Linux). It is safe for
// concurrent use as long as each goroutine brings its own Scratch.
type Conn struct {
	pc  *ipv4.PacketConn
	own *net.UDPConn // set by Detach: Close closes it
}

// New wraps c; c stays the owner of the socket.
func New(c *net.UDPConn) (*Conn, error) {
	if c == nil {
		return nil, fmt.Errorf("mmsg: no socket")
	}
	return &Conn{pc: ipv4.NewPacketConn(c)}, nil
}

// Scratch bounds a batch and holds x/net's messages for it. A Scratch belongs to one goroutine at a time.
type Scratch struct {
	msgs  []ipv4.Message
	addrs []net.UDPAddr
}

// NewScratch makes room for batches of up to n datagrams.
func NewScratch(n int) *Scratch {
	n = max(n, 1)
	s := &Scratch{msgs: make([]ipv4.Message, n), addrs: make([]net.UDPAddr, n)}
	for i := range s.msgs {
		s.msgs[i].Buffers = [][]byte{nil}
	}
	return s
}

// Len is the largest batch s carries.
func (s *Scratch) Len() int { return len(s.msgs) }

// ReadBatch reads up to min(len(ms), s.Len()) datagrams, waiting for the first; it returns how many it read.
func (c *Conn) ReadBatch(ms []Message, s *Scratch) (int, error) {
	n := min(len(ms), len(s.msgs))
	for i := range n {
		s.msgs[i].Buffers[0] = ms[i].Buf
	}
	got, err := c.pc.ReadBatch(s.msgs[:n], 0)
	got = max(got, 0) // x/net passes on the system call's -1 with its error
	for i := range got {
		ms[i].N = s.msgs[i].N
		if ua, ok := s.msgs[i].Addr.(*net.UDPAddr); ok {
			a := ua.AddrPort()
			ms[i].Addr = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		}
	}
	return got, err
}

// WriteBatch sends up to min(len(ms), s.Len()) datagrams and returns how many were sent.
func (c *Conn) WriteBatch(ms []Message, s *Scratch) (int, error) {
	n := min(len(ms), len(s.msgs))
	for i := range n {
		s.msgs[i].Buffers[0] = ms[i].Buf
		s.addrs[i] = *net.UDPAddrFromAddrPort(ms[i].Addr)
		s.msgs[i].Addr = &s.addrs[i]
	}
	sent, err := c.pc.WriteBatch(s.msgs[:n], 0)
	return max(sent, 0), err // x/net passes on the system call's -1 with its error
}

// Detach is New outside Linux, with the Conn owning c: Close closes it.
func Detach(c *net.UDPConn, _ Options) (*Conn, error) {
	mc, err := New(c)
	if err != nil {
		return nil, err
	}
	mc.own = c
	return mc, nil
}

// Paced is always false outside Linux.
func (c *Conn) Paced() bool { return false }

// LocalAddr is the socket's address (a Conn made by Detach).
func (c *Conn) LocalAddr() net.Addr {
	if c.own == nil {
		return nil
	}
	return c.own.LocalAddr()
}

// WriteToAddrPort sends one datagram (a Conn made by Detach).
func (c *Conn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if c.own == nil {
		return 0, fmt.Errorf("mmsg: WriteToAddrPort needs a detached socket")
	}
	return c.own.WriteToUDPAddrPort(b, to)
}

// Close closes a socket given to Detach; safe to call more than once.
func (c *Conn) Close() error {
	if c.own == nil {
		return nil
	}
	if err := c.own.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
