//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/internal/relay"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// relaySig is an in-memory signalling pipe between the synthetic caller and
// the miniature Patchbay this test builds from media, relay and ari.
type relaySig struct{ toClient, toServer chan signal.Message }

func (p *relaySig) Send(ctx context.Context, m signal.Message) error {
	select {
	case p.toServer <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *relaySig) Recv(ctx context.Context) (signal.Message, error) {
	select {
	case m := <-p.toClient:
		return m, nil
	case <-ctx.Done():
		return signal.Message{}, ctx.Err()
	}
}

// relayCallServer serves one call: browser offer → media peer, relay socket,
// externalMedia(ulaw) and the dialled Local channel in one mixing bridge.
type relayCallServer struct {
	t      *testing.T
	ari    *ari.Client
	api    *media.API
	ports  *relay.Ports
	target string // dialplan endpoint, e.g. Local/600@internal
	sig    *relaySig

	answerReady time.Duration // offer received → answer sent
	stats       relay.Stats
}

func (s *relayCallServer) serve(ctx context.Context) error {
	var m signal.Message
	select {
	case m = <-s.sig.toServer:
	case <-ctx.Done():
		return ctx.Err()
	}
	if m.Type != signal.TypeCall {
		return fmt.Errorf("first message %s, want call", m.Type)
	}
	t0 := time.Now()
	peer, answer, err := s.api.Answer(ctx, m.SDP, media.PeerOptions{})
	if err != nil {
		return fmt.Errorf("answer offer: %w", err)
	}
	defer peer.Close()
	sock, err := s.ports.Acquire()
	if err != nil {
		return err
	}
	defer sock.Release()
	r, err := relay.New(sock, peer, relay.Options{PayloadType: peer.Law().PayloadType()})
	if err != nil {
		return err
	}
	defer r.Close()

	// Clean up Asterisk resources even when ctx is already done.
	cleanup := context.WithoutCancel(ctx)
	em, err := s.ari.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{
		App: s.ari.Application(), ExternalHost: sock.ExternalHost(), Format: peer.Law().Format()})
	if err != nil {
		return err
	}
	defer s.ari.Channel(em.Channel.ID).Hangup(cleanup, "normal")
	ast, err := netip.ParseAddrPort(em.LocalAddrPort())
	if err != nil {
		return fmt.Errorf("externalMedia local address %q: %w", em.LocalAddrPort(), err)
	}
	r.SetAsterisk(ast)
	if err := r.Start(); err != nil {
		return err
	}
	br, err := s.ari.Bridges().Create(ctx, ari.BridgeRequest{ID: ari.NewID()})
	if err != nil {
		return err
	}
	defer s.ari.Bridge(br.ID).Delete(cleanup)

	s.sig.toClient <- signal.Message{Type: signal.TypeAnswer, CallID: m.CallID, SDP: answer}
	s.answerReady = time.Since(t0)

	farID := ari.NewID()
	sub := s.ari.Subscribe(ari.Filter{Name: "far " + farID, IDs: []string{farID},
		Types: []string{ari.TypeStasisStart, ari.TypeChannelDestroyed}, QueueSize: 16})
	defer sub.Close()
	if _, err := s.ari.Channels().Originate(ctx, ari.OriginateRequest{Endpoint: s.target,
		App: s.ari.Application(), ChannelID: farID, Formats: peer.Law().Format()}); err != nil {
		return err
	}
	defer s.ari.Channel(farID).Hangup(cleanup, "normal")
	if err := relayWaitStasis(ctx, sub, farID); err != nil {
		return err
	}
	if err := s.ari.Bridge(br.ID).AddChannel(ctx, ari.AddChannelOptions{}, em.Channel.ID, farID); err != nil {
		return err
	}
	s.sig.toClient <- signal.Message{Type: signal.TypeAnswered, CallID: m.CallID}

	for {
		select {
		case m := <-s.sig.toServer:
			switch m.Type {
			case signal.TypeCandidate:
				if m.Candidate != nil {
					_ = peer.AddICECandidate(webrtc.ICECandidateInit(*m.Candidate))
				}
			case signal.TypeHangup:
				s.stats = r.Stats()
				return nil
			}
		case <-peer.Done():
			return errors.New("peer connection died")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func relayWaitStasis(ctx context.Context, sub *ari.Subscription, id string) error {
	for {
		select {
		case ev := <-sub.Events():
			switch e := ev.(type) {
			case *ari.StasisStart:
				if e.Channel.ID == id {
					return nil
				}
			case *ari.ChannelDestroyed:
				return fmt.Errorf("far channel destroyed before StasisStart: %s", e.CauseTxt)
			}
		case <-ctx.Done():
			return fmt.Errorf("wait for far channel StasisStart: %w", ctx.Err())
		}
	}
}

// TestRelayThroughAsterisk: a pion caller offers to the shared media API; the
// relay bridges its audio into Asterisk via externalMedia(ulaw). Through
// Echo (600) it hears its own 1000 Hz tone; from 601 it hears 440 Hz.
func TestRelayThroughAsterisk(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cl, err := ari.New(ari.Config{URL: a.ARIURL(), Username: a.ARIUser, Password: a.ARIPassword, Application: a.App})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopARI := context.WithCancel(ctx)
	ariDone := make(chan struct{})
	go func() { defer close(ariDone); _ = cl.Run(runCtx) }()
	defer func() { stopARI(); <-ariDone }()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatalf("ARI events socket: %v", err)
	}

	api, err := media.NewAPI(media.Options{ICEAddress: "127.0.0.1", IncludeLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	pionAPI, err := media.NewAPI(media.Options{ICEAddress: "127.0.0.1", IncludeLoopback: true, PionMedia: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pionAPI.Close()
	ports, err := relay.NewPorts("127.0.0.1", 46000, 46099, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer ports.Close()
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}

	// Whatever runs now (the ARI client, the media APIs) is the baseline; the calls must leave nothing beyond it.
	baseline := goroutineBaseline()
	tests := []struct {
		name, target string
		expectHz     float64
		echo         bool
		pion         bool // pion's track path instead of the lean one
	}{
		{"echo 600", "Local/600@internal", 1000, true, false},
		{"tone 601", "Local/601@internal", 440, false, false},
		{"echo 600 on pion's path", "Local/600@internal", 1000, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sig := &relaySig{toClient: make(chan signal.Message, 16), toServer: make(chan signal.Message, 64)}
			srv := &relayCallServer{t: t, ari: cl, api: api, ports: ports, target: tc.target, sig: sig}
			if tc.pion {
				srv.api = pionAPI
			}
			srvErr := make(chan error, 1)
			go func() { srvErr <- srv.serve(ctx) }()

			rep, err := eng.Call(ctx, sig, synth.CallOptions{To: "x", ToneHz: 1000, ExpectHz: tc.expectHz,
				Duration: 3 * time.Second})
			if err != nil {
				t.Fatalf("synthetic call: %v", err)
			}
			if err := <-srvErr; err != nil {
				t.Fatalf("server side: %v", err)
			}
			t.Logf("%s: answer ready %v; client: answer %v connected %v first packet %v first echo %v; "+
				"sent %d received %d lost %d; rtt %+v; heard %.0f Hz %+v; relay %+v",
				tc.name, srv.answerReady, rep.AnswerAfter, rep.ConnectedAfter, rep.FirstPacketAfter,
				rep.FirstEchoAfter, rep.Sent, rep.Received, rep.Lost, rep.RTT, rep.HeardHz, rep.Heard, srv.stats)
			if !rep.Heard.Detected(10) {
				t.Fatalf("did not hear %.0f Hz: %+v", tc.expectHz, rep.Heard)
			}
			if rep.Received < rep.Sent*8/10 {
				t.Fatalf("received %d of %d", rep.Received, rep.Sent)
			}
			if srv.stats.ToAsterisk.Packets == 0 || srv.stats.ToBrowser.Packets == 0 || srv.stats.Lean == tc.pion {
				t.Fatalf("relay stats %+v", srv.stats)
			}
			if st := srv.stats.RTCP; !tc.pion && (st.FromBrowser.Packets == 0 || st.ToBrowser.Packets == 0 || st.Undecryptable != 0) {
				t.Fatalf("lean path stats %+v", st)
			}
			if tc.echo {
				// Bit-exact echo: every echoed frame matches a sent one.
				if rep.RTT.Count < int(rep.Received)*8/10 || rep.FirstEchoAfter == 0 {
					t.Fatalf("echo not bit-exact: %d of %d frames matched", rep.RTT.Count, rep.Received)
				}
			}
		})
	}
	assertGoroutinesBack(t, baseline)
}
