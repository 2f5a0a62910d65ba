package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"

	"github.com/patchbay/patchbay/webrtc/media"
)

// The Opus path. Asterisk drops Opus (and any dynamic payload type) arriving on an externalMedia RTP channel:
// chan_rtp sets no receive mapping, so only the static G.711 types get in. chan_websocket carries any format, so a
// call in Opus gets an externalMedia channel with transport websocket and connection type server, and its relay
// (WS) opens the channel's media WebSocket: one binary message per Opus frame each way, Asterisk's control
// messages as text. G.711 calls keep the UDP relay (relay.go) and its zero-allocation path.
//
// chan_websocket hands what it receives to the bridge one frame per tick of a 20 ms timer. A tick missed under
// load (timerfd coalesces them) leaves a frame behind for good, so the queue, and the delay, only ever grows. The
// relay therefore polls the queue (GET_STATUS) and, when it holds more than its limit (MaxQueue, raised with the
// browser's jitter), drops as many of the browser's next frames as bring it back to one frame less than the limit
// (one, on a steady leg): a 20 ms cut now and then instead of a delay that builds up over a call.

// WSOptions configure one relay over a media WebSocket.
type WSOptions struct {
	// URL is the channel's media WebSocket (ari.Client.MediaURL); it must be opened before the channel exists in
	// Stasis, so DialWS is called right after the externalMedia request.
	URL string
	// MaxQueue is how many frames Asterisk may hold for the channel before the relay trims (default 2: 40 ms) on a
	// steady leg; a leg with jitter gets more, as its jitter asks (jitter.go).
	MaxQueue int
	// StatusEvery is how often the queue is polled (default 200 ms).
	StatusEvery time.Duration
	// Logger carries the call's fields; nil uses slog.Default().
	Logger *slog.Logger
	// Heard, if set, records each frame from Asterisk (Ports.Heard: one clock for every call).
	Heard *Liveness
}

// WS moves one call's audio between the browser's peer and an Asterisk media WebSocket. It owns two goroutines
// once started (the socket's reader and writer; on pion's path a third reads the browser's track); Close stops
// them and closes the socket, which makes Asterisk hang the channel up.
type WS struct {
	peer  browser
	conn  *websocket.Conn
	log   *slog.Logger
	heard *Liveness
	codec media.Codec
	fmtOK string // the format Asterisk said in MEDIA_START
	lean  atomic.Bool

	maxQueue    int
	statusEvery time.Duration

	// Toward Asterisk: the demux (or the track reader) copies each payload into a free slot and queues its index
	// for the writer; nothing blocks the demux, and a full ring drops.
	slots [wsSlots][datagramMax]byte
	lens  [wsSlots]int
	free  chan int
	out   chan int
	skip  atomic.Int64 // frames still to drop to shorten Asterisk's queue
	jit   *jitterEstimator

	// Toward the browser: the reader's own state.
	seq         uint16
	ts          uint32
	lastAt      time.Time
	lastSamples int
	started     bool
	batch       *media.Batch
	pkt         rtp.Packet
	local       TrackWriter
	rbuf        [datagramMax]byte
	queueLen    atomic.Int64 // the last queue length Asterisk reported

	toBrw, toAst dirCounters
	trimmed      atomic.Uint64
	first        chan struct{}
	got          atomic.Bool

	closed    chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	mu        sync.Mutex
	startDone bool
	remote    TrackReader
	wg        sync.WaitGroup
	writerWG  sync.WaitGroup
	closeOnce sync.Once
}

const wsSlots = 16 // 320 ms of 20 ms frames queued toward Asterisk at most

// ErrMediaStart: the media WebSocket opened but Asterisk did not say MEDIA_START in the expected format.
var ErrMediaStart = errors.New("relay: media WebSocket did not start")

// DialWS opens the media WebSocket of an externalMedia channel for peer and waits for Asterisk's MEDIA_START,
// which must name the peer's codec. Start the relay once the channel is where the call wants it.
func DialWS(ctx context.Context, peer *media.Peer, o WSOptions) (*WS, error) {
	if peer == nil {
		return nil, errors.New("relay needs the browser's peer")
	}
	return dialWS(ctx, pionPeer{peer}, peer.Codec(), o)
}

func dialWS(ctx context.Context, peer browser, codec media.Codec, o WSOptions) (*WS, error) {
	if o.MaxQueue <= 0 {
		o.MaxQueue = 2
	}
	if o.StatusEvery <= 0 {
		o.StatusEvery = 200 * time.Millisecond
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	d := websocket.Dialer{Subprotocols: []string{"media"}, HandshakeTimeout: 5 * time.Second,
		ReadBufferSize: 2048, WriteBufferSize: 2048}
	conn, resp, err := d.DialContext(ctx, o.URL, http.Header{})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		status := ""
		if resp != nil {
			status = " (HTTP " + resp.Status + ")"
		}
		return nil, fmt.Errorf("open media WebSocket %s%s: %w (is chan_websocket loaded?)", o.URL, status, err)
	}
	r := &WS{
		peer: peer, conn: conn, log: log, codec: codec, heard: o.Heard,
		maxQueue: o.MaxQueue, statusEvery: o.StatusEvery,
		free:   make(chan int, wsSlots),
		out:    make(chan int, wsSlots),
		first:  make(chan struct{}),
		closed: make(chan struct{}),
		jit:    newJitterEstimator(int(codec.ClockRate())),
	}
	for i := range wsSlots {
		r.free <- i
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.pkt.Version = 2
	if err := r.awaitStart(ctx); err != nil {
		_ = conn.Close()
		r.cancel()
		return nil, err
	}
	return r, nil
}

// awaitStart reads Asterisk's first message, MEDIA_START, and checks its format.
func (r *WS) awaitStart(ctx context.Context) error {
	dl := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = r.conn.SetReadDeadline(dl)
	defer func() { _ = r.conn.SetReadDeadline(time.Time{}) }()
	typ, msg, err := r.conn.ReadMessage()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMediaStart, err)
	}
	if typ != websocket.TextMessage || !strings.Contains(string(msg), "MEDIA_START") {
		return fmt.Errorf("%w: first message %.80q", ErrMediaStart, msg)
	}
	r.fmtOK = field(string(msg), "format")
	if r.fmtOK != r.codec.Format() {
		return fmt.Errorf("%w: Asterisk carries %q, the browser %s", ErrMediaStart, r.fmtOK, r.codec.Format())
	}
	return nil
}

// field reads "name:value" (plain-text events) or "name":"value" / "name":value (JSON events) from a control
// message.
func field(msg, name string) string {
	i := strings.Index(msg, name)
	for i >= 0 {
		rest := msg[i+len(name):]
		rest = strings.TrimPrefix(rest, `"`)
		if strings.HasPrefix(rest, ":") {
			rest = strings.TrimLeft(rest[1:], `" `)
			end := strings.IndexAny(rest, `", }`)
			if end < 0 {
				end = len(rest)
			}
			return rest[:end]
		}
		j := strings.Index(rest, name)
		if j < 0 {
			break
		}
		i += len(name) + j
	}
	return ""
}

// Start moves audio both ways until Close; it may be called once, after the peer's path was decided.
func (r *WS) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.closed:
		return ErrClosed
	default:
	}
	if r.startDone {
		return errors.New("relay already started")
	}
	r.startDone = true
	if r.peer.LockMode() == media.ModeLean {
		r.lean.Store(true)
		r.batch = media.NewBatch(1)
	} else if r.local = r.peer.localTrack(); r.local == nil {
		return errors.New("relay: the peer has no local track")
	}
	r.writerWG.Add(1)
	go func() {
		defer r.writerWG.Done()
		r.writer()
	}()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.reader()
	}()
	if r.lean.Load() {
		r.peer.SetRTPHandler(r)
		return nil
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
		buf := make([]byte, datagramMax)
		for {
			n, _, err := t.Read(buf)
			if err != nil {
				var ne net.Error
				if !r.isClosed() && errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			r.HandleRTP(buf[:n])
		}
	}()
	return nil
}

func (r *WS) isClosed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

// HandleRTP queues one packet from the browser toward Asterisk (media.RTPHandler), on the demux goroutine (or the
// track reader): its payload is copied into a free slot for the writer. It never blocks.
func (r *WS) HandleRTP(pkt []byte) {
	h, ok := parseRTP(pkt)
	if !ok {
		r.toAst.drops.Add(1)
		return
	}
	now := time.Now()
	r.jit.update(h.ts, now)
	if r.skip.Load() > 0 && r.skip.Add(-1) >= 0 {
		r.trimmed.Add(1)
		return
	}
	var i int
	select {
	case i = <-r.free:
	default:
		r.toAst.drops.Add(1) // the writer is behind: Asterisk is not reading
		return
	}
	r.lens[i] = copy(r.slots[i][:], pkt[h.start:h.end])
	r.out <- i // never blocks: out holds every slot
	r.toAst.forwarded(h.end-h.start, now)
	if !r.got.Load() && r.got.CompareAndSwap(false, true) {
		close(r.first)
	}
}

// FlushRTP is a no-op: the writer sends each frame as it comes (media.RTPHandler).
func (r *WS) FlushRTP() {}

// writer sends the queued frames and polls Asterisk's queue, until Close.
func (r *WS) writer() {
	tick := time.NewTicker(r.statusEvery)
	defer tick.Stop()
	status := []byte("GET_STATUS")
	for {
		select {
		case <-r.closed:
			_ = r.conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseNormalClosure, "hangup"), time.Now().Add(200*time.Millisecond))
			return
		case i := <-r.out:
			_ = r.conn.SetWriteDeadline(time.Now().Add(time.Second))
			err := r.conn.WriteMessage(websocket.BinaryMessage, r.slots[i][:r.lens[i]])
			r.free <- i
			if err != nil {
				r.toAst.drops.Add(1)
				if r.isClosed() {
					return
				}
				r.log.Debug("write to media WebSocket", "err", err)
			}
		case <-tick.C:
			_ = r.conn.SetWriteDeadline(time.Now().Add(time.Second))
			if err := r.conn.WriteMessage(websocket.TextMessage, status); err != nil && !r.isClosed() {
				r.log.Debug("poll media WebSocket queue", "err", err)
			}
		}
	}
}

// reader forwards Asterisk's frames to the browser and reads its control messages, until the socket closes.
func (r *WS) reader() {
	for {
		typ, rd, err := r.conn.NextReader()
		if err != nil {
			if !r.isClosed() {
				r.log.Debug("media WebSocket closed by Asterisk", "err", err)
			}
			return
		}
		r.heard.Mark(time.Now())
		n, err := io.ReadFull(rd, r.rbuf[:])
		switch {
		case err == nil: // the buffer filled: longer than any datagram, not a frame
			_, _ = io.Copy(io.Discard, rd)
			r.toBrw.drops.Add(1)
			continue
		case !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF):
			return
		}
		if typ == websocket.TextMessage {
			r.control(string(r.rbuf[:n]))
			continue
		}
		if n > 0 {
			r.toBrowser(r.rbuf[:n], time.Now())
		}
	}
}

// control handles one of Asterisk's text messages: the queue length, flow control, errors.
func (r *WS) control(msg string) {
	switch {
	case strings.Contains(msg, "STATUS"):
		q, err := strconv.Atoi(field(msg, "queue_length"))
		if err != nil {
			return
		}
		r.queueLen.Store(int64(q))
		// Trimmed back to one frame less than the limit: one frame, as ever, on a steady leg (limit 2).
		limit := queueLimit(r.maxQueue, r.jit.get())
		if excess := int64(q - (limit - 1)); q > limit && r.skip.Load() < excess {
			r.skip.Store(excess)
			r.log.Debug("Asterisk's media queue grew: trimming", "queue", q, "limit", limit, "jitter", r.jit.get())
		}
	case strings.Contains(msg, "MEDIA_XOFF"):
		r.log.Warn("Asterisk's media queue is full (MEDIA_XOFF)")
	case strings.Contains(msg, "ERROR"):
		r.log.Warn("media WebSocket error from Asterisk", "msg", msg)
	}
}

// toBrowser stamps one frame from Asterisk and sends it to the browser. Frames follow each other in the codec's
// timestamps; a pause (nothing for three frames' time) advances them by the wall clock and sets the marker.
func (r *WS) toBrowser(payload []byte, now time.Time) {
	samples := frameSamples(r.codec, payload)
	marker := false
	if !r.started {
		r.started = true
		r.seq, r.ts = uint16(now.UnixNano()), uint32(now.UnixNano()>>8)
		marker = true
	} else {
		r.seq++
		step := uint32(r.lastSamples)
		if gap := now.Sub(r.lastAt); gap > 3*20*time.Millisecond {
			step = max(step, uint32(gap*time.Duration(r.codec.ClockRate())/time.Second))
			marker = true
		}
		r.ts += step
	}
	r.lastAt, r.lastSamples = now, samples
	var err error
	if r.lean.Load() {
		if err = r.peer.AppendRTP(r.batch, r.seq, r.ts, marker, payload, now); err == nil {
			err = r.batch.Flush()
		}
	} else {
		r.pkt.SequenceNumber, r.pkt.Timestamp, r.pkt.Marker, r.pkt.Payload = r.seq, r.ts, marker, payload
		err = r.local.WriteRTP(&r.pkt)
		r.pkt.Payload = nil
	}
	if err != nil {
		r.toBrw.drops.Add(1)
		return
	}
	r.toBrw.forwarded(len(payload), now)
}

// frameSamples is how many samples (at the codec's clock) a frame holds: G.711 one per byte, Opus from its TOC
// byte (RFC 6716 §3.1), 20 ms when it cannot tell.
func frameSamples(c media.Codec, p []byte) int {
	if c != media.Opus {
		return len(p)
	}
	if len(p) == 0 {
		return 960
	}
	toc := p[0]
	cfg := toc >> 3
	var per int // samples at 48 kHz per frame
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		per = []int{480, 960, 1920, 2880}[cfg&3]
	case cfg < 16: // Hybrid: 10, 20 ms
		per = []int{480, 960}[cfg&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		per = []int{120, 240, 480, 960}[cfg&3]
	}
	frames := 1
	switch toc & 3 {
	case 1, 2:
		frames = 2
	case 3:
		if len(p) < 2 {
			return 960
		}
		frames = int(p[1] & 0x3f)
	}
	if n := per * frames; n > 0 && n <= 5760 { // at most 120 ms
		return n
	}
	return 960
}

// FirstPacket is closed when the first packet from the browser has been sent toward Asterisk.
func (r *WS) FirstPacket() <-chan struct{} { return r.first }

// Stats returns the counters of both directions; frames trimmed to keep Asterisk's queue short are in Trimmed.
func (r *WS) Stats() Stats {
	s := Stats{ToAsterisk: r.toAst.snapshot(), ToBrowser: r.toBrw.snapshot(), Lean: r.lean.Load(),
		Trimmed: r.trimmed.Load(), AsteriskQueue: int(r.queueLen.Load())}
	if s.Lean {
		s.RTCP = r.peer.RTCPStats()
	}
	return s
}

// Close stops both directions, closes the media WebSocket (Asterisk then hangs the channel up) and waits for
// every goroutine of the relay. Safe to call more than once and from any goroutine; it does not close the peer.
func (r *WS) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		close(r.closed)
		r.cancel()
		if r.remote != nil {
			_ = r.remote.SetReadDeadline(time.Unix(1, 0))
		}
		r.mu.Unlock()
		if r.lean.Load() {
			r.peer.SetRTPHandler(nil)
		}
		r.writerWG.Wait() // the close frame goes out first
		_ = r.conn.Close()
	})
	r.wg.Wait()
	return nil
}

var _ media.RTPHandler = (*WS)(nil)
