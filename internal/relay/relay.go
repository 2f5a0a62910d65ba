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
	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/webrtc/media"
)

// TrackWriter is the browser-bound track on pion's path (*webrtc.TrackLocalStaticRTP). It stamps its own SSRC
// and payload type on every packet.
type TrackWriter interface {
	WriteRTP(p *rtp.Packet) error
}

// TrackReader is the browser's track on pion's path (*webrtc.TrackRemote).
type TrackReader interface {
	Read(b []byte) (int, interceptor.Attributes, error)
	SetReadDeadline(t time.Time) error
}

// browser is what a relay needs of the browser's peer (*media.Peer, through pionPeer).
type browser interface {
	LockMode() media.Mode
	SetRTPHandler(media.RTPHandler)
	AppendRTP(b *media.Batch, seq uint16, ts uint32, marker bool, payload []byte, now time.Time) error
	RTCPStats() media.RTCPStats
	localTrack() TrackWriter
	remoteTrack(ctx context.Context) (TrackReader, error)
}

type pionPeer struct{ *media.Peer }

func (p pionPeer) localTrack() TrackWriter {
	if t := p.LocalTrack(); t != nil {
		return t
	}
	return nil
}

func (p pionPeer) remoteTrack(ctx context.Context) (TrackReader, error) {
	t, err := p.RemoteTrack(ctx)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Options configure one relay.
type Options struct {
	// Asterisk is UNICASTRTP_LOCAL_ADDRESS:PORT of the externalMedia channel. It may instead be set later with
	// SetAsterisk; until then nothing is sent to Asterisk and nothing from it is accepted.
	Asterisk netip.AddrPort
	// PayloadType sent to Asterisk: 0 (ulaw) or 8 (alaw), matching the externalMedia format. Packets from
	// Asterisk with another type are dropped.
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

// Stats is a snapshot of both directions. The counters are live: read them as often as a media watchdog needs.
type Stats struct {
	ToAsterisk, ToBrowser DirStats
	// Lean is true when the call's audio takes the lean path; RTCP is only filled in then: loss and jitter of
	// the browser's stream, what the browser reports of ours, and the round trip from its receiver reports.
	Lean bool
	RTCP media.RTCPStats
	// Trimmed (Opus over a media WebSocket only) counts the browser's frames dropped to keep Asterisk's queue
	// for the channel short; AsteriskQueue is that queue's length as Asterisk last reported it.
	Trimmed       uint64
	AsteriskQueue int
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

// Relay moves one call's audio between Asterisk (through the shared socket) and the browser's peer. On the lean
// path it has no goroutine of its own: the media demux and the Ports reader call it. On pion's path Start starts
// one goroutine reading the browser's track; Close stops it.
type Relay struct {
	pool *Ports
	peer browser
	pt   uint8
	log  *slog.Logger
	lean atomic.Bool // set once by Start; read by the Ports reader

	asterisk atomic.Pointer[netip.AddrPort]

	// Browser-bound sequence state, shared by the Ports reader and Inject.
	outMu  sync.Mutex
	out    rtp.Packet
	seq    seqMap
	local  TrackWriter  // pion's path
	inject *media.Batch // lean path, for Inject; made on first use

	toBrw dirCounters
	toAst dirCounters
	first chan struct{} // closed at the first packet from the browser
	got   atomic.Bool

	closed    chan struct{}
	ctx       context.Context // cancelled by Close: ends the wait for pion's remote track
	cancel    context.CancelFunc
	mu        sync.Mutex
	started   bool
	remote    TrackReader
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New creates a relay for peer on the call's socket handle. Start it once SetAsterisk has been called or the
// externalMedia channel exists.
func New(sock *Socket, peer *media.Peer, o Options) (*Relay, error) {
	if peer == nil {
		return nil, errors.New("relay needs the browser's peer")
	}
	return newRelay(sock, pionPeer{peer}, o)
}

func newRelay(sock *Socket, peer browser, o Options) (*Relay, error) {
	if sock == nil || peer == nil {
		return nil, errors.New("relay needs a socket and a peer")
	}
	if o.PayloadType != 0 && o.PayloadType != 8 {
		return nil, fmt.Errorf("relay payload type %d: only 0 (ulaw) and 8 (alaw) reach Asterisk over RTP", o.PayloadType)
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Relay{
		pool:   sock.pool,
		peer:   peer,
		pt:     o.PayloadType,
		log:    log,
		first:  make(chan struct{}),
		closed: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.out.Version = 2
	if o.Asterisk.IsValid() {
		r.SetAsterisk(o.Asterisk)
	}
	return r, nil
}

// SetAsterisk sets where Asterisk sends from and receives on (UNICASTRTP_LOCAL_ADDRESS:PORT).
func (r *Relay) SetAsterisk(a netip.AddrPort) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	r.asterisk.Store(&a)
	select {
	case <-r.closed:
	default:
		r.pool.setRelay(a, r)
	}
}

// Start moves audio both ways until Close. It may be called once, after Answer or SetAnswer decided the peer's
// path.
func (r *Relay) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.closed:
		return ErrClosed
	default:
	}
	if r.started {
		return errors.New("relay already started")
	}
	r.started = true
	if r.peer.LockMode() == media.ModeLean {
		r.lean.Store(true)
		r.peer.SetRTPHandler(r)
		r.log.Debug("relay started", "path", "lean")
		return nil
	}
	r.outMu.Lock()
	r.local = r.peer.localTrack()
	r.outMu.Unlock()
	if r.local == nil {
		return errors.New("relay: the peer has no local track")
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t, err := r.peer.remoteTrack(r.ctx)
		if err != nil {
			return
		}
		r.mu.Lock()
		select {
		case <-r.closed:
			r.mu.Unlock()
			return
		default:
		}
		r.remote = t
		r.mu.Unlock()
		r.fromBrowserTrack(t)
	}()
	r.log.Debug("relay started", "path", "pion")
	return nil
}

// FirstPacket is closed when the first packet from the browser has been forwarded toward Asterisk.
func (r *Relay) FirstPacket() <-chan struct{} { return r.first }

// Close stops both directions and waits for them. Safe to call more than once and from any goroutine; it does
// not close the peer or release the socket handle.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		close(r.closed)
		r.cancel()
		if r.remote != nil {
			_ = r.remote.SetReadDeadline(time.Unix(1, 0)) // wakes the track reader without closing anything
		}
		r.mu.Unlock()
		r.pool.setRelay(netip.AddrPort{}, r)
		if r.lean.Load() {
			r.peer.SetRTPHandler(nil)
		}
	})
	r.wg.Wait()
	return nil
}

// Stats returns the counters of both directions.
func (r *Relay) Stats() Stats {
	s := Stats{ToAsterisk: r.toAst.snapshot(), ToBrowser: r.toBrw.snapshot(), Lean: r.lean.Load()}
	if s.Lean {
		s.RTCP = r.peer.RTCPStats()
	}
	return s
}

// Inject sends one G.711 payload to the browser, continuing the sequence and timestamps of what the relay
// forwards.
func (r *Relay) Inject(payload []byte) error {
	if len(payload) == 0 {
		return errors.New("inject: empty payload")
	}
	now := time.Now()
	r.outMu.Lock()
	defer r.outMu.Unlock()
	seq, ts, marker := r.seq.inject(len(payload), now)
	if err := r.toBrowser(seq, ts, marker, payload, now, nil); err != nil {
		r.toBrw.drops.Add(1)
		return fmt.Errorf("inject toward browser: %w", err)
	}
	r.toBrw.forwarded(len(payload), now)
	return nil
}

// toBrowser sends one frame to the browser; outMu is held. b is the batch to queue it in on the lean path (nil:
// the relay's own, flushed at once).
func (r *Relay) toBrowser(seq uint16, ts uint32, marker bool, payload []byte, now time.Time, b *media.Batch) error {
	if r.lean.Load() {
		flush := b == nil
		if flush {
			if r.inject == nil {
				r.inject = media.NewBatch(1)
			}
			b = r.inject
		}
		if err := r.peer.AppendRTP(b, seq, ts, marker, payload, now); err != nil {
			return err
		}
		if flush {
			return b.Flush()
		}
		return nil
	}
	if r.local == nil {
		return errors.New("relay not started")
	}
	r.out.SequenceNumber, r.out.Timestamp, r.out.Marker = seq, ts, marker
	r.out.Payload = payload
	err := r.local.WriteRTP(&r.out)
	r.out.Payload = nil
	return err
}

func (r *Relay) isClosed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

// fromAsterisk forwards one packet from the externalMedia channel, on the Ports reader goroutine.
func (r *Relay) fromAsterisk(pkt []byte, now time.Time, b *media.Batch) {
	h, ok := parseRTP(pkt)
	if !ok || h.pt != r.pt {
		r.toBrw.drops.Add(1)
		return
	}
	r.outMu.Lock()
	if !r.lean.Load() && r.local == nil {
		r.outMu.Unlock()
		r.toBrw.drops.Add(1) // not started yet
		return
	}
	seq, ts, marker := r.seq.forward(h, now)
	err := r.toBrowser(seq, ts, marker, pkt[h.start:h.end], now, b)
	r.outMu.Unlock()
	if err != nil {
		r.toBrw.drops.Add(1)
		return
	}
	r.toBrw.forwarded(h.end-h.start, now)
}

// HandleRTP forwards one decrypted packet from the browser on the lean path (media.RTPHandler), on the media
// demux goroutine or, for a browser on ICE-TCP, its connection's reader: its header extensions are stripped and it
// is queued toward Asterisk (the queue is locked: both readers may add to it).
func (r *Relay) HandleRTP(pkt []byte) {
	ast := r.asterisk.Load()
	h, ok := parseRTP(pkt)
	if ast == nil || !ok {
		r.toAst.drops.Add(1)
		return
	}
	out := compact(pkt, h, r.pt)
	if err := r.pool.toAsterisk.add(r.pool.mc, out, *ast); err != nil {
		r.toAst.drops.Add(1) // an earlier batch failed to send; this packet is queued
	}
	r.forwardedToAsterisk(h.end-h.start, time.Now())
}

// FlushRTP sends what HandleRTP queued (media.RTPHandler).
func (r *Relay) FlushRTP() {
	if err := r.pool.toAsterisk.flush(r.pool.mc); err != nil {
		r.log.Debug("send toward Asterisk", "err", err)
	}
}

func (r *Relay) forwardedToAsterisk(n int, now time.Time) {
	r.toAst.forwarded(n, now)
	if !r.got.Load() && r.got.CompareAndSwap(false, true) {
		close(r.first)
	}
}

// fromBrowserTrack forwards the browser's track toward Asterisk on pion's path.
func (r *Relay) fromBrowserTrack(t TrackReader) {
	buf := make([]byte, datagramMax)
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
		if _, err := r.pool.mc.WriteToAddrPort(pkt, *ast); err != nil {
			r.toAst.drops.Add(1)
			continue
		}
		r.forwardedToAsterisk(h.end-h.start, time.Now())
	}
}

var _ media.RTPHandler = (*Relay)(nil)
var _ TrackWriter = (*webrtc.TrackLocalStaticRTP)(nil)
