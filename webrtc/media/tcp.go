package media

import (
	"net"
	"net/netip"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
)

// ICE-TCP. pion's TCP mux frames RFC 4571 packets on each accepted connection and hands them to the peer's ICE
// agent by ufrag, so nothing of a browser on ICE-TCP passes the UDP demux. tcpMux wraps it to give those packets
// what the demux gives UDP ones: every packet is a sign of life for the API's watchdog (pion's ICE timeouts are
// off), and a lean peer's SRTP/SRTCP is decrypted and handed to its RTPHandler right there, while what its tap
// sends goes back on the same connection (see route in lean.go). A peer therefore keeps its path, lean or pion's,
// whichever transport ICE picks and however often an ICE restart moves it.

// tcpWriteBuffer bounds what pion's mux queues per TCP connection before it drops: writes never block the
// caller (the relay's one reader goroutine among them) on a browser whose TCP window closed. 1 MiB is seconds of
// video and minutes of G.711; it is only allocated as far as it is used.
const tcpWriteBuffer = 1 << 20

// tcpMux is the ice.TCPMux pion's agents use: pion's own, with every connection it hands out wrapped.
type tcpMux struct {
	inner *ice.TCPMuxDefault
	d     *demux
}

func newTCPMux(ln net.Listener, log logging.LeveledLogger, d *demux) *tcpMux {
	return &tcpMux{d: d, inner: ice.NewTCPMuxDefault(ice.TCPMuxParams{
		Listener: ln,
		Logger:   log,
		// 8 frames of read buffer per connection; a G.711 call never has more in flight.
		ReadBufferSize:  8,
		WriteBufferSize: tcpWriteBuffer,
	})}
}

// GetConnByUfrag is called as an agent gathers (again after each ICE restart, with its new ufrag).
func (m *tcpMux) GetConnByUfrag(ufrag string, isIPv6 bool, local net.IP) (net.PacketConn, error) {
	c, err := m.inner.GetConnByUfrag(ufrag, isIPv6, local)
	if err != nil {
		return nil, err
	}
	return &tcpConn{PacketConn: c, d: m.d, ufrag: ufrag}, nil
}

func (m *tcpMux) RemoveConnByUfrag(ufrag string) { m.inner.RemoveConnByUfrag(ufrag) }
func (m *tcpMux) Close() error                   { return m.inner.Close() }

// LocalAddr lets pion's gatherer see the listener's address (it only offers candidates on the bound IP).
func (m *tcpMux) LocalAddr() net.Addr { return m.inner.LocalAddr() }

// tcpConn is one agent's view of its ICE-TCP connections (pion's, for one ufrag and local IP). pion's candidate
// reads it on a goroutine of its own; its writes are queued by pion's mux (tcpWriteBuffer).
type tcpConn struct {
	net.PacketConn
	d     *demux
	ufrag string
}

// ReadFrom returns what pion must see (STUN, DTLS, and all media of peers on pion's path); a lean peer's SRTP and
// SRTCP go to its tap instead and the read goes on.
func (c *tcpConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.PacketConn.ReadFrom(b)
		if err != nil || n == 0 {
			return n, from, err
		}
		p := c.d.peer(c.ufrag)
		if p == nil {
			return n, from, nil
		}
		now := time.Now()
		p.seen.Store(now.UnixNano())
		if b[0] >= 128 && b[0] < 192 && p.tap.ready() { // SRTP or SRTCP (RFC 7983)
			if h := p.tap.inboundVia(b[:n], route{addr: tcpAddrPort(from), tcp: c, tcpAddr: from}, now); h != nil {
				h.FlushRTP()
			}
			continue
		}
		return n, from, nil
	}
}

func tcpAddrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
