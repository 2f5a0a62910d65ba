package aritest

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// echoMedia is the RTP side of an externalMedia channel under WithEchoMedia.
type echoMedia struct {
	conn *net.UDPConn
	peer *net.UDPAddr // external_host: the only source accepted, and where echoes go
	once sync.Once
}

func (m *echoMedia) close() { m.once.Do(func() { _ = m.conn.Close() }) }

// fakePortBase is where UNICASTRTP_LOCAL_PORT values start without WithEchoMedia.
const fakePortBase = 20000

// bindMedia chooses the channel's local RTP address. Without WithEchoMedia it
// is a plausible port nothing listens on; with it, a real socket whose reader
// echoes. Called with s.mu held.
func (s *Server) bindMedia(ch *channel) (addr string, port int, err error) {
	if !s.echo {
		return "127.0.0.1", fakePortBase + 2*(s.seq%10000), nil
	}
	peer, err := net.ResolveUDPAddr("udp", ch.externalHost)
	if err != nil {
		return "", 0, fmt.Errorf("resolve external_host %s: %w", ch.externalHost, err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return "", 0, fmt.Errorf("bind RTP socket: %w", err)
	}
	m := &echoMedia{conn: conn, peer: peer}
	ch.media = m
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.echoLoop(ch, m)
	}()
	la := conn.LocalAddr().(*net.UDPAddr)
	return la.IP.String(), la.Port, nil
}

// echoLoop reads RTP until the socket closes and echoes what a connected
// channel receives from its external_host.
func (s *Server) echoLoop(ch *channel, m *echoMedia) {
	buf := make([]byte, 2048)
	for {
		n, from, err := m.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n < 12 || buf[0]>>6 != 2 || !sameAddr(from, m.peer) {
			continue // not RTP, or not from external_host (strictrtp)
		}
		s.mu.Lock()
		connected := s.mediaConnected(ch)
		s.mu.Unlock()
		if connected {
			_, _ = m.conn.WriteToUDP(buf[:n], m.peer)
		}
	}
}

func sameAddr(a, b *net.UDPAddr) bool {
	return a.Port == b.Port && (a.IP.Equal(b.IP) || (a.IP.IsLoopback() && b.IP.IsLoopback()))
}

// mediaConnected: media flows when the channel is bridged with an answered
// channel, or runs Echo in the dialplan; not while Asterisk is frozen (but
// while it is starved). Called with s.mu held.
func (s *Server) mediaConnected(ch *channel) bool {
	if (s.frozen && !s.starved) || !s.alive(ch) {
		return false
	}
	if ch.stasisApp == "" && ch.dp.AppName == "Echo" {
		return true
	}
	b := s.bridges[ch.bridge]
	if b == nil {
		return false
	}
	for _, id := range b.channels {
		if o := s.channels[id]; o != nil && o != ch && o.state == stateUp {
			return true
		}
	}
	return false
}
