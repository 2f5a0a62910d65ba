package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/patchbay/patchbay/ari"
)

// The baseline is what Asterisk does behind Patchbay, without Patchbay: plain RTP from our own UDP socket into an
// externalMedia channel bridged with the echo extension. Run beside the Patchbay calls in the same window, it
// gives the round-trip time and loss Asterisk alone adds under the same load.

const (
	frameBytes    = 160 // 20 ms of G.711
	frameInterval = 20 * time.Millisecond
	ringSize      = 4096 // send times kept: 80 s of frames, enough for any echo to come back
	maxBurst      = 10   // frames sent at once when the sender fell behind
)

// frameMagic starts every baseline payload, so that an echo is told apart from anything else Asterisk sends.
var frameMagic = [4]byte{'p', 'b', 'b', 'n'}

// plainResult is what one baseline call measured.
type plainResult struct {
	Sent, Echoed uint64
	RTTs         []timedRTT
	Err          error
}

type timedRTT struct {
	At  time.Time // arrival
	RTT time.Duration
}

// plainCaller places baseline calls through its own ARI client (another Stasis app than Patchbay's).
type plainCaller struct {
	ari      *ari.Client
	endpoint string // e.g. Local/600@from-patchbay
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// call sets one plain RTP call up, runs its media until ctx ends and tears it down.
func (p *plainCaller) call(ctx context.Context) plainResult {
	var res plainResult
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		res.Err = fmt.Errorf("baseline: open UDP socket: %w", err)
		return res
	}
	defer udp.Close()
	id := newID()
	bridgeID, emID, farID := "pbbench-br-"+id, "pbbench-em-"+id, "pbbench-far-"+id
	a := p.ari
	// Teardown runs whatever happened, with its own deadline: a call must leave nothing behind in Asterisk.
	defer func() {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = a.Channel(farID).Hangup(tctx, "normal")
		_ = a.Channel(emID).Hangup(tctx, "normal")
		_ = a.Bridge(bridgeID).Delete(tctx)
	}()
	sub := a.Subscribe(ari.Filter{Name: "baseline " + id, IDs: []string{farID},
		Types: []string{ari.TypeStasisStart, ari.TypeChannelDestroyed}, QueueSize: 16})
	defer sub.Close()

	setup, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := a.Bridges().Create(setup, ari.BridgeRequest{ID: bridgeID, Type: "mixing", Name: "patchbay-bench"}); err != nil {
		res.Err = fmt.Errorf("baseline: %w", err)
		return res
	}
	em, err := a.Channels().ExternalMedia(setup, ari.ExternalMediaRequest{App: a.Application(),
		ExternalHost: udp.LocalAddr().String(), Format: "ulaw", ChannelID: emID})
	if err != nil {
		res.Err = fmt.Errorf("baseline: %w", err)
		return res
	}
	dst, err := net.ResolveUDPAddr("udp4", em.LocalAddrPort())
	if err != nil {
		res.Err = fmt.Errorf("baseline: externalMedia channel %s gave no usable RTP address %q: %w", emID, em.LocalAddrPort(), err)
		return res
	}
	if _, err := a.Channels().Originate(setup, ari.OriginateRequest{Endpoint: p.endpoint, App: a.Application(),
		AppArgs: "baseline", ChannelID: farID, Formats: "ulaw"}); err != nil {
		res.Err = fmt.Errorf("baseline: %w", err)
		return res
	}
	if err := waitStasis(setup, sub, farID); err != nil {
		res.Err = fmt.Errorf("baseline: %w", err)
		return res
	}
	if err := a.Bridge(bridgeID).AddChannel(setup, ari.AddChannelOptions{}, emID, farID); err != nil {
		res.Err = fmt.Errorf("baseline: %w", err)
		return res
	}
	return runPlainMedia(ctx, udp, dst)
}

func waitStasis(ctx context.Context, sub *ari.Subscription, id string) error {
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("channel %s never entered Stasis: %w", id, ctx.Err())
		case ev, ok := <-sub.Events():
			if !ok {
				return errors.New("event subscription closed")
			}
			switch e := ev.(type) {
			case *ari.StasisStart:
				if e.Channel.ID == id {
					return nil
				}
			case *ari.ChannelDestroyed:
				if e.Channel.ID == id {
					return fmt.Errorf("channel %s destroyed before answering: %s", id, e.CauseTxt)
				}
			}
		}
	}
}

// runPlainMedia sends one stamped frame per 20 ms of wall clock to dst until ctx ends, and matches what comes
// back. After ctx ends it keeps listening 200 ms for echoes in flight, so every frame not echoed was lost.
func runPlainMedia(ctx context.Context, udp *net.UDPConn, dst *net.UDPAddr) plainResult {
	var (
		mu     sync.Mutex
		sentAt [ringSize]time.Time
		res    plainResult
		wg     sync.WaitGroup
	)
	stopRecv := make(chan struct{})
	wg.Add(1)
	go func() { // receiver: ends when the socket's deadline passes after stopRecv
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, err := udp.Read(buf)
			now := time.Now()
			if err != nil {
				select {
				case <-stopRecv:
					return
				default:
				}
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // e.g. ICMP port unreachable before Asterisk is listening
			}
			pl, ok := rtpPayload(buf[:n])
			if !ok || len(pl) < 8 || [4]byte(pl[:4]) != frameMagic {
				continue
			}
			seq := binary.BigEndian.Uint32(pl[4:8])
			mu.Lock()
			if t := sentAt[seq%ringSize]; !t.IsZero() {
				res.RTTs = append(res.RTTs, timedRTT{At: now, RTT: now.Sub(t)})
				res.Echoed++
				sentAt[seq%ringSize] = time.Time{} // a duplicate is not a second echo
			}
			mu.Unlock()
		}
	}()

	var ssrc [4]byte
	_, _ = rand.Read(ssrc[:])
	pkt := make([]byte, 12+frameBytes)
	pkt[0] = 0x80
	pkt[1] = 0x80 // marker, PT 0 (PCMU)
	copy(pkt[8:12], ssrc[:])
	for i := 12 + 8; i < len(pkt); i++ {
		pkt[i] = 0xd5 // μ-law near silence
	}
	copy(pkt[12:], frameMagic[:])
	tick := time.NewTicker(frameInterval)
	begin := time.Now()
	var n uint32
	var sendErr error
loop:
	for {
		due := uint32(time.Since(begin)/frameInterval) + 1
		if due-n > maxBurst {
			n = due - maxBurst // too far behind: skip frames, as a clocked source would
		}
		for ; n < due; n++ {
			binary.BigEndian.PutUint16(pkt[2:], uint16(n))
			binary.BigEndian.PutUint32(pkt[4:], n*frameBytes)
			binary.BigEndian.PutUint32(pkt[16:], n)
			mu.Lock()
			sentAt[n%ringSize] = time.Now()
			mu.Unlock()
			if _, err := udp.WriteToUDP(pkt, dst); err != nil {
				sendErr = err
				break loop
			}
			res.Sent++
			pkt[1] = 0x00 // marker only on the first frame
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			break loop
		}
	}
	tick.Stop()
	close(stopRecv)
	_ = udp.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	wg.Wait()
	if sendErr != nil {
		res.Err = fmt.Errorf("baseline: send RTP to %s: %w", dst, sendErr)
	}
	return res
}

// rtpPayload returns the payload of an RTP packet (after CSRCs and any header extension, before padding).
func rtpPayload(b []byte) ([]byte, bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return nil, false
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < off+4 {
			return nil, false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	}
	end := len(b)
	if b[0]&0x20 != 0 {
		end -= int(b[end-1])
	}
	if off >= end {
		return nil, false
	}
	return b[off:end], true
}
