package signal

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/wire"
)

func TestClientRoundTrip(t *testing.T) {
	e := newEnv(t, nil)
	e.h.onMessage = func(ctx context.Context, s *Session, m Message) {
		switch m.Type {
		case TypeCall: // what the coordinator does: answer, ring, pick up
			for _, r := range []Message{
				{Type: TypeAnswer, CallID: m.CallID, SDP: testOffer},
				{Type: TypeRinging, CallID: m.CallID},
				{Type: TypeAnswered, CallID: m.CallID},
			} {
				if err := s.Send(ctx, r); err != nil {
					t.Errorf("send %s: %v", r.Type, err)
				}
			}
		case TypeDTMF:
			_ = s.Send(ctx, Message{Type: TypeDTMF, CallID: m.CallID, Digits: m.Digits})
		case TypeHangup:
			_ = s.Send(ctx, HangupMessage(m.CallID, wire.CauseNormalClearing))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, e.wsURL, e.token("alice", time.Hour), DialOptions{Origin: e.origin})
	if err != nil {
		t.Fatal(err)
	}
	a := c.Authed()
	if a.User != "alice" || a.Display != "ALICE" || !strings.HasPrefix(a.Session, "s-") ||
		len(a.ICEServers) != 1 || a.ICEServers[0].URLs[0] != "stun:127.0.0.1:3478" {
		t.Fatalf("authed = %+v", a)
	}
	steps := []struct {
		send Message
		want []string // message types expected back, in order
	}{
		{Message{Type: TypeCall, CallID: "c1", To: "600", SDP: testOffer}, []string{TypeAnswer, TypeRinging, TypeAnswered}},
		{Message{Type: TypeDTMF, CallID: "c1", Digits: "5#"}, []string{TypeDTMF}},
		{Message{Type: TypePing}, []string{TypePong}},
		{Message{Type: TypeDTMF, CallID: "c1", Digits: "x"}, []string{TypeError}},
		{Message{Type: TypeHangup, CallID: "c1"}, []string{TypeHangup}},
	}
	for _, st := range steps {
		if err := c.Send(ctx, st.send); err != nil {
			t.Fatal(err)
		}
		for _, w := range st.want {
			m, err := c.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if m.Type != w {
				t.Fatalf("after %s got %+v, want %s", st.send.Type, m, w)
			}
			if m.Type == TypeHangup && (m.Cause != wire.CauseNormalClearing || m.Code != 16) {
				t.Fatalf("hangup %+v", m)
			}
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Recv(ctx); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("Recv after Close = %v, want ErrConnClosed", err)
	}
	select {
	case <-e.h.closed:
	case <-time.After(3 * time.Second):
		t.Fatal("SessionClosed not called")
	}
}

func TestClientDialErrors(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tests := []struct {
		name, token, code string
		opts              DialOptions
	}{
		{"expired", "expired-token", wire.CodeTokenExpired, DialOptions{}},
		{"forged", "a.b.c", wire.CodeUnauthorized, DialOptions{}},
		{"empty", "", wire.CodeUnauthorized, DialOptions{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(ctx, e.wsURL, tc.token, tc.opts)
			if err == nil {
				_ = c.Close()
				t.Fatal("dial succeeded")
			}
			if ErrorCode(err) != tc.code {
				t.Fatalf("err = %v, want code %s", err, tc.code)
			}
		})
	}
	if _, err := Dial(ctx, e.wsURL, e.token("a", time.Hour), DialOptions{Origin: "https://evil.example"}); err == nil ||
		!strings.Contains(err.Error(), "403") {
		t.Fatalf("wrong origin: %v", err)
	}
}

func TestClientServerGoneAndContext(t *testing.T) {
	e := newEnv(t, nil)
	c, err := Dial(context.Background(), e.wsURL, e.token("alice", time.Hour), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Recv(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv with expired ctx = %v", err)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	m, err := c.Recv(ctx)
	if err != nil || m.Error != wire.CodeUnavailable {
		t.Fatalf("got %+v, %v; want the unavailable error", m, err)
	}
	if _, err := c.Recv(ctx); ErrorCode(err) != wire.CodeUnavailable {
		t.Fatalf("Recv after server close = %v, want an error with code unavailable", err)
	}
}
