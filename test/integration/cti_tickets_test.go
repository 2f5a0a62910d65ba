//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// TestCTITicketsBoundToIdentity: a ticket bound to caller 555 and attached to number 8123 is refused for caller 556
// (who gets the unallocated treatment) and for a browser user presenting it, stays valid, and admits 555 into the
// room; a ticket bound to browser user cust-1 is refused for cust-2 and admits cust-1.
func TestCTITicketsBoundToIdentity(t *testing.T) {
	ast := testenv.StartAsterisk(t, testenv.AsteriskOptions{Params: func(p *asteriskconfigs.Params) {
		for _, n := range []string{"555", "556"} {
			p.Phones = append(p.Phones, asteriskconfigs.Phone{Name: n, Password: "pw-" + n + "-0123456789", Transport: asteriskconfigs.TransportUDP})
		}
	}})
	pb := testenv.StartPatchbay(t, ast, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Auth.APIKeys = map[string]config.Secret{"crm": ctiKey}
		c.Limits.PerToken = config.LimitSet{}
	}})
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	room, err := pb.Server.Rooms().Create(ctx, rooms.CreateOptions{Name: "web visit"})
	if err != nil {
		t.Fatal(err)
	}
	tone := filepath.Join(t.TempDir(), "tone.wav")
	if err := audio.WriteWAV(tone, audio.Sine(phone101Hz, 8000, 5*time.Minute, 0.3), 8000); err != nil {
		t.Fatal(err)
	}
	phone := func(n string) *testenv.Baresip {
		p := testenv.StartBaresip(t, testenv.BaresipOptions{Name: n, Registrar: fmt.Sprintf("127.0.0.1:%d", ast.SIPPort), User: n,
			Password: "pw-" + n + "-0123456789", PlayWAV: tone})
		if err := p.WaitRegistered(ctx); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p555, p556 := phone("555"), phone("556")
	browser := func(user string) *signal.Conn {
		cl := auth.Claims{Name: user}
		cl.Subject = user
		tok, err := pb.Server.Signer().Mint(cl, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := signal.Dial(ctx, pb.URL, tok, signal.DialOptions{TLSConfig: pb.TLS})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	issue := func(body map[string]any) string {
		var out struct{ Ticket string }
		if st := apiDo(t, pb, "POST", "/rooms/"+room.ID+"/tickets", ctiKey, body, &out); st != 201 || out.Ticket == "" {
			t.Fatalf("issue ticket %v: %d", body, st)
		}
		return out.Ticket
	}
	joinWith := func(user, ticket string) (*synth.Report, error) {
		return eng.Join(ctx, browser(user), synth.JoinOptions{Ticket: ticket}, synth.CallOptions{Duration: 1500 * time.Millisecond})
	}
	participants := func() []rooms.Participant {
		ps, _ := pb.Server.Rooms().Participants(room.ID)
		return ps
	}

	t.Run("bound to caller 555", func(t *testing.T) {
		tk := issue(map[string]any{"for_caller": "555", "number": "8123", "ttl_seconds": 300})
		// 556 calls the number: refused (the ticket is not theirs), never in the room.
		if err := p556.Dial(ctx, "8123"); err != nil {
			t.Fatal(err)
		}
		ev, err := p556.WaitEvent(ctx, "CALL_CLOSED")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("556 calling 8123: %s", ev.Param)
		if len(participants()) != 0 {
			t.Errorf("caller 556 got into the room: %+v", participants())
		}
		// A browser user presents the ticket: invalid_ticket, and the ticket stays valid.
		_, err = joinWith("mallory", tk)
		if code := signal.ErrorCode(err); code != wire.CodeInvalidTicket {
			t.Errorf("browser presenting 555's ticket: %v; want %s", err, wire.CodeInvalidTicket)
		}
		// 555 calls the number: in the room.
		if err := p555.Dial(ctx, "8123"); err != nil {
			t.Fatal(err)
		}
		if _, err := p555.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
			t.Fatal(err)
		}
		astWaitFor(ctx, t, "555 in the room", func() (bool, string) {
			ps := participants()
			return len(ps) == 1 && ps[0].CallerID == "555" && ps[0].Kind == rooms.KindPhone, fmt.Sprint(ps)
		})
		if err := p555.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := p555.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
		// Used: calling again finds no ticket (and the number maps to no room).
		if err := p555.Dial(ctx, "8123"); err != nil {
			t.Fatal(err)
		}
		if _, err := p555.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
		astWaitFor(ctx, t, "room empty", func() (bool, string) { return len(participants()) == 0, fmt.Sprint(participants()) })
	})

	t.Run("bound to browser user cust-1", func(t *testing.T) {
		tk := issue(map[string]any{"for_user": "cust-1", "role": "customer"})
		if _, err := joinWith("cust-2", tk); signal.ErrorCode(err) != wire.CodeInvalidTicket {
			t.Errorf("cust-2 presenting cust-1's ticket: %v; want %s", err, wire.CodeInvalidTicket)
		}
		rep, err := joinWith("cust-1", tk)
		if err != nil {
			t.Fatalf("cust-1 with its own ticket: %v", err)
		}
		if ev, ok := rep.Event(signal.TypeJoined); !ok || ev.Room != room.ID {
			t.Errorf("cust-1 not joined: %+v", rep.Events)
		}
		if _, err := joinWith("cust-1", tk); !errors.Is(err, synth.ErrRejected) || signal.ErrorCode(err) != wire.CodeInvalidTicket {
			t.Errorf("second use: %v", err)
		}
	})
}
