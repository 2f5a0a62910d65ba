//go:build linux

package mmsg

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn makes batched reads and writes on one UDP socket. It is safe for concurrent use as long as each goroutine
// brings its own Scratch.
type Conn struct {
	rc syscall.RawConn
	v6 bool      // an AF_INET6 socket (dual-stack): IPv4 destinations are written IPv4-mapped
	d  *detached // set by Detach: the socket is outside Go's netpoller (paced_linux.go)
}

// New wraps c; c stays the owner of the socket (closing c ends every call in progress with net.ErrClosed).
func New(c *net.UDPConn) (*Conn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("mmsg: raw socket of %v: %w", c.LocalAddr(), err)
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("mmsg: socket of %v: %w", c.LocalAddr(), err)
	}
	if serr != nil {
		return nil, fmt.Errorf("mmsg: address family of the socket on %v: %w", c.LocalAddr(), serr)
	}
	return &Conn{rc: rc, v6: domain == unix.AF_INET6}, nil
}

// mmsghdr is struct mmsghdr; Go pads it to the kernel's size (64 bytes on 64-bit, 32 on 32-bit).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// Scratch is what the kernel reads and writes during one batch call: message headers, I/O vectors and socket
// addresses. A Scratch belongs to one goroutine at a time; it bounds the batch size.
type Scratch struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for an IPv4 address too

	// The system call of the batch in progress (s.n headers), as closures made once: no call allocates one.
	recv, send func(fd uintptr) bool
	n, done    int
	errno      syscall.Errno
}

// NewScratch makes room for batches of up to n datagrams.
func NewScratch(n int) *Scratch {
	n = max(n, 1)
	s := &Scratch{hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), names: make([]unix.RawSockaddrInet6, n)}
	s.recv = func(fd uintptr) bool { return s.call(unix.SYS_RECVMMSG, fd) }
	s.send = func(fd uintptr) bool { return s.call(unix.SYS_SENDMMSG, fd) }
	return s
}

// call makes one recvmmsg or sendmmsg of s.n headers; false asks the netpoller to wait until the socket is ready.
func (s *Scratch) call(trap, fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(s.n), 0, 0, 0)
		switch e {
		case 0:
			s.done, s.errno = int(r), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			s.done, s.errno = 0, e
			return true
		}
	}
}

// pack points one header per message at its buffer and at an address slot: filled with the message's destination
// when writing, left for the kernel to fill when reading.
func (s *Scratch) pack(c *Conn, ms []Message, write bool) {
	for i := range ms {
		s.iovs[i].Base = unsafe.SliceData(ms[i].Buf)
		s.iovs[i].SetLen(len(ms[i].Buf))
		s.hdrs[i] = mmsghdr{}
		s.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		s.hdrs[i].hdr.Namelen = uint32(unsafe.Sizeof(s.names[i]))
		if write {
			s.hdrs[i].hdr.Namelen = c.putSockaddr(&s.names[i], ms[i].Addr)
		}
		s.hdrs[i].hdr.Iov = &s.iovs[i]
		s.hdrs[i].hdr.SetIovlen(1)
	}
	s.n = len(ms)
}

// Len is the largest batch s carries.
func (s *Scratch) Len() int { return len(s.hdrs) }

// ReadBatch reads up to min(len(ms), s.Len()) datagrams, waiting for the first; it returns how many it read.
func (c *Conn) ReadBatch(ms []Message, s *Scratch) (int, error) {
	n := min(len(ms), len(s.hdrs))
	if n == 0 {
		return 0, nil
	}
	s.pack(c, ms[:n], false)
	var err error
	if c.d != nil {
		err = c.readDetached(s)
	} else {
		err = c.rc.Read(s.recv)
	}
	runtime.KeepAlive(ms)
	if err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", s.errno)
	}
	got := s.done
	for i := range got {
		ms[i].N = int(s.hdrs[i].len)
		ms[i].Addr = sockaddr(&s.names[i])
	}
	return got, nil
}

// WriteBatch sends up to min(len(ms), s.Len()) datagrams and returns how many the kernel took. A datagram the
// kernel refuses (its error is returned) is not among them: the caller may go on after it.
func (c *Conn) WriteBatch(ms []Message, s *Scratch) (int, error) {
	n := min(len(ms), len(s.hdrs))
	if n == 0 {
		return 0, nil
	}
	s.pack(c, ms[:n], true)
	var err error
	if c.d != nil {
		err = c.writeDetached(s)
	} else {
		err = c.rc.Write(s.send) // EAGAIN (the send buffer is full) waits in the netpoller
	}
	runtime.KeepAlive(ms)
	if err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, os.NewSyscallError("sendmmsg", s.errno)
	}
	return s.done, nil
}

// putSockaddr writes a as the socket's kind of address into sa and returns its length; 0 for an address the
// socket cannot send to (IPv6 on an IPv4 socket, or none), which the kernel then refuses for that datagram alone.
func (c *Conn) putSockaddr(sa *unix.RawSockaddrInet6, a netip.AddrPort) uint32 {
	ip := a.Addr()
	if !ip.IsValid() || (!c.v6 && !ip.Unmap().Is4()) {
		*sa = unix.RawSockaddrInet6{}
		return 0
	}
	if !c.v6 {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.Unmap().As4()}
		putPort(&sa4.Port, a.Port())
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
	putPort(&sa.Port, a.Port())
	return unix.SizeofSockaddrInet6
}

// putPort stores port in network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// sockaddr reads the address the kernel wrote.
func sockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := func(p *uint16) uint16 { b := (*[2]byte)(unsafe.Pointer(p)); return uint16(b[0])<<8 | uint16(b[1]) }
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port(&sa4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port(&sa.Port))
	}
	return netip.AddrPort{}
}
