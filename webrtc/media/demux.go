package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patchbay/patchbay/webrtc/mmsg"
)

// The muxed ICE socket is read by one goroutine, in batches (recvmmsg). It hands STUN and DTLS, and everything of
// peers on the full pion path, to pion's UDP mux through pionConn; the SRTP and SRTCP of lean peers it handles
// itself, in place, with no goroutine hand-off: decrypt, count, and pass to the peer's RTPHandler, which queues the
// packet for a batched write toward Asterisk and is flushed once per batch read.

const (
	readBatch   = 64   // datagrams per recvmmsg
	datagramMax = 1500 // bytes per datagram buffer: the path MTU of a UDP/IPv4 network
	pionQueue   = 512  // datagrams queued for pion's mux before new ones are dropped
)

// RTPHandler receives a lean peer's RTP from the browser: on the UDP socket's reader goroutine, or for a browser
// on ICE-TCP on the reader of its connection (tcp.go). Calls for one peer never overlap, but two peers' handlers
// may be called at once from different readers.
type RTPHandler interface {
	// HandleRTP is given one decrypted RTP packet (header and payload); pkt is only valid during the call, which
	// must not block.
	HandleRTP(pkt []byte)
	// FlushRTP is called once after each batch read in which HandleRTP was called (after each packet on ICE-TCP):
	// write what was queued.
	FlushRTP()
}

// demux owns the muxed ICE socket's reader.
type demux struct {
	mc   *mmsg.Conn
	log  *slog.Logger
	pion *pionConn

	// byUfrag and byAddr are copy-on-write maps: the reader loads them without a lock for every datagram.
	mu      sync.Mutex
	byUfrag atomic.Pointer[map[string]*Peer]
	byAddr  atomic.Pointer[map[netip.AddrPort]*Peer]

	dirty []RTPHandler // handlers to flush at the end of the batch; reader goroutine only

	unknown atomic.Uint64 // SRTP from an address no lean peer has checked from, given to pion
	done    chan struct{}
}

// newDemux takes conn over (mmsg.Detach): close the demux's mc, not conn.
func newDemux(conn *net.UDPConn, log *slog.Logger, pace mmsg.Options) (*demux, error) {
	mc, err := mmsg.Detach(conn, pace)
	if err != nil {
		return nil, fmt.Errorf("media: ICE socket: %w", err)
	}
	d := &demux{mc: mc, log: log, done: make(chan struct{})}
	d.pion = &pionConn{real: mc, q: make(chan *datagram, pionQueue), closed: make(chan struct{}), log: log}
	d.byUfrag.Store(&map[string]*Peer{})
	d.byAddr.Store(&map[netip.AddrPort]*Peer{})
	return d, nil
}

// register makes a peer's current ICE username fragment known, so that the addresses it checks from are learnt.
// An ICE restart gives the peer a new one: it replaces the old (whose checks pion now refuses), while the
// addresses already learnt stay the peer's, so media from them keeps its route until the browser moves.
func (d *demux) register(ufrag string, p *Peer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p.gone {
		return
	}
	m := cloneMap(*d.byUfrag.Load())
	for k, v := range m {
		if v == p && k != ufrag {
			delete(m, k)
		}
	}
	m[ufrag] = p
	d.byUfrag.Store(&m)
}

// unregister forgets a peer, its ufrag and every address learnt for it, for good.
func (d *demux) unregister(p *Peer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p.gone = true
	u := cloneMap(*d.byUfrag.Load())
	for k, v := range u {
		if v == p {
			delete(u, k)
		}
	}
	d.byUfrag.Store(&u)
	a := cloneMap(*d.byAddr.Load())
	for k, v := range a {
		if v == p {
			delete(a, k)
		}
	}
	d.byAddr.Store(&a)
}

// peer returns the peer whose current ufrag this is, or nil.
func (d *demux) peer(ufrag string) *Peer { return (*d.byUfrag.Load())[ufrag] }

func (d *demux) learn(addr netip.AddrPort, p *Peer) {
	if (*d.byAddr.Load())[addr] == p {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if p.gone {
		return // unregistered meanwhile
	}
	a := cloneMap(*d.byAddr.Load())
	a[addr] = p
	d.byAddr.Store(&a)
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// run reads the socket until it is closed.
func (d *demux) run() {
	defer close(d.done)
	msgs := make([]mmsg.Message, readBatch)
	bufs := make([]byte, readBatch*datagramMax)
	for i := range msgs {
		msgs[i].Buf = bufs[i*datagramMax : (i+1)*datagramMax]
	}
	scratch := mmsg.NewScratch(readBatch)
	for {
		n, err := d.mc.ReadBatch(msgs, scratch)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				d.pion.shut()
				return
			}
			d.log.Debug("read ICE socket", "err", err)
			continue
		}
		now := time.Now()
		for i := range n {
			m := &msgs[i]
			if m.N == 0 || !m.Addr.IsValid() {
				continue
			}
			d.handle(m.Buf[:m.N], m.Addr, now)
		}
		for i, h := range d.dirty {
			h.FlushRTP()
			d.dirty[i] = nil
		}
		d.dirty = d.dirty[:0]
	}
}

func (d *demux) handle(b []byte, from netip.AddrPort, now time.Time) {
	p := (*d.byAddr.Load())[from]
	if p != nil {
		p.seen.Store(now.UnixNano())
	}
	switch {
	case b[0] < 4: // STUN (RFC 7983)
		// A check names the peer by our ufrag: the address is that peer's from now on (it may have been another
		// call's, or the peer's before an ICE restart under its old ufrag).
		if ufrag, ok := stunLocalUfrag(b); ok {
			if q := (*d.byUfrag.Load())[string(ufrag)]; q != nil && q != p { // string(ufrag): no allocation
				d.learn(from, q)
				q.seen.Store(now.UnixNano())
			}
		}
	case b[0] >= 128 && b[0] < 192: // SRTP or SRTCP
		if p != nil && p.tap.ready() {
			if h := p.tap.inbound(b, from, now); h != nil {
				d.markDirty(h)
			}
			return
		}
		if p == nil {
			d.unknown.Add(1)
		}
	}
	d.pion.push(b, from)
}

func (d *demux) markDirty(h RTPHandler) {
	for _, x := range d.dirty {
		if x == h {
			return
		}
	}
	d.dirty = append(d.dirty, h)
}

// stunLocalUfrag returns our half of a Binding request's USERNAME ("ours:theirs") without decoding the message:
// the attribute is only used to route, pion's ICE agent checks the message. The result points into b.
func stunLocalUfrag(b []byte) ([]byte, bool) {
	if len(b) < 20 || binary.BigEndian.Uint16(b) != 0x0001 || binary.BigEndian.Uint32(b[4:]) != 0x2112A442 {
		return nil, false
	}
	end := min(20+int(binary.BigEndian.Uint16(b[2:])), len(b))
	for off := 20; off+4 <= end; {
		typ, l := binary.BigEndian.Uint16(b[off:]), int(binary.BigEndian.Uint16(b[off+2:]))
		v := off + 4
		if v+l > end {
			return nil, false
		}
		if typ == 0x0006 { // USERNAME
			u := b[v : v+l]
			for i, c := range u {
				if c == ':' {
					return u[:i], true
				}
			}
			return nil, false
		}
		off = v + (l+3)&^3
	}
	return nil, false
}

// datagram is one packet queued for pion.
type datagram struct {
	buf  [datagramMax]byte
	n    int
	from netip.AddrPort
}

var datagramPool = sync.Pool{New: func() any { return new(datagram) }}

// pionConn is the net.PacketConn below pion's UDP mux: it reads what the demux hands it and writes straight to
// the real socket.
type pionConn struct {
	real    *mmsg.Conn
	q       chan *datagram
	closed  chan struct{}
	once    sync.Once
	dropped atomic.Uint64
	log     *slog.Logger
}

func (c *pionConn) push(b []byte, from netip.AddrPort) {
	dg := datagramPool.Get().(*datagram)
	dg.n = copy(dg.buf[:], b)
	dg.from = from
	select {
	case c.q <- dg:
	default:
		datagramPool.Put(dg)
		if c.dropped.Add(1)%1000 == 1 {
			c.log.Warn("ICE mux queue full: datagrams for pion dropped", "dropped", c.dropped.Load())
		}
	}
}

func (c *pionConn) shut() { c.once.Do(func() { close(c.closed) }) }

func (c *pionConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case dg := <-c.q:
		n, from := copy(b, dg.buf[:dg.n]), dg.from
		datagramPool.Put(dg)
		return n, from, nil
	case <-c.closed:
		return 0, netip.AddrPort{}, io.EOF
	}
}

func (c *pionConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

func (c *pionConn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	return c.real.WriteToAddrPort(b, to)
}

func (c *pionConn) WriteTo(b []byte, to net.Addr) (int, error) {
	ua, ok := to.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("media: ICE socket: cannot send to %v (%T), not a UDP address", to, to)
	}
	return c.real.WriteToAddrPort(b, ua.AddrPort())
}

// Close only stops reads: the real socket belongs to the API.
func (c *pionConn) Close() error        { c.shut(); return nil }
func (c *pionConn) LocalAddr() net.Addr { return c.real.LocalAddr() }

// Deadlines are not kept: reads wait on the demux's queue, and a write never waits (a full send buffer refuses
// the datagram).
func (c *pionConn) SetDeadline(time.Time) error      { return nil }
func (c *pionConn) SetReadDeadline(time.Time) error  { return nil }
func (c *pionConn) SetWriteDeadline(time.Time) error { return nil }
