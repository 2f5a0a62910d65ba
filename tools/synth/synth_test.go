package synth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// pipe is an in-memory Signaller; the test plays Patchbay on the other end.
type pipe struct {
	toClient, toServer chan signal.Message
}

func newPipe() *pipe {
	return &pipe{toClient: make(chan signal.Message, 64), toServer: make(chan signal.Message, 64)}
}

func (p *pipe) Send(ctx context.Context, m signal.Message) error {
	select {
	case p.toServer <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pipe) Recv(ctx context.Context) (signal.Message, error) {
	select {
	case m := <-p.toClient:
		return m, nil
	case <-ctx.Done():
		return signal.Message{}, ctx.Err()
	}
}

// fakeServer answers with a real media.API peer and echoes the audio back.
type fakeServer struct {
	api  *media.API
	p    *pipe
	wg   sync.WaitGroup
	mu   sync.Mutex
	seen []signal.Message
}

func newFakeServer(t testing.TB) *fakeServer {
	// The stand-in server moves audio with pion's tracks (PionMedia): these tests are about the caller.
	api, err := media.NewAPI(media.Options{ICEAddress: "127.0.0.1", IncludeLoopback: true, PionMedia: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	return &fakeServer{api: api, p: newPipe()}
}

func (s *fakeServer) record(m signal.Message) {
	s.mu.Lock()
	s.seen = append(s.seen, m)
	s.mu.Unlock()
}

func (s *fakeServer) got(typ string) (signal.Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.seen {
		if m.Type == typ {
			return m, true
		}
	}
	return signal.Message{}, false
}

// echo copies the browser's audio back to it until the peer closes.
func (s *fakeServer) echo(ctx context.Context, p *media.Peer) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tr, err := p.RemoteTrack(ctx)
		if err != nil {
			return
		}
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			_ = p.LocalTrack().WriteRTP(pkt)
		}
	}()
}

// serveOutgoing handles one "call" to an echo; it ends on the client's hangup.
func (s *fakeServer) serveOutgoing(ctx context.Context) {
	var peer *media.Peer
	defer func() {
		if peer != nil {
			_ = peer.Close()
		}
		s.wg.Wait()
	}()
	for {
		var m signal.Message
		select {
		case m = <-s.p.toServer:
		case <-ctx.Done():
			return
		}
		s.record(m)
		switch m.Type {
		case signal.TypeCall:
			p, answer, err := s.api.Answer(ctx, m.SDP, media.PeerOptions{})
			if err != nil {
				s.p.toClient <- signal.ErrorMessage(m.CallID, media.ErrorCode(err), err.Error())
				continue
			}
			peer = p
			s.echo(ctx, p)
			s.p.toClient <- signal.Message{Type: signal.TypeAnswer, CallID: m.CallID, SDP: answer}
			s.p.toClient <- signal.Message{Type: signal.TypeRinging, CallID: m.CallID}
			s.p.toClient <- signal.Message{Type: signal.TypeAnswered, CallID: m.CallID}
		case signal.TypeCandidate:
			if peer != nil {
				_ = peer.AddICECandidate(webrtc.ICECandidateInit(*m.Candidate))
			}
		case signal.TypeHangup:
			return
		}
	}
}

func newEngine(t *testing.T) *Engine {
	e, err := NewEngine(EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestCallEcho(t *testing.T) {
	before := runtime.NumGoroutine()
	srv := newFakeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { srv.serveOutgoing(ctx); close(done) }()

	rep, err := newEngine(t).Call(ctx, srv.p, CallOptions{To: "600", Duration: 1500 * time.Millisecond,
		DTMF: "12#", DTMFAfter: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	<-done
	t.Logf("answer %v connected %v first packet %v first echo %v sent %d received %d lost %d rtt %+v heard %+v",
		rep.AnswerAfter, rep.ConnectedAfter, rep.FirstPacketAfter, rep.FirstEchoAfter, rep.Sent, rep.Received,
		rep.Lost, rep.RTT, rep.Heard)
	if rep.AnswerAfter <= 0 || rep.ConnectedAfter <= 0 || rep.FirstEchoAfter <= 0 {
		t.Fatal("setup times missing")
	}
	if rep.Sent < 50 || rep.Received < rep.Sent*8/10 || rep.Loss > 0.05 {
		t.Fatalf("sent %d received %d loss %.3f", rep.Sent, rep.Received, rep.Loss)
	}
	if rep.RTT.Count < int(rep.Received)*9/10 || rep.RTT.P50 > 50*time.Millisecond {
		t.Fatalf("echo RTT %+v of %d received", rep.RTT, rep.Received)
	}
	if !rep.Heard.Detected(5) {
		t.Fatalf("own 1000 Hz tone not heard back: %+v", rep.Heard)
	}
	for _, typ := range []string{"answer", "ringing", "answered"} {
		if _, ok := rep.Event(typ); !ok {
			t.Fatalf("event %s not recorded: %+v", typ, rep.Events)
		}
	}
	if rep.HungUpBy != "local" {
		t.Fatalf("HungUpBy %q", rep.HungUpBy)
	}
	if m, ok := srv.got(signal.TypeDTMF); !ok || m.Digits != "12#" {
		t.Fatalf("server got dtmf %+v", m)
	}
	if _, ok := srv.got(signal.TypeCandidate); !ok {
		t.Fatal("no candidate trickled")
	}
	_ = srv.api.Close() // the shared API's own goroutines (socket reader, RTCP loop, pion's mux) end with it
	waitGoroutines(t, before)
}

func waitGoroutines(t *testing.T, before int) {
	t.Helper()
	// pion keeps a few package-level goroutines; allow a small slack.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines left, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestCallRefused(t *testing.T) {
	srv := newFakeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go srv.serveOutgoing(ctx)
	// A server that only knows Opus would refuse; emulate with an error reply.
	go func() {
		m := <-srv.p.toServer
		srv.p.toClient <- signal.ErrorMessage(m.CallID, "unsupported_media", "no")
	}()
	_, err := newEngine(t).Call(ctx, srv.p, CallOptions{To: "600"})
	if !errors.Is(err, ErrRejected) || signal.ErrorCode(err) != "unsupported_media" {
		t.Fatalf("err = %v", err)
	}
}

func TestReceiveIncoming(t *testing.T) {
	srv := newFakeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, offer, err := srv.api.Offer(ctx, media.PCMA, media.PeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	srv.p.toClient <- signal.Message{Type: signal.TypeIncoming, CallID: "in-1", From: "101", SDP: offer}

	// The server plays 440 Hz A-law, then hangs up.
	go func() {
		m := <-srv.p.toServer
		if m.Type != signal.TypeAnswer || m.CallID != "in-1" {
			t.Errorf("server got %v, want answer", m)
			return
		}
		if err := p.SetAnswer(m.SDP); err != nil {
			t.Error(err)
			return
		}
		tone := newEngine(t).tone(media.PCMA, 440, 0.3)
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2}}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := range 75 {
			<-tick.C
			pkt.Payload = tone[i*160%len(tone):][:160]
			pkt.SequenceNumber++
			pkt.Timestamp += 160
			_ = p.LocalTrack().WriteRTP(pkt)
		}
		srv.p.toClient <- signal.HangupMessage("in-1", "normal_clearing")
	}()
	rep, err := newEngine(t).Receive(ctx, srv.p, CallOptions{Duration: -1, ExpectHz: 440})
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if !rep.Incoming || rep.Law != media.PCMA || rep.HungUpBy != "remote" || rep.Cause != "normal_clearing" {
		t.Fatalf("report %+v", rep)
	}
	if !rep.Heard.Detected(5) {
		t.Fatalf("440 Hz not heard: %+v", rep.Heard)
	}
}

func TestStampRoundTrip(t *testing.T) {
	for _, n := range []uint32{0, 1, 0x5a5a5a, 1<<stampBits - 1} {
		p := make([]byte, 160)
		for i := range p {
			p[i] = byte(i * 7)
		}
		stamp(p, n)
		if got := unstamp(p); got != n {
			t.Fatalf("unstamp = %x, want %x", got, n)
		}
	}
	var r sendRing
	a, b := make([]byte, 160), make([]byte, 160)
	stamp(a, 5)
	stamp(b, 6)
	now := time.Now()
	r.put(5, a, now)
	if _, ok := r.match(b); ok {
		t.Fatal("matched a payload never sent")
	}
	if at, ok := r.match(a); !ok || !at.Equal(now) {
		t.Fatal("sent payload not matched")
	}
	if _, ok := r.match(a); ok {
		t.Fatal("matched twice")
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := Summarize(d)
	if s.Count != 100 || s.Min != time.Millisecond || s.P50 != 50*time.Millisecond || s.P99 != 99*time.Millisecond || s.Max != 100*time.Millisecond {
		t.Fatalf("%+v", s)
	}
	if Summarize(nil).Count != 0 {
		t.Fatal("empty")
	}
}
