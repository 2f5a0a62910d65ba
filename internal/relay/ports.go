// Package relay moves RTP between Asterisk's externalMedia channels and the browsers' media peers. Every call
// shares one UDP socket toward Asterisk, read by one goroutine in batches (recvmmsg) and written in batches
// (sendmmsg); packets are told apart by the source address of each externalMedia channel
// (UNICASTRTP_LOCAL_ADDRESS:PORT), which is unique while the channel lives.
package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/mmsg"
)

// ErrNoPorts is returned by NewPorts when no port of the range can be bound.
var ErrNoPorts = errors.New("relay: no free RTP port: widen the relay port range or free a port in it")

// ErrAtCapacity is returned by Acquire when as many calls carry media as SetMaxCalls allows.
var ErrAtCapacity = errors.New("relay: at capacity: as many calls carry media as media.max_calls allows")

// ErrClosed is returned once the pool or relay is closed.
var ErrClosed = errors.New("relay: closed")

const (
	batchSize   = 64
	datagramMax = 1500
)

// Ports is the shared socket toward Asterisk and its reader. Acquire hands each call a handle on it.
type Ports struct {
	mc   *mmsg.Conn
	addr netip.AddrPort
	log  *slog.Logger

	// relays maps an externalMedia channel's address to its relay; copy-on-write, loaded per batch.
	relays   atomic.Pointer[map[netip.AddrPort]*Relay]
	mu       sync.Mutex
	inUse    int
	maxCalls int // 0: no limit
	closed   bool

	toAsterisk *udpBatch    // browser→Asterisk packets of lean peers, queued by the media demux
	toBrowser  *media.Batch // Asterisk→browser packets of lean peers; the reader goroutine only

	unknown atomic.Uint64 // datagrams from no known externalMedia channel (stale or stray)
	heard   Liveness
	done    chan struct{}
}

// PortStats is a snapshot of the pool.
type PortStats struct {
	InUse int
	// Unknown counts datagrams that came from no live externalMedia channel and were dropped.
	Unknown uint64
}

// NewPorts binds the shared socket on host (an IP literal) at the first free port of first..last and starts its
// reader; Close stops it. drain is kept for configuration compatibility and unused: a packet of an ended call is
// dropped because its source is no longer registered, so no port needs to rest.
func NewPorts(host string, first, last int, drain time.Duration) (*Ports, error) {
	return NewPortsPaced(host, first, last, drain, mmsg.Options{})
}

// NewPortsPaced is NewPorts with the socket read on a timer while it is busy (mmsg.Options).
func NewPortsPaced(host string, first, last int, drain time.Duration, pace mmsg.Options) (*Ports, error) {
	h, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("relay host %q is not an IP address: %w", host, err)
	}
	if first < 1 || last > 65535 || first > last {
		return nil, fmt.Errorf("relay port range %d-%d is invalid: need 1 <= first <= last <= 65535", first, last)
	}
	if drain < 0 {
		return nil, fmt.Errorf("relay drain %s is negative", drain)
	}
	log := slog.Default().With("component", "relay")
	var conn *net.UDPConn
	for port := first; port <= last && conn == nil; port++ {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.Unmap(), uint16(port))))
		if err != nil {
			log.Warn("relay port busy, trying the next", "port", port, "err", err)
		}
	}
	if conn == nil {
		return nil, fmt.Errorf("%w (%s:%d-%d)", ErrNoPorts, host, first, last)
	}
	// One socket carries every call: room for bursts (best effort; the kernel caps it at rmem_max/wmem_max).
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	port := conn.LocalAddr().(*net.UDPAddr).Port
	mc, err := mmsg.Detach(conn, pace)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("relay: socket toward Asterisk: %w", err)
	}
	p := &Ports{
		mc:         mc,
		addr:       netip.AddrPortFrom(h.Unmap(), uint16(port)),
		log:        log,
		toBrowser:  media.NewBatch(batchSize),
		toAsterisk: newUDPBatch(batchSize),
		done:       make(chan struct{}),
	}
	p.relays.Store(&map[netip.AddrPort]*Relay{})
	go p.run()
	return p, nil
}

// Addr is the shared socket's address.
func (p *Ports) Addr() netip.AddrPort { return p.addr }

// Acquire hands out a handle on the shared socket for one call.
func (p *Ports) Acquire() (*Socket, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if p.maxCalls > 0 && p.inUse >= p.maxCalls {
		return nil, ErrAtCapacity
	}
	p.inUse++
	return &Socket{pool: p}, nil
}

// SetMaxCalls bounds the calls carrying media at once (media.max_calls): past it Acquire refuses, so a server at
// capacity refuses new calls cleanly instead of degrading every call. 0: no limit.
func (p *Ports) SetMaxCalls(n int) {
	p.mu.Lock()
	p.maxCalls = n
	p.mu.Unlock()
}

// Stats returns the pool's counts.
func (p *Ports) Stats() PortStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PortStats{InUse: p.inUse, Unknown: p.unknown.Load()}
}

// Close stops the reader and closes the socket; close the relays first. Safe to call more than once.
func (p *Ports) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.mc.Close()
	<-p.done
	return err
}

func (p *Ports) setRelay(a netip.AddrPort, r *Relay) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[netip.AddrPort]*Relay, len(*p.relays.Load())+1)
	for k, v := range *p.relays.Load() {
		if v != r {
			m[k] = v
		}
	}
	if a.IsValid() {
		m[a] = r
	}
	p.relays.Store(&m)
}

// run reads the socket in batches and forwards each packet from a known externalMedia channel to its browser.
func (p *Ports) run() {
	defer close(p.done)
	msgs := make([]mmsg.Message, batchSize)
	bufs := make([]byte, batchSize*datagramMax)
	for i := range msgs {
		msgs[i].Buf = bufs[i*datagramMax : (i+1)*datagramMax]
	}
	scratch := mmsg.NewScratch(batchSize)
	for {
		n, err := p.mc.ReadBatch(msgs, scratch)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable reported on the socket
		}
		p.forward(msgs[:n], time.Now())
	}
}

// forward handles one batch read from Asterisk.
func (p *Ports) forward(msgs []mmsg.Message, now time.Time) {
	relays := *p.relays.Load()
	known := false
	for i := range msgs {
		m := &msgs[i]
		r := relays[m.Addr]
		if r == nil {
			p.unknown.Add(1)
			continue
		}
		known = true
		r.fromAsterisk(m.Buf[:m.N], now, p.toBrowser)
	}
	if known {
		p.heard.Mark(now)
	}
	if p.toBrowser.Len() > 0 {
		_ = p.toBrowser.Flush()
	}
}

// Heard is when media last came from Asterisk on this pool's socket, and on every media WebSocket given it
// (WSOptions.Heard).
func (p *Ports) Heard() *Liveness { return &p.heard }

// Socket is one call's handle on the shared socket.
type Socket struct {
	pool     *Ports
	released atomic.Bool
}

// Addr is the shared socket's address, where Asterisk sends this call's RTP.
func (s *Socket) Addr() netip.AddrPort { return s.pool.addr }

// ExternalHost is the HOST:PORT string for externalMedia's external_host.
func (s *Socket) ExternalHost() string {
	return net.JoinHostPort(s.pool.addr.Addr().String(), strconv.Itoa(int(s.pool.addr.Port())))
}

// Release hands the handle back; close the relay using it first. Safe to call more than once.
func (s *Socket) Release() {
	if !s.released.CompareAndSwap(false, true) {
		return
	}
	s.pool.mu.Lock()
	s.pool.inUse--
	s.pool.mu.Unlock()
}

// udpBatch queues datagrams toward Asterisk for one sendmmsg. Lean peers' packets arrive on the media demux
// goroutine (one per media API) and on the readers of ICE-TCP connections, so it is locked.
type udpBatch struct {
	mu      sync.Mutex
	msgs    []mmsg.Message
	bufs    []byte
	scratch *mmsg.Scratch
	n       int
}

func newUDPBatch(n int) *udpBatch {
	return &udpBatch{msgs: make([]mmsg.Message, n), bufs: make([]byte, n*datagramMax), scratch: mmsg.NewScratch(n)}
}

// add queues a copy of pkt toward to, sending first if the batch is full.
func (b *udpBatch) add(mc *mmsg.Conn, pkt []byte, to netip.AddrPort) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	if b.n == len(b.msgs) {
		err = b.flushLocked(mc)
	}
	i := b.n
	buf := b.bufs[i*datagramMax : (i+1)*datagramMax]
	b.msgs[i] = mmsg.Message{Buf: buf[:copy(buf, pkt)], Addr: to}
	b.n++
	return err
}

func (b *udpBatch) flush(mc *mmsg.Conn) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked(mc)
}

// flushLocked sends what is queued; a datagram the kernel refuses is lost alone (mmsg.Conn.WriteAll).
func (b *udpBatch) flushLocked(mc *mmsg.Conn) error {
	_, err := mc.WriteAll(b.msgs[:b.n], b.scratch)
	b.n = 0
	return err
}
