package media

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patchbay/patchbay/webrtc/mmsg"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// The lean path. pion keeps doing what happens once per call (SDP, ICE-lite checks, the DTLS handshake); the
// per-packet work is done here: SRTP and SRTCP with pion/srtp contexts keyed from the DTLS handshake, read and
// written on the muxed socket directly (see demux.go and Batch), with no track, interceptor or goroutine in
// between. The DTLS keying material is taken from pion/dtls as it is made: the master secret from its key log
// and the server random and SRTP profile from the ServerHello it sends. From those the tap derives exactly what
// RFC 5705's exporter gives (EXTRACTOR-dtls_srtp), so it needs Patchbay to be the DTLS server, which it asks for
// (SettingEngine.SetAnsweringDTLSRole) and which browsers choose when answering our actpass offers. A peer for
// which that does not hold, or that negotiated video, stays on pion's full path. The path does not depend on the
// transport ICE picks: a browser on ICE-TCP has its SRTP taken off its TCP connection (tcp.go) and gets ours back
// on it, and the tap's route follows the browser's authenticated packets across ICE restarts.

// Mode says which path a peer's audio takes.
type Mode int32

// The modes of a peer; the first is only seen before Answer or SetAnswer returns.
const (
	ModeUndecided Mode = iota
	ModePion           // pion's tracks carry audio: LocalTrack and RemoteTrack
	ModeLean           // AppendRTP and an RTPHandler carry audio
)

func (m Mode) String() string {
	switch m {
	case ModePion:
		return "pion"
	case ModeLean:
		return "lean"
	}
	return "undecided"
}

// ErrNotLean: the peer's audio is carried by pion's tracks, not by AppendRTP.
var ErrNotLean = errors.New("media: peer is not on the lean path")

// ErrNotReady: DTLS has not finished yet (or the browser's address is unknown); the packet was dropped.
var ErrNotReady = errors.New("media: lean path not ready")

const (
	tapPending int32 = iota // keys not yet known
	tapReady                // in and out contexts set: SRTP handled by the demux
	tapOff                  // never: the peer is on pion's path
)

// tap is a peer's lean path.
type tap struct {
	d     *demux
	state atomic.Int32
	law   Codec
	pt    uint8  // payload type stamped on what we send: the negotiated one (decideMode)
	clock uint32 // RTP clock rate of the codec

	kmu                          sync.Mutex // key capture, on pion's DTLS goroutine
	master, clientRandom, sRand  []byte
	profile                      srtp.ProtectionProfile
	prfHash                      func() hash.Hash
	haveHello, haveSecret, keyed bool

	// Inbound: under inMu. The UDP demux and the reader of an ICE-TCP connection (tcp.go) may both deliver while
	// a browser moves between them; otherwise only one does and the lock is never contended. rx* are also under
	// rxMu for the RTCP sender.
	inMu    sync.Mutex
	in      *srtp.Context
	rhdr    rtp.Header
	rchdr   rtcp.Header
	rbuf    [datagramMax]byte
	handler atomic.Pointer[handlerBox]
	dst     atomic.Pointer[route] // where the browser's last authenticated packet came from

	rxMu    sync.Mutex
	rx      rxState
	rxPkts  atomic.Uint64
	rxBytes atomic.Uint64
	rxLast  atomic.Int64
	rxBad   atomic.Uint64

	// Outbound: under outMu (the relay's reader, Inject and the RTCP sender share it).
	outMu   sync.Mutex
	out     *srtp.Context
	ohdr    rtp.Header
	ochdr   rtcp.Header
	obuf    [datagramMax]byte
	tcpBuf  []byte // ciphertext toward an ICE-TCP route; made on first use, so UDP peers never hold it
	ssrc    uint32
	txTS    uint32
	txAt    time.Time
	txPkts  atomic.Uint64
	txBytes atomic.Uint64
	txLast  atomic.Int64

	// From the browser's RTCP.
	rtt          atomic.Int64  // ns; 0 until known
	remoteLost   atomic.Int64  // cumulative, as the browser reports our stream
	remoteFrac   atomic.Uint32 // fraction lost ×256 in the last report
	remoteJitter atomic.Uint32 // RTP timestamp units

	nextRTCP time.Time // the API's RTCP loop only
}

type handlerBox struct{ h RTPHandler }

// route is where a lean peer's media goes: the browser's address on the muxed UDP socket, or, for a browser on
// ICE-TCP, the connection it came in on (tcp.go). It follows the browser's last authenticated SRTP/SRTCP, so an
// ICE restart onto another address or transport moves it with the first packet from there.
type route struct {
	addr    netip.AddrPort // the browser's address (the far end of the TCP connection on ICE-TCP)
	tcp     *tcpConn       // nil: UDP
	tcpAddr net.Addr       // the connection's remote address as pion's mux knows it
}

func (r *route) same(o *route) bool { return r.addr == o.addr && r.tcp == o.tcp }

// send writes one protected packet on r: used for what is not batched (RTCP, and everything on ICE-TCP, where
// pion's mux queues writes per connection and never blocks the caller).
func (t *tap) send(r *route, pkt []byte) error {
	if r.tcp != nil {
		_, err := r.tcp.WriteTo(pkt, r.tcpAddr)
		return err
	}
	_, err := t.d.mc.WriteToAddrPort(pkt, r.addr)
	return err
}

// rxState follows RFC 3550 appendix A.1/A.8 for the browser's stream.
type rxState struct {
	init             bool
	ssrc             uint32
	base, max        uint16
	cycles           uint32
	received         uint32
	expectedPrior    uint32
	receivedPrior    uint32
	lastTransit      int64
	jitter           float64
	epoch            time.Time
	lastSR           uint32 // middle 32 bits of the browser's last SR NTP time
	lastSRAt         time.Time
	haveTransit      bool
	lastReportedLost int64
}

func newTap(d *demux, law Codec) *tap {
	return &tap{d: d, law: law, pt: law.PayloadType(), clock: law.ClockRate()}
}

func (t *tap) ready() bool { return t.state.Load() == tapReady }

// Write receives pion/dtls's key log: "CLIENT_RANDOM <client random> <master secret>".
func (t *tap) Write(b []byte) (int, error) {
	f := strings.Fields(string(b))
	if len(f) != 3 || f[0] != "CLIENT_RANDOM" {
		return len(b), nil
	}
	cr, err1 := hex.DecodeString(f[1])
	ms, err2 := hex.DecodeString(f[2])
	if err1 != nil || err2 != nil {
		return len(b), nil
	}
	t.kmu.Lock()
	t.clientRandom, t.master, t.haveSecret = cr, ms, true
	t.tryKeys()
	t.kmu.Unlock()
	return len(b), nil
}

// serverHello sees the ServerHello Patchbay sends as DTLS server: its random, cipher suite and SRTP profile.
func (t *tap) serverHello(m handshake.MessageServerHello) handshake.Message {
	r := m.Random.MarshalFixed()
	t.kmu.Lock()
	t.sRand = r[:]
	t.prfHash = sha256.New
	if m.CipherSuiteID != nil && (*m.CipherSuiteID == 0xc02c || *m.CipherSuiteID == 0xc030) { // *_SHA384 suites
		t.prfHash = sha512.New384
	}
	for _, e := range m.Extensions {
		if u, ok := e.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) > 0 {
			t.profile = srtp.ProtectionProfile(u.ProtectionProfiles[0])
			t.haveHello = true
		}
	}
	t.tryKeys()
	t.kmu.Unlock()
	return &m
}

// ExportKeyingMaterial is RFC 5705's exporter for the server side, as pion/dtls's State computes it.
func (t *tap) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(context) != 0 {
		return nil, errors.New("exporter context unsupported")
	}
	seed := append(append([]byte(label), t.clientRandom...), t.sRand...)
	return prf.PHash(t.master, seed, length, t.prfHash)
}

// tryKeys builds the SRTP contexts once the handshake has given everything; kmu is held.
func (t *tap) tryKeys() {
	if t.keyed || !t.haveHello || !t.haveSecret || t.state.Load() != tapPending {
		return
	}
	t.keyed = true
	cfg := srtp.Config{Profile: t.profile}
	if err := cfg.ExtractSessionKeysFromDTLS(t, false); err != nil {
		t.d.log.Warn("lean path: SRTP keys from DTLS failed; audio stays silent", "err", err)
		return
	}
	in, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, t.profile,
		srtp.SRTPReplayProtection(64), srtp.SRTCPReplayProtection(64))
	if err != nil {
		t.d.log.Warn("lean path: inbound SRTP context", "err", err)
		return
	}
	out, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, t.profile)
	if err != nil {
		t.d.log.Warn("lean path: outbound SRTP context", "err", err)
		return
	}
	t.in = in
	t.outMu.Lock()
	t.out = out
	t.outMu.Unlock()
	t.master = nil
	t.state.Store(tapReady)
}

func isRTCP(b []byte) bool { return len(b) > 1 && b[1] >= 192 && b[1] <= 223 } // RFC 5761 §4

// inbound handles one SRTP or SRTCP datagram from the browser's UDP address, on the demux goroutine. It returns
// the handler to flush after the batch, if the packet went to one.
func (t *tap) inbound(b []byte, from netip.AddrPort, now time.Time) RTPHandler {
	return t.inboundVia(b, route{addr: from}, now)
}

// inboundVia handles one SRTP or SRTCP packet that came in on r.
func (t *tap) inboundVia(b []byte, r route, now time.Time) RTPHandler {
	t.inMu.Lock()
	defer t.inMu.Unlock()
	if isRTCP(b) {
		out, err := t.in.DecryptRTCP(t.rbuf[:0], b, &t.rchdr)
		if err != nil {
			t.rxBad.Add(1)
			return nil
		}
		t.setDst(r)
		t.readRTCP(out, now)
		return nil
	}
	out, err := t.in.DecryptRTP(t.rbuf[:0], b, &t.rhdr)
	if err != nil {
		t.rxBad.Add(1)
		return nil
	}
	t.setDst(r)
	t.rxPkts.Add(1)
	t.rxBytes.Add(uint64(len(out)))
	t.rxLast.Store(now.UnixNano())
	t.rxMu.Lock()
	t.rx.record(&t.rhdr, now, t.clock)
	t.rxMu.Unlock()
	hb := t.handler.Load()
	if hb == nil {
		return nil
	}
	hb.h.HandleRTP(out)
	return hb.h
}

func (t *tap) setDst(r route) {
	if d := t.dst.Load(); d == nil || !d.same(&r) {
		nd := r // allocated only when the browser's address changes
		t.dst.Store(&nd)
	}
}

func (r *rxState) record(h *rtp.Header, now time.Time, clock uint32) {
	if !r.init || h.SSRC != r.ssrc {
		*r = rxState{init: true, ssrc: h.SSRC, base: h.SequenceNumber, max: h.SequenceNumber, epoch: now,
			lastSR: r.lastSR, lastSRAt: r.lastSRAt}
	} else if d := h.SequenceNumber - r.max; d < 0x8000 && d != 0 {
		if h.SequenceNumber < r.max {
			r.cycles += 1 << 16
		}
		r.max = h.SequenceNumber
	}
	r.received++
	arrival := int64(now.Sub(r.epoch) / (time.Second / time.Duration(clock))) // no overflow however long the call
	transit := arrival - int64(h.Timestamp)
	if r.haveTransit {
		d := float64(transit - r.lastTransit)
		if d < 0 {
			d = -d
		}
		r.jitter += (d - r.jitter) / 16
	}
	r.lastTransit, r.haveTransit = transit, true
}

// readRTCP takes the browser's sender report time and its report on our stream.
func (t *tap) readRTCP(b []byte, now time.Time) {
	for off := 0; off+4 <= len(b); {
		count, pt := int(b[off]&0x1f), b[off+1]
		l := (int(binary.BigEndian.Uint16(b[off+2:])) + 1) * 4
		if off+l > len(b) {
			return
		}
		p := b[off : off+l]
		switch pt {
		case 200: // SR
			if len(p) >= 28 {
				t.rxMu.Lock()
				t.rx.lastSR = binary.BigEndian.Uint32(p[10:])
				t.rx.lastSRAt = now
				t.rxMu.Unlock()
				t.reportBlocks(p[28:], count, now)
			}
		case 201: // RR
			if len(p) >= 8 {
				t.reportBlocks(p[8:], count, now)
			}
		}
		off += l
	}
}

func (t *tap) reportBlocks(b []byte, count int, now time.Time) {
	for i := 0; i < count && len(b) >= 24*(i+1); i++ {
		rb := b[24*i:]
		if binary.BigEndian.Uint32(rb) != t.ssrc {
			continue
		}
		t.remoteFrac.Store(uint32(rb[4]))
		lost := int64(binary.BigEndian.Uint32(rb[4:]) & 0xffffff)
		if lost&0x800000 != 0 {
			lost -= 1 << 24
		}
		t.remoteLost.Store(lost)
		t.remoteJitter.Store(binary.BigEndian.Uint32(rb[12:]))
		if lsr, dlsr := binary.BigEndian.Uint32(rb[16:]), binary.BigEndian.Uint32(rb[20:]); lsr != 0 {
			rtt := ntpMiddle(now) - lsr - dlsr // in 1/65536 s
			if rtt < 1<<31 {
				t.rtt.Store(int64(rtt) * int64(time.Second) >> 16)
			}
		}
	}
}

// ntpMiddle is the middle 32 bits of the NTP timestamp of t (RFC 3550 §4).
func ntpMiddle(t time.Time) uint32 {
	sec, frac := ntpTime(t)
	return sec<<16 | frac>>16
}

func ntpTime(t time.Time) (sec, frac uint32) {
	ns := t.UnixNano()
	s := ns / int64(time.Second)
	sec = uint32(s + 2208988800)
	frac = uint32((uint64(ns-s*int64(time.Second)) << 32) / uint64(time.Second))
	return sec, frac
}

// appendRTP protects one frame toward the browser into b.
func (t *tap) appendRTP(b *Batch, seq uint16, ts uint32, marker bool, payload []byte, now time.Time) error {
	if !t.ready() {
		return ErrNotReady
	}
	dst := t.dst.Load()
	if dst == nil {
		return ErrNotReady
	}
	if len(payload) > datagramMax-12-32 {
		return errors.New("media: RTP payload too large")
	}
	if dst.tcp != nil {
		return t.sendRTPTCP(dst, seq, ts, marker, payload, now)
	}
	slot := b.slot(t.d)
	t.outMu.Lock()
	out, err := t.protect(slot[:0], seq, ts, marker, payload, now)
	t.outMu.Unlock()
	if err != nil {
		return err
	}
	t.sent(len(payload), now)
	b.commit(len(out), dst.addr)
	return nil
}

// sendRTPTCP protects one frame toward a browser on ICE-TCP and hands it to the connection's write queue.
func (t *tap) sendRTPTCP(dst *route, seq uint16, ts uint32, marker bool, payload []byte, now time.Time) error {
	t.outMu.Lock()
	defer t.outMu.Unlock()
	if t.tcpBuf == nil {
		t.tcpBuf = make([]byte, datagramMax)
	}
	out, err := t.protect(t.tcpBuf[:0], seq, ts, marker, payload, now)
	if err != nil {
		return err
	}
	if err := t.send(dst, out); err != nil {
		return err
	}
	t.sent(len(payload), now)
	return nil
}

func (t *tap) sent(n int, now time.Time) {
	t.txPkts.Add(1)
	t.txBytes.Add(uint64(n))
	t.txLast.Store(now.UnixNano())
}

// protect builds and encrypts one RTP packet into dst; outMu is held.
func (t *tap) protect(dst []byte, seq uint16, ts uint32, marker bool, payload []byte, now time.Time) ([]byte, error) {
	plain := t.obuf[:12+len(payload)]
	plain[0] = 0x80
	plain[1] = t.pt
	if marker {
		plain[1] |= 0x80
	}
	binary.BigEndian.PutUint16(plain[2:], seq)
	binary.BigEndian.PutUint32(plain[4:], ts)
	binary.BigEndian.PutUint32(plain[8:], t.ssrc)
	copy(plain[12:], payload)
	out, err := t.out.EncryptRTP(dst, plain, &t.ohdr)
	if err == nil {
		t.txTS, t.txAt = ts, now
	}
	return out, err
}

// sendRTCP sends a sender (or receiver) report with a report block on the browser's stream, and our CNAME.
func (t *tap) sendRTCP(now time.Time, cname string) {
	dst := t.dst.Load()
	if !t.ready() || dst == nil {
		return
	}
	var plain [256]byte
	n := 0
	t.rxMu.Lock()
	var block [24]byte
	haveBlock := t.rx.init
	if haveBlock {
		r := &t.rx
		extMax := r.cycles + uint32(r.max)
		expected := extMax - uint32(r.base) + 1
		lost := int64(expected) - int64(r.received)
		lost = max(min(lost, 0x7fffff), -0x800000)
		expInt, recvInt := expected-r.expectedPrior, r.received-r.receivedPrior
		r.expectedPrior, r.receivedPrior = expected, r.received
		var frac uint32
		if expInt > 0 && int64(expInt) > int64(recvInt) {
			frac = uint32((int64(expInt) - int64(recvInt)) << 8 / int64(expInt))
		}
		binary.BigEndian.PutUint32(block[0:], r.ssrc)
		binary.BigEndian.PutUint32(block[4:], frac<<24|uint32(lost)&0xffffff)
		binary.BigEndian.PutUint32(block[8:], extMax)
		binary.BigEndian.PutUint32(block[12:], uint32(r.jitter))
		if !r.lastSRAt.IsZero() {
			binary.BigEndian.PutUint32(block[16:], r.lastSR)
			binary.BigEndian.PutUint32(block[20:], uint32(now.Sub(r.lastSRAt).Seconds()*65536))
		}
		r.lastReportedLost = lost
	}
	t.rxMu.Unlock()
	rc := byte(0)
	if haveBlock {
		rc = 1
	}
	t.outMu.Lock()
	defer t.outMu.Unlock()
	if t.txPkts.Load() > 0 {
		words := 6 + 6*int(rc)
		plain[0], plain[1] = 0x80|rc, 200
		binary.BigEndian.PutUint16(plain[2:], uint16(words))
		binary.BigEndian.PutUint32(plain[4:], t.ssrc)
		sec, frac := ntpTime(now)
		binary.BigEndian.PutUint32(plain[8:], sec)
		binary.BigEndian.PutUint32(plain[12:], frac)
		binary.BigEndian.PutUint32(plain[16:], t.txTS+uint32(now.Sub(t.txAt)/(time.Second/time.Duration(t.clock))))
		binary.BigEndian.PutUint32(plain[20:], uint32(t.txPkts.Load()))
		binary.BigEndian.PutUint32(plain[24:], uint32(t.txBytes.Load()))
		n = 28
	} else {
		plain[0], plain[1] = 0x80|rc, 201
		binary.BigEndian.PutUint16(plain[2:], uint16(1+6*int(rc)))
		binary.BigEndian.PutUint32(plain[4:], t.ssrc)
		n = 8
	}
	if haveBlock {
		n += copy(plain[n:], block[:])
	}
	// SDES with one CNAME chunk, padded to a 32-bit boundary (RFC 3550 §6.5).
	start := n
	plain[n], plain[n+1] = 0x81, 202
	binary.BigEndian.PutUint32(plain[n+4:], t.ssrc)
	plain[n+8], plain[n+9] = 1, byte(len(cname))
	n += 10 + copy(plain[n+10:], cname)
	n++ // end of items
	for (n-start)%4 != 0 {
		n++
	}
	binary.BigEndian.PutUint16(plain[start+2:], uint16((n-start)/4-1))
	out, err := t.out.EncryptRTCP(t.obuf[:0], plain[:n], &t.ochdr)
	if err != nil {
		return
	}
	_ = t.send(dst, out)
}

// RTCPStats is what a lean peer knows of the call's media quality; zero values mean not known (yet).
type RTCPStats struct {
	// FromBrowser: the browser's stream as received here.
	FromBrowser StreamStats
	// ToBrowser: our stream as sent, with the loss and jitter the browser reported for it.
	ToBrowser StreamStats
	// RTT is the round trip to the browser from its receiver reports on our sender reports.
	RTT time.Duration
	// Undecryptable counts SRTP/SRTCP packets that failed authentication or replay checks.
	Undecryptable uint64
}

// StreamStats describes one direction.
type StreamStats struct {
	Packets, Bytes uint64
	Last           time.Time // last packet; zero if none
	Lost           int64     // cumulative packets lost (receiver's view)
	FractionLost   float64   // in the last report interval, 0..1
	Jitter         time.Duration
}

func (t *tap) stats() RTCPStats {
	var s RTCPStats
	s.FromBrowser.Packets, s.FromBrowser.Bytes = t.rxPkts.Load(), t.rxBytes.Load()
	if ns := t.rxLast.Load(); ns != 0 {
		s.FromBrowser.Last = time.Unix(0, ns)
	}
	t.rxMu.Lock()
	if t.rx.init {
		expected := t.rx.cycles + uint32(t.rx.max) - uint32(t.rx.base) + 1
		s.FromBrowser.Lost = max(int64(expected)-int64(t.rx.received), 0)
		s.FromBrowser.Jitter = time.Duration(t.rx.jitter * float64(time.Second) / float64(t.clock))
	}
	t.rxMu.Unlock()
	s.ToBrowser.Packets, s.ToBrowser.Bytes = t.txPkts.Load(), t.txBytes.Load()
	if ns := t.txLast.Load(); ns != 0 {
		s.ToBrowser.Last = time.Unix(0, ns)
	}
	s.ToBrowser.Lost = t.remoteLost.Load()
	s.ToBrowser.FractionLost = float64(t.remoteFrac.Load()) / 256
	s.ToBrowser.Jitter = time.Duration(int64(t.remoteJitter.Load()) * int64(time.Second) / int64(t.clock))
	s.RTT = time.Duration(t.rtt.Load())
	s.Undecryptable = t.rxBad.Load()
	return s
}

func (t *tap) rtcpDue(now time.Time) bool {
	if t.nextRTCP.IsZero() {
		t.nextRTCP = now.Add(time.Duration(rand.Int64N(int64(rtcpInterval))))
	}
	if now.Before(t.nextRTCP) {
		return false
	}
	// RFC 3550 §6.3.1: randomised between 0.5 and 1.5 times the interval.
	t.nextRTCP = now.Add(rtcpInterval/2 + time.Duration(rand.Int64N(int64(rtcpInterval))))
	return true
}

const rtcpInterval = 2 * time.Second

// Batch queues protected packets toward browsers and sends them with one sendmmsg. A Batch belongs to one
// goroutine.
type Batch struct {
	mc      *mmsg.Conn
	d       *demux
	msgs    []mmsg.Message
	bufs    []byte
	scratch *mmsg.Scratch
	n       int
	sent    uint64
	errs    uint64
}

// NewBatch makes a batch of up to n packets (n×1500 bytes of buffers); a full batch sends before queueing more.
func NewBatch(n int) *Batch {
	n = max(n, 1)
	return &Batch{msgs: make([]mmsg.Message, n), bufs: make([]byte, n*datagramMax), scratch: mmsg.NewScratch(n)}
}

// slot returns the buffer of the next packet, sending first if the batch is full or holds packets for another
// socket (another API's).
func (b *Batch) slot(d *demux) []byte {
	if b.n > 0 && (b.n == len(b.msgs) || b.d != d) {
		_ = b.Flush()
	}
	b.d, b.mc = d, d.mc
	return b.bufs[b.n*datagramMax : (b.n+1)*datagramMax]
}

// commit queues the packet written into the last slot.
func (b *Batch) commit(n int, to netip.AddrPort) {
	i := b.n
	b.msgs[i] = mmsg.Message{Buf: b.bufs[i*datagramMax : i*datagramMax+n], Addr: to}
	b.n++
}

// Len is the number of packets queued.
func (b *Batch) Len() int { return b.n }

// Flush sends what is queued; a datagram the kernel refuses is lost alone (mmsg.Conn.WriteAll).
func (b *Batch) Flush() error {
	sent, err := b.mc.WriteAll(b.msgs[:b.n], b.scratch)
	b.sent += uint64(sent)
	b.errs += uint64(b.n - sent)
	b.n = 0
	return err
}
