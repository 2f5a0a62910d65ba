package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// TrackWriter is the browser-bound track (*webrtc.TrackLocalStaticRTP). It
// stamps its own SSRC and payload type on every packet.
type TrackWriter interface {
	WriteRTP(p *rtp.Packet) error
}

// TrackReader is the browser's track (*webrtc.TrackRemote).
type TrackReader interface {
	Read(b []byte) (int, interceptor.Attributes, error)
	SetReadDeadline(t time.Time) error
}

// Options configure one relay.
type Options struct {
	// Asterisk is UNICASTRTP_LOCAL_ADDRESS:PORT of the externalMedia channel.
	// It may instead be set later with SetAsterisk; until then nothing is
	// sent to Asterisk and nothing from it is accepted.
	Asterisk netip.AddrPort
	// PayloadType sent to Asterisk: 0 (ulaw) or 8 (alaw), matching the
	// externalMedia format. Packets from Asterisk with another type are dropped.
	PayloadType uint8
	// Logger carries the call's fields; nil uses slog.Default().
	Logger *slog.Logger
}

// DirStats counts one direction.
type DirStats struct {
	Packets, Bytes, Drops uint64
	// Last is when the last packet was forwarded; zero if none yet.
	Last time.Time
}

// Stats is a snapshot of both directions.
type Stats struct {
	ToAsterisk, ToBrowser DirStats
}

type dirCounters struct {
	packets, bytes, drops atomic.Uint64
	last                  atomic.Int64 // unix nanoseconds
}

func (d *dirCounters) snapshot() DirStats {
	s := DirStats{Packets: d.packets.Load(), Bytes: d.bytes.Load(), Drops: d.drops.Load()}
	if ns := d.last.Load(); ns != 0 {
		s.Last = time.Unix(0, ns)
	}
	return s
}

func (d *dirCounters) forwarded(n int, now time.Time) {
	d.packets.Add(1)
	d.bytes.Add(uint64(n))
	d.last.Store(now.UnixNano())
}

// Relay moves one call's audio between the externalMedia socket and the
// browser's tracks. It owns its goroutines: Run starts the Asterisk→browser
// direction, Attach the browser→Asterisk one, Close (or Run's context) stops
// both and waits for them. The socket itself belongs to the caller.
type Relay struct {
	conn  *net.UDPConn
	local TrackWriter
	pt    uint8
	log   *slog.Logger

	asterisk atomic.Pointer[netip.AddrPort]

	// out* is the browser-bound sequence state, shared with Inject.
	outMu  sync.Mutex
	out    rtp.Packet
	seq    seqMap
	toBrw  dirCounters
	toAst  dirCounters
	closed chan struct{}
	// firstIn is closed when the first packet from the browser has been forwarded (see FromBrowser).
	firstIn     chan struct{}
	firstInOnce sync.Once

	mu        sync.Mutex
	running   bool
	attached  bool
	wg        sync.WaitGroup
	closeOnce sync.Once
	remote    TrackReader
}

// New creates a relay on conn (the call's Socket.Conn()) writing to local.
func New(conn *net.UDPConn, local TrackWriter, o Options) (*Relay, error) {
	if conn == nil || local == nil {
		return nil, errors.New("relay needs a socket and a local track")
	}
	if o.PayloadType != 0 && o.PayloadType != 8 {
		return nil, fmt.Errorf("relay payload type %d: only 0 (ulaw) and 8 (alaw) reach Asterisk over RTP", o.PayloadType)
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Relay{
		conn:    conn,
		local:   local,
		pt:      o.PayloadType,
		log:     log.With("relay", conn.LocalAddr().String()),
		closed:  make(chan struct{}),
		firstIn: make(chan struct{}),
	}
	r.out.Version = 2
	if o.Asterisk.IsValid() {
		r.SetAsterisk(o.Asterisk)
	}
	return r, nil
}

// SetAsterisk sets where Asterisk sends from and receives on
// (UNICASTRTP_LOCAL_ADDRESS:PORT).
func (r *Relay) SetAsterisk(a netip.AddrPort) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	r.asterisk.Store(&a)
}

// Run relays Asterisk→browser until ctx ends or Close is called, then
// stops every relay goroutine before returning. It may be called once.
func (r *Relay) Run(ctx context.Context) error {
	r.mu.Lock()
	select {
	case <-r.closed:
		r.mu.Unlock()
		return ErrClosed
	default:
	}
	if r.running {
		r.mu.Unlock()
		return errors.New("relay already running")
	}
	r.running = true
	r.wg.Add(1)
	r.mu.Unlock()

	go r.fromAsterisk()
	select {
	case <-ctx.Done():
	case <-r.closed:
	}
	r.Close()
	return nil
}

// Attach starts the browser→Asterisk direction once the browser's track
// has arrived. Only the first track is used.
func (r *Relay) Attach(t TrackReader) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.closed:
		return ErrClosed
	default:
	}
	if r.attached {
		return errors.New("relay already has a browser track")
	}
	r.attached = true
	r.remote = t
	r.wg.Add(1)
	go r.fromBrowser(t)
	return nil
}

// Close stops both directions and waits for them. Safe to call more than
// once and from any goroutine; it does not close the socket or the tracks.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		close(r.closed)
		// A deadline in the past unblocks pending reads without closing anything.
		_ = r.conn.SetReadDeadline(time.Unix(1, 0))
		if r.remote != nil {
			_ = r.remote.SetReadDeadline(time.Unix(1, 0))
		}
		r.mu.Unlock()
	})
	r.wg.Wait()
	return nil
}

// FromBrowser is closed once the first packet from the browser has reached Asterisk: media flows, so the far end
// may be dialled or answered.
func (r *Relay) FromBrowser() <-chan struct{} { return r.firstIn }

// Stats returns the counters of both directions.
func (r *Relay) Stats() Stats {
	return Stats{ToAsterisk: r.toAst.snapshot(), ToBrowser: r.toBrw.snapshot()}
}

// Inject sends one G.711 payload to the browser, continuing the sequence
// and timestamps of what the relay forwards.
func (r *Relay) Inject(payload []byte) error {
	if len(payload) == 0 {
		return errors.New("inject: empty payload")
	}
	now := time.Now()
	r.outMu.Lock()
	defer r.outMu.Unlock()
	r.out.SequenceNumber, r.out.Timestamp, r.out.Marker = r.seq.inject(len(payload), now)
	r.out.Payload = payload
	err := r.local.WriteRTP(&r.out)
	r.out.Payload = nil
	if err != nil {
		r.toBrw.drops.Add(1)
		return fmt.Errorf("inject toward browser: %w", err)
	}
	r.toBrw.forwarded(len(payload), now)
	return nil
}

func (r *Relay) isClosed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

func (r *Relay) fromAsterisk() {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if r.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			r.toBrw.drops.Add(1)
			continue
		}
		ast := r.asterisk.Load()
		if ast == nil || from.Port() != ast.Port() || from.Addr().Unmap() != ast.Addr() {
			r.toBrw.drops.Add(1)
			continue
		}
		h, ok := parseRTP(buf[:n])
		if !ok || h.pt != r.pt {
			r.toBrw.drops.Add(1)
			continue
		}
		now := time.Now()
		r.outMu.Lock()
		r.out.SequenceNumber, r.out.Timestamp, r.out.Marker = r.seq.forward(h, now)
		r.out.Payload = buf[h.start:h.end]
		err = r.local.WriteRTP(&r.out)
		r.out.Payload = nil
		r.outMu.Unlock()
		if err != nil {
			r.toBrw.drops.Add(1)
			continue
		}
		r.toBrw.forwarded(h.end-h.start, now)
	}
}

func (r *Relay) fromBrowser(t TrackReader) {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			if r.isClosed() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// io.EOF or closed: the peer connection is gone.
			r.log.Debug("browser track ended", "err", err)
			return
		}
		ast := r.asterisk.Load()
		h, ok := parseRTP(buf[:n])
		if ast == nil || !ok {
			r.toAst.drops.Add(1)
			continue
		}
		pkt := compact(buf[:n], h, r.pt)
		if _, err := r.conn.WriteToUDPAddrPort(pkt, *ast); err != nil {
			r.toAst.drops.Add(1)
			continue
		}
		r.toAst.forwarded(h.end-h.start, time.Now())
		if r.toAst.packets.Load() == 1 {
			r.firstInOnce.Do(func() { close(r.firstIn) })
		}
	}
}
