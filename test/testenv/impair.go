package testenv

import (
	"container/heap"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A netem of the test's own. This host's kernel has no sch_netem (CONFIG_NET_SCH_NETEM is off, and there is no
// modprobe), so `tc qdisc add … netem` is refused, and nftables can drop at random but cannot delay. An impaired
// namespace therefore reaches the host through a link the test process itself carries: a TUN device in the
// namespace and another on the host, and two goroutines that read every IPv4 packet one side sends and write it
// into the other. UDP datagrams are impaired on the way as netem would impair them (seeded loss, a delay with
// jitter that reorders, a one-off stall); other packets (TCP: the page, signalling, SIP over WSS) pass at once, as
// a netem behind a "match ip protocol 17" filter would do. Everything the namespace's programs send takes this
// link, whatever address they talk to (full ICE or Patchbay's lite one, host or relay candidates), and nothing
// else on the host does: one browser's leg is impaired both ways with no proxy to configure and no candidate to
// rewrite. A UDP proxy on the advertised candidate was the other choice; it only fits an ICE-lite server, since a
// full-ICE peer (Asterisk-native WebRTC) answers the browser's candidates directly, around the proxy.

// Impairment is what one direction of a link does to UDP datagrams, in netem's terms: "loss 5% delay 40ms 30ms"
// is {Loss: 0.05, Delay: 40ms, Jitter: 30ms}. The zero value passes everything at once.
type Impairment struct {
	// Loss is the fraction of datagrams dropped, each independently.
	Loss float64
	// Delay is the mean one-way delay added; Jitter spreads each datagram's delay uniformly over Delay ± Jitter
	// (netem's default distribution), so datagrams sent less than 2·Jitter apart may arrive out of order, as
	// netem's reorder-by-time queue lets them.
	Delay, Jitter time.Duration
	// SpikeAt after Impair, the link stalls for Spike: every datagram sent during the stall is held and leaves at
	// its end (plus its own delay), in one burst, as a Wi-Fi or cellular link does when it blocks; the first one
	// held waits Spike longer than usual. Zero Spike: no stall.
	SpikeAt, Spike time.Duration
	// Seed makes the pattern of losses and delays repeatable: the n-th datagram gets the same fate in every run.
	Seed uint64
}

func (im Impairment) String() string {
	s := fmt.Sprintf("loss %.1f%% delay %v ± %v", 100*im.Loss, im.Delay, im.Jitter)
	if im.Spike > 0 {
		s += fmt.Sprintf(", a %v stall at +%v", im.Spike, im.SpikeAt)
	}
	return s
}

// impairer decides each datagram's fate for one direction. Pure logic, driven by the send times it is given.
type impairer struct {
	im    Impairment
	rng   *mrand.Rand
	start time.Time
}

func newImpairer(im Impairment, start time.Time) *impairer {
	return &impairer{im: im, rng: mrand.New(mrand.NewPCG(im.Seed, im.Seed^0x9e3779b97f4a7c15)), start: start}
}

// decide says whether a datagram sent at now is lost and, if not, when it arrives. Both draws are made for every
// datagram, in the same order, so the n-th datagram's fate depends only on the seed.
func (m *impairer) decide(now time.Time) (drop bool, at time.Time) {
	lost := m.rng.Float64() < m.im.Loss
	d := m.im.Delay + time.Duration((2*m.rng.Float64()-1)*float64(m.im.Jitter))
	if lost {
		return true, time.Time{}
	}
	d = max(d, 0)
	at = now.Add(d)
	if m.im.Spike > 0 {
		from := m.start.Add(m.im.SpikeAt)
		to := from.Add(m.im.Spike)
		if !now.Before(from) && now.Before(to) {
			at = to.Add(d)
		}
	}
	return false, at
}

// ImpairedLink is the namespace's link to the host (see NewImpairedNetNS). Up is the namespace → host direction,
// Down host → namespace.
type ImpairedLink struct {
	up, down  *linkDir
	wg        sync.WaitGroup
	stop      chan struct{}
	closeOnce sync.Once
}

// LinkStats counts one direction's UDP datagrams.
type LinkStats struct {
	UDP, Dropped, Delayed uint64
}

func (s LinkStats) String() string {
	loss := 0.0
	if s.UDP > 0 {
		loss = 100 * float64(s.Dropped) / float64(s.UDP)
	}
	return fmt.Sprintf("%d UDP datagrams, %d dropped (%.1f%%), %d delayed", s.UDP, s.Dropped, loss, s.Delayed)
}

// NewImpairedNetNS makes a namespace like NewNetNS, but linked to the host by a pair of TUN devices that this
// process carries (HostIP on the host's, NSIP in the namespace), so that its UDP can be impaired with Impair. It
// starts unimpaired. t.Cleanup stops the link and deletes the namespace. Needs root, /dev/net/tun and iproute2.
func NewImpairedNetNS(t testing.TB) (*NetNS, *ImpairedLink) {
	t.Helper()
	n := newNetNSBase(t)
	t.Cleanup(n.delete)
	n.ip("netns", "add", n.Name)

	host, err := openTUN(n.hostIf)
	if err != nil {
		t.Fatalf("impaired link: %v (is /dev/net/tun there?)", err)
	}
	var ns *os.File
	if err := inNetNS(n.Name, func() error {
		var err error
		ns, err = openTUN(n.nsIf)
		return err
	}); err != nil {
		_ = host.Close()
		t.Fatalf("impaired link: %v", err)
	}
	l := &ImpairedLink{stop: make(chan struct{}),
		up: newLinkDir("up", ns, host), down: newLinkDir("down", host, ns)}
	t.Cleanup(l.Close)
	for _, args := range [][]string{
		{"addr", "add", n.HostIP + "/30", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"-n", n.Name, "addr", "add", n.NSIP + "/30", "dev", n.nsIf},
		{"-n", n.Name, "link", "set", "lo", "up"},
		{"-n", n.Name, "link", "set", n.nsIf, "up"},
		{"-n", n.Name, "route", "add", "default", "via", n.HostIP},
	} {
		n.ip(args...)
	}
	for _, d := range []*linkDir{l.up, l.down} {
		l.wg.Add(2)
		go func() {
			defer l.wg.Done()
			d.read()
		}()
		go func() {
			defer l.wg.Done()
			d.deliver(l.stop)
		}()
	}
	return n, l
}

// Impair starts impairing UDP both ways from now on (a spike's SpikeAt counts from now), as `tc qdisc add … netem`
// would mid-call; zero Impairments pass everything again. Datagrams already held still leave when due.
func (l *ImpairedLink) Impair(up, down Impairment) {
	now := time.Now()
	l.up.set(up, now)
	l.down.set(down, now)
}

// Stats returns the counts of each direction since the link was made.
func (l *ImpairedLink) Stats() (up, down LinkStats) { return l.up.stats(), l.down.stats() }

// Close stops carrying packets and removes both TUN devices. Safe to call more than once.
func (l *ImpairedLink) Close() {
	l.closeOnce.Do(func() {
		close(l.stop)
		_ = l.up.src.Close() // wakes the readers; the devices go with their last descriptor
		_ = l.down.src.Close()
		l.wg.Wait()
	})
}

// linkDir carries one direction: read from src, impair, write to dst.
type linkDir struct {
	name     string
	src, dst *os.File

	mu   sync.Mutex
	imp  *impairer
	q    heldQueue
	n    uint64 // arrival order, to keep equal times in order
	wake chan struct{}

	udp, dropped, delayed atomic.Uint64
}

func newLinkDir(name string, src, dst *os.File) *linkDir {
	return &linkDir{name: name, src: src, dst: dst, wake: make(chan struct{}, 1)}
}

func (d *linkDir) set(im Impairment, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if im == (Impairment{}) {
		d.imp = nil
		return
	}
	d.imp = newImpairer(im, now)
}

func (d *linkDir) stats() LinkStats {
	return LinkStats{UDP: d.udp.Load(), Dropped: d.dropped.Load(), Delayed: d.delayed.Load()}
}

// read takes each packet from src until it is closed.
func (d *linkDir) read() {
	buf := make([]byte, 65536)
	for {
		n, err := d.src.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			var errno unix.Errno
			if errors.As(err, &errno) && (errno == unix.EBADFD || errno == unix.EBADF) {
				return
			}
			time.Sleep(time.Millisecond) // EINTR and friends: try again, without spinning
			continue
		}
		p := buf[:n]
		if n < 20 || p[0]>>4 != 4 {
			continue // IPv4 only: the namespace has no IPv6 address
		}
		if p[9] != unix.IPPROTO_UDP {
			_, _ = d.dst.Write(p)
			continue
		}
		d.udp.Add(1)
		now := time.Now()
		d.mu.Lock()
		if d.imp == nil {
			d.mu.Unlock()
			_, _ = d.dst.Write(p)
			continue
		}
		drop, at := d.imp.decide(now)
		if drop {
			d.mu.Unlock()
			d.dropped.Add(1)
			continue
		}
		d.n++
		heap.Push(&d.q, held{at: at, n: d.n, pkt: append([]byte(nil), p...)})
		d.mu.Unlock()
		d.delayed.Add(1)
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// deliver writes each held datagram to dst when it is due, until stop.
func (d *linkDir) deliver(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		var wait time.Duration = -1
		var due [][]byte
		now := time.Now()
		for d.q.Len() > 0 {
			if dt := d.q[0].at.Sub(now); dt > 0 {
				wait = dt
				break
			}
			due = append(due, heap.Pop(&d.q).(held).pkt)
		}
		d.mu.Unlock()
		for _, p := range due {
			_, _ = d.dst.Write(p)
		}
		if len(due) > 0 {
			continue // more may have come due while writing
		}
		if wait < 0 {
			wait = time.Hour
		}
		timer.Reset(wait)
		select {
		case <-stop:
			return
		case <-d.wake:
		case <-timer.C:
		}
	}
}

// held is a datagram waiting for its time; heldQueue orders them by it (then by arrival).
type held struct {
	at  time.Time
	n   uint64
	pkt []byte
}

type heldQueue []held

func (q heldQueue) Len() int { return len(q) }
func (q heldQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].n < q[j].n
}
func (q heldQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *heldQueue) Push(x any)   { *q = append(*q, x.(held)) }
func (q *heldQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// openTUN creates a TUN device (no packet information header) in the calling thread's namespace, non-blocking so
// that Close wakes a reader.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("TUN name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("create TUN device %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tun:"+name), nil
}

// inNetNS runs fn on an OS thread moved into the named namespace: sockets and devices fn creates belong to it, and
// stay there once the thread moves back. A thread that cannot move back is never reused (it ends with its
// goroutine, still locked).
func inNetNS(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open this thread's network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open namespace %s: %w", name, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", name, err))
			return // the thread stays locked and is dropped
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
