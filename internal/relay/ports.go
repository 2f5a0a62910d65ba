// Package relay moves RTP between a call's externalMedia UDP socket and its
// pion tracks, and hands out those sockets from a fixed port range.
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
)

// ErrNoPorts is returned by Acquire when every port in the range is in use
// or still draining.
var ErrNoPorts = errors.New("relay: no free RTP port: widen the relay port range or lower the call limit")

// ErrClosed is returned once the pool or relay is closed.
var ErrClosed = errors.New("relay: closed")

// Ports hands out per-call UDP sockets bound to one host inside [first,last].
// A released socket keeps reading and discarding for the drain period before
// its port goes back to the end of the free list, so stale packets of one
// call never reach the next.
type Ports struct {
	host  netip.Addr
	drain time.Duration
	log   *slog.Logger

	mu       sync.Mutex
	free     []int // FIFO: least recently released first
	draining map[*net.UDPConn]struct{}
	inUse    int
	closed   bool
	wg       sync.WaitGroup
}

// PortStats is a snapshot of the pool.
type PortStats struct {
	Free, InUse, Draining int
}

// NewPorts creates a pool for host (an IP literal, e.g. 127.0.0.1) and the
// inclusive range first..last. drain is how long a released socket keeps
// swallowing packets.
func NewPorts(host string, first, last int, drain time.Duration) (*Ports, error) {
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
	p := &Ports{
		host:     h.Unmap(),
		drain:    drain,
		log:      slog.Default().With("component", "relay-ports"),
		free:     make([]int, 0, last-first+1),
		draining: map[*net.UDPConn]struct{}{},
	}
	for port := first; port <= last; port++ {
		p.free = append(p.free, port)
	}
	return p, nil
}

// Acquire binds the next free port. Ports taken by other processes are
// skipped and retried later.
func (p *Ports) Acquire() (*Socket, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	for range len(p.free) {
		port := p.free[0]
		p.free = p.free[1:]
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.host, uint16(port))))
		if err != nil {
			p.log.Warn("relay port busy, skipping", "port", port, "err", err)
			p.free = append(p.free, port)
			continue
		}
		p.inUse++
		return &Socket{conn: conn, addr: netip.AddrPortFrom(p.host, uint16(port)), pool: p}, nil
	}
	return nil, ErrNoPorts
}

// Stats returns the pool's counts.
func (p *Ports) Stats() PortStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PortStats{Free: len(p.free), InUse: p.inUse, Draining: len(p.draining)}
}

// Close stops all draining at once and refuses further Acquires. Sockets
// still in use stay open until released. Safe to call more than once.
func (p *Ports) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.draining {
		// Unblocks the drainer's read at once.
		_ = c.SetReadDeadline(time.Unix(1, 0))
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

func (p *Ports) release(s *Socket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse--
	if p.closed || p.drain == 0 {
		_ = s.conn.Close()
		if !p.closed {
			p.free = append(p.free, int(s.addr.Port()))
		}
		return
	}
	// Set under the lock so a concurrent Close's past deadline wins.
	_ = s.conn.SetReadDeadline(time.Now().Add(p.drain))
	p.draining[s.conn] = struct{}{}
	p.wg.Add(1)
	go p.drainSocket(s)
}

// drainSocket reads and discards until the drain deadline (or pool Close),
// then returns the port.
func (p *Ports) drainSocket(s *Socket) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	n := 0
	for {
		if _, _, err := s.conn.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
		n++
	}
	_ = s.conn.Close()
	p.mu.Lock()
	delete(p.draining, s.conn)
	if !p.closed {
		p.free = append(p.free, int(s.addr.Port()))
	}
	p.mu.Unlock()
	if n > 0 {
		p.log.Debug("drained stale packets", "port", s.addr.Port(), "packets", n)
	}
}

// Socket is one call's externalMedia socket.
type Socket struct {
	conn     *net.UDPConn
	addr     netip.AddrPort
	pool     *Ports
	released atomic.Bool
}

// Conn is the bound socket; the relay reads and writes it.
func (s *Socket) Conn() *net.UDPConn { return s.conn }

// Addr is the bound address.
func (s *Socket) Addr() netip.AddrPort { return s.addr }

// ExternalHost is the HOST:PORT string for externalMedia's external_host.
func (s *Socket) ExternalHost() string {
	return net.JoinHostPort(s.addr.Addr().String(), strconv.Itoa(int(s.addr.Port())))
}

// Release hands the socket back: it drains, then its port is reused. Close
// the relay using it first. Safe to call more than once.
func (s *Socket) Release() {
	if !s.released.CompareAndSwap(false, true) {
		return
	}
	s.pool.release(s)
}
