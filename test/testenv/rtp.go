package testenv

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// CarrierRTP is the media side of a test carrier: a UDP socket that records every RTP packet Asterisk sends it and,
// once it has heard from Asterisk, answers from the same socket (symmetric RTP) with Payload, 160 bytes per 20 ms.
// Point SIPp's SDP at it with SIPpOptions.MediaPort.
type CarrierRTP struct {
	Port int

	conn    *net.UDPConn
	payload []byte
	pt      uint8

	mu       sync.Mutex
	peer     *net.UDPAddr
	received []RTPPacket

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// RTPPacket is one packet the carrier received.
type RTPPacket struct {
	PT      uint8
	Seq     uint16
	Payload []byte
}

// StartCarrierRTP listens on ip (a free even port) and plays payload (G.711 bytes, looped) with payload type pt.
// It stops at cleanup.
func StartCarrierRTP(t testing.TB, ip string, pt uint8, payload []byte) *CarrierRTP {
	t.Helper()
	if len(payload) < 160 {
		t.Fatalf("carrier RTP payload: %d bytes, want at least one 20 ms frame (160)", len(payload))
	}
	var conn *net.UDPConn
	for tries := 0; tries < 200 && conn == nil; tries++ {
		port := 47000 + 2*int(astRandomUint16()%1000)
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip), Port: port})
		if err == nil {
			conn = c
		}
	}
	if conn == nil {
		t.Fatalf("carrier RTP: no free even port on %s", ip)
	}
	r := &CarrierRTP{Port: conn.LocalAddr().(*net.UDPAddr).Port, conn: conn, payload: payload, pt: pt, stop: make(chan struct{})}
	r.wg.Add(2)
	go r.readLoop() // owned by r: ends when Stop closes the socket
	go r.sendLoop() // owned by r: ends when Stop closes stop
	t.Cleanup(r.Stop)
	return r
}

func (r *CarrierRTP) readLoop() {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n < 12 || buf[0]>>6 != 2 {
			continue // RTCP or junk
		}
		off := 12 + 4*int(buf[0]&0x0f)
		if buf[0]&0x10 != 0 && n >= off+4 {
			off += 4 + 4*int(binary.BigEndian.Uint16(buf[off+2:]))
		}
		if off > n {
			continue
		}
		pt := buf[1] & 0x7f
		if pt >= 72 && pt <= 76 {
			continue // RTCP
		}
		p := RTPPacket{PT: pt, Seq: binary.BigEndian.Uint16(buf[2:]), Payload: append([]byte(nil), buf[off:n]...)}
		r.mu.Lock()
		if r.peer == nil {
			r.peer = from
		}
		r.received = append(r.received, p)
		r.mu.Unlock()
	}
}

func (r *CarrierRTP) sendLoop() {
	defer r.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pkt := make([]byte, 12+160)
	pkt[0], pkt[1] = 0x80, r.pt|0x80 // marker on the first packet
	binary.BigEndian.PutUint32(pkt[8:], 0x5eed1234)
	var seq uint16
	var ts uint32
	off := 0
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		}
		r.mu.Lock()
		peer := r.peer
		r.mu.Unlock()
		if peer == nil {
			continue
		}
		binary.BigEndian.PutUint16(pkt[2:], seq)
		binary.BigEndian.PutUint32(pkt[4:], ts)
		for i := range 160 {
			pkt[12+i] = r.payload[(off+i)%len(r.payload)]
		}
		if _, err := r.conn.WriteToUDP(pkt, peer); err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
		pkt[1] &^= 0x80
		seq++
		ts += 160
		off = (off + 160) % len(r.payload)
	}
}

// Received returns the packets received so far.
func (r *CarrierRTP) Received() []RTPPacket {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RTPPacket(nil), r.received...)
}

// Stop closes the socket and waits for both loops. Safe to call twice.
func (r *CarrierRTP) Stop() {
	r.once.Do(func() {
		close(r.stop)
		r.conn.Close()
		r.wg.Wait()
	})
}
