//go:build linux

package mmsg

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A detached socket is read outside Go's netpoller. Go registers every socket for EPOLLIN and EPOLLOUT,
// edge-triggered, so send-buffer space coming back can wake the netpoller as well as a datagram arriving, and a
// socket in the netpoller wakes it for every datagram however busy it is. A detached socket sits in an epoll set of
// its own, for EPOLLIN only, which the netpoller watches in its place. While datagrams come slower than
// Options.PaceAbove a second, the set holds the socket and the reader is woken per datagram. Above that rate (with
// Options.Pace set) the socket leaves the set and a timer (timerfd, on a grid of Options.Pace shared by every paced
// socket, so that they all wake together) wakes the reader instead: it then reads every datagram that came
// meanwhile in one batch. A datagram then waits at most Pace, on average half of it.

const rateWindow = 100 * time.Millisecond

// detached is the state of a socket taken out of Go's netpoller.
type detached struct {
	fd, ep, tfd int
	local       *net.UDPAddr
	pace        time.Duration
	above       int

	// mu guards the file descriptors: every system call on them holds it for reading, Close for writing, so none
	// is closed (and its number reused) under a call.
	mu     sync.RWMutex
	closed atomic.Bool
	epf    *os.File // ep, in Go's netpoller
	eprc   syscall.RawConn

	// The reader's state: readMu holds it for the read in progress.
	readMu   sync.Mutex
	rs       *Scratch              // the batch being read
	rerr     error                 // what stopped it, if the socket was closed under it
	readFn   func(fd uintptr) bool // d.read, made once: no read allocates a closure
	paced    atomic.Bool
	count    int
	windowAt time.Time
	tick     [8]byte
}

// Detach takes c's socket out of Go's netpoller (c is closed; the socket lives on in the Conn, which owns it from
// then: close it with Conn.Close). Outside Linux it is New with no pacing.
func Detach(c *net.UDPConn, o Options) (*Conn, error) {
	local, _ := c.LocalAddr().(*net.UDPAddr)
	base, err := New(c)
	if err != nil {
		return nil, err
	}
	if o.PaceAbove <= 0 {
		o.PaceAbove = DefaultPaceAbove(o.Pace)
	}
	d := &detached{fd: -1, ep: -1, tfd: -1, local: local, pace: o.Pace, above: o.PaceAbove}
	fail := func(what string, err error) (*Conn, error) {
		d.closeFDs()
		return nil, fmt.Errorf("mmsg: detach %v: %s: %w", local, what, err)
	}
	var derr error
	if err := base.rc.Control(func(fd uintptr) { d.fd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return fail("dup", err)
	}
	if derr != nil {
		return fail("dup", derr)
	}
	if err := c.Close(); err != nil { // the original leaves the netpoller; the socket stays open through d.fd
		return fail("close the original", err)
	}
	if d.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fail("epoll_create1", err)
	}
	if err := unix.EpollCtl(d.ep, unix.EPOLL_CTL_ADD, d.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(d.fd)}); err != nil {
		return fail("epoll_ctl", err)
	}
	if o.Pace > 0 {
		if d.tfd, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
			return fail("timerfd_create", err)
		}
		if err := unix.EpollCtl(d.ep, unix.EPOLL_CTL_ADD, d.tfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(d.tfd)}); err != nil {
			return fail("epoll_ctl timerfd", err)
		}
	}
	if err := unix.SetNonblock(d.ep, true); err != nil { // os.NewFile puts a non-blocking descriptor in the netpoller
		return fail("set the epoll set non-blocking", err)
	}
	d.epf = os.NewFile(uintptr(d.ep), "mmsg-epoll")
	if d.eprc, err = d.epf.SyscallConn(); err != nil {
		return fail("raw epoll set", err)
	}
	d.readFn = d.read
	return &Conn{v6: base.v6, d: d}, nil
}

func (d *detached) closeFDs() {
	for _, fd := range []int{d.fd, d.tfd} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
	switch {
	case d.epf != nil:
		_ = d.epf.Close()
	case d.ep >= 0:
		_ = unix.Close(d.ep)
	}
}

// call makes s's system call on the socket; false: it would block.
func (d *detached) call(trap uintptr, s *Scratch) (bool, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed.Load() {
		return false, net.ErrClosed
	}
	return s.call(trap, uintptr(d.fd)), nil
}

// readDetached reads a batch, waiting on the epoll set (the socket, or the timer when paced) while there is
// nothing to read.
func (c *Conn) readDetached(s *Scratch) error {
	d := c.d
	d.readMu.Lock()
	defer d.readMu.Unlock()
	d.rs, d.rerr = s, nil
	err := d.eprc.Read(d.readFn)
	d.rs = nil
	switch {
	case d.rerr != nil:
		return d.rerr
	case err != nil && (d.closed.Load() || errors.Is(err, os.ErrClosed)):
		return net.ErrClosed
	case err != nil:
		return err
	}
	if s.errno == 0 {
		d.account(s.done)
	}
	return nil
}

// read is RawConn.Read's callback: it is called at once, and again whenever the epoll set has become readable,
// until it returns true. It tries the socket itself, so a wake-up costs one recvmmsg, and a read that finds the
// socket empty one more (before parking): no epoll_wait on the set, which a wake-up cost twice before (one to
// see the set readable, one to see it empty). The set need not be read: Go's netpoller watches it edge-triggered,
// and each datagram and each timer expiry notifies it anew. The calls are raw (no runtime system-call state, which
// would wake sysmon on every call: `perf record` at 100 calls once put 11 % of Patchbay's CPU in sysmon's sleeps
// and wake-ups).
func (d *detached) read(uintptr) bool {
	if d.paced.Load() {
		d.readTick()
	}
	ok, err := d.call(unix.SYS_RECVMMSG, d.rs)
	if err != nil {
		d.rerr = err
		return true
	}
	if !ok {
		d.account(0)
	}
	return ok
}

// readTick reads the timer's expirations: a periodic timerfd is re-armed only when read.
func (d *detached) readTick() {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if !d.closed.Load() {
		_, _, _ = unix.RawSyscall(unix.SYS_READ, uintptr(d.tfd), uintptr(unsafe.Pointer(&d.tick[0])), uintptr(len(d.tick)))
	}
}

// account counts what was read and switches between per-datagram wake-ups and the timer at a window's end.
func (d *detached) account(n int) {
	if d.pace <= 0 {
		return
	}
	d.count += n
	now := time.Now()
	if d.windowAt.IsZero() {
		d.windowAt = now
		return
	}
	el := now.Sub(d.windowAt)
	if el < rateWindow {
		return
	}
	rate := float64(d.count) / el.Seconds()
	d.count, d.windowAt = 0, now
	switch paced := d.paced.Load(); {
	case !paced && rate >= float64(d.above):
		d.setPaced(true)
	case paced && rate < float64(d.above)/2:
		d.setPaced(false)
	}
}

// setPaced moves the socket out of the epoll set and starts the timer, or the reverse.
func (d *detached) setPaced(on bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed.Load() {
		return
	}
	var spec unix.ItimerSpec
	events := uint32(unix.EPOLLIN)
	flags := 0
	if on {
		// On a grid of d.pace from the clock's zero: every paced socket's timer fires at the same instants.
		var now unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
		next := (now.Nano()/int64(d.pace) + 1) * int64(d.pace)
		spec = unix.ItimerSpec{Interval: unix.NsecToTimespec(int64(d.pace)), Value: unix.NsecToTimespec(next)}
		events, flags = 0, unix.TFD_TIMER_ABSTIME
	}
	// Timer first when turning on, socket first when turning off: no moment in which neither wakes the reader.
	if on {
		_ = unix.TimerfdSettime(d.tfd, flags, &spec, nil)
	}
	_ = unix.EpollCtl(d.ep, unix.EPOLL_CTL_MOD, d.fd, &unix.EpollEvent{Events: events, Fd: int32(d.fd)})
	if !on {
		_ = unix.TimerfdSettime(d.tfd, 0, &spec, nil)
	}
	d.paced.Store(on)
}

// writeDetached sends s's batch; a full send buffer refuses the datagram at hand (it is not waited for: media
// that is late is lost anyway).
func (c *Conn) writeDetached(s *Scratch) error {
	ok, err := c.d.call(unix.SYS_SENDMMSG, s)
	if err != nil {
		return err
	}
	if !ok {
		s.done, s.errno = 0, unix.EAGAIN
	}
	return nil
}

// Paced reports whether a detached socket is being read on its timer.
func (c *Conn) Paced() bool { return c.d != nil && c.d.paced.Load() }

// LocalAddr is the socket's address.
func (c *Conn) LocalAddr() net.Addr {
	if c.d != nil {
		return c.d.local
	}
	return nil
}

// WriteToAddrPort sends one datagram (pion's writes on a detached socket: STUN, DTLS).
func (c *Conn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	if c.d == nil {
		return 0, errors.New("mmsg: WriteToAddrPort needs a detached socket")
	}
	var sa unix.RawSockaddrInet6
	n := c.putSockaddr(&sa, to)
	if n == 0 {
		return 0, fmt.Errorf("mmsg: cannot send to %v on this socket", to)
	}
	c.d.mu.RLock()
	defer c.d.mu.RUnlock()
	if c.d.closed.Load() {
		return 0, net.ErrClosed
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(c.d.fd), uintptr(p), uintptr(len(b)), unix.MSG_DONTWAIT,
			uintptr(unsafe.Pointer(&sa)), uintptr(n))
		switch e {
		case 0:
			return len(b), nil
		case unix.EINTR:
			continue
		}
		return 0, os.NewSyscallError("sendto", e)
	}
}

// Close closes a detached socket: a reader waiting returns net.ErrClosed. Safe to call more than once; a Conn
// made with New leaves its socket to the *net.UDPConn.
func (c *Conn) Close() error {
	d := c.d
	if d == nil || !d.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := d.epf.Close() // wakes the reader
	d.mu.Lock()          // no system call on the descriptors is under way from here on
	defer d.mu.Unlock()
	for _, fd := range []int{d.fd, d.tfd} {
		if fd >= 0 {
			err = errors.Join(err, unix.Close(fd))
		}
	}
	return err
}
