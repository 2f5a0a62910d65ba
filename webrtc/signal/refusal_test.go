package signal

import (
	"context"
	"testing"
	"time"

	"github.com/patchbay/patchbay/wire"
)

// TestRefusedOpeningEndsWithHangup pins the documented contract (docs/signalling.md, "Errors that end a call"):
// a "call", "join" or "supervise" with an offer that the signalling server refuses is answered with its error and
// then a hangup for the call_id, whatever the code (as the call layer's refusals are); a bad message about
// anything else gets the error alone.
func TestRefusedOpeningEndsWithHangup(t *testing.T) {
	tests := []struct {
		name   string
		frame  string
		code   string
		cause  string // "": no hangup may follow
		callID string
	}{
		{"call with a caller_id that is not E.164", `{"type":"call","call_id":"c1","to":"+14155550100","caller_id":"0044","sdp":"v=0\nm=audio 9"}`,
			wire.CodeBadMessage, wire.CauseInterworking, "c1"},
		{"call without sdp", `{"type":"call","call_id":"c1","to":"600"}`, wire.CodeBadMessage, wire.CauseInterworking, "c1"},
		{"call with a bad number", `{"type":"call","call_id":"c1","to":"6 0","sdp":"v=0\nm=audio 9"}`,
			wire.CodeInvalidNumber, wire.CauseInvalidNumberFormat, "c1"},
		{"join with room and number", `{"type":"join","call_id":"j1","room":"r","number":"8200","sdp":"v=0\nm=audio 9"}`,
			wire.CodeBadMessage, wire.CauseInterworking, "j1"},
		{"join without audio", `{"type":"join","call_id":"j1","room":"r","sdp":"v=0\nm=video 9"}`,
			wire.CodeUnsupportedMedia, wire.CauseIncompatibleDest, "j1"},
		{"supervise offer without audio", `{"type":"supervise","call_id":"s1","target":"abc","mode":"listen","sdp":"v=0\nm=video 9"}`,
			wire.CodeUnsupportedMedia, wire.CauseIncompatibleDest, "s1"},
		{"supervise offer with a bad mode", `{"type":"supervise","call_id":"s1","target":"abc","mode":"spy","sdp":"v=0\nm=audio 9"}`,
			wire.CodeBadMessage, wire.CauseInterworking, "s1"},
		// Not opening a call: no hangup.
		{"supervise mode change with a bad mode", `{"type":"supervise","call_id":"s1","mode":"spy"}`, wire.CodeBadMessage, "", "s1"},
		{"answer without audio", `{"type":"answer","call_id":"c1","sdp":"v=0\nm=video 9"}`, wire.CodeUnsupportedMedia, "", "c1"},
		{"transfer to a bad number", `{"type":"transfer","call_id":"c1","to":"1&2"}`, wire.CodeInvalidNumber, "", "c1"},
		{"call without call_id", `{"type":"call","to":"600","sdp":"v=0\nm=audio 9"}`, wire.CodeBadMessage, "", ""},
	}
	e := newEnv(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws := e.authedRaw("alice")
			defer ws.Close()
			if err := ws.WriteMessage(1, []byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			m := readMsg(t, ws)
			if m.Type != TypeError || m.Error != tc.code || m.CallID != tc.callID {
				t.Fatalf("got %+v, want error %s on %q", m, tc.code, tc.callID)
			}
			if want := tc.cause != "" && wire.EndsCall(tc.code); m.Final != want {
				t.Errorf("final = %v, want %v", m.Final, want)
			}
			if tc.cause != "" {
				h := readMsg(t, ws)
				if h.Type != TypeHangup || h.CallID != tc.callID || h.Cause != tc.cause || h.Code != wire.CauseCode(tc.cause) {
					t.Fatalf("after the refusal got %+v, want hangup %s", h, tc.cause)
				}
			}
			writeJSON(t, ws, Message{Type: TypePing})
			if m := readMsg(t, ws); m.Type != TypePong {
				t.Fatalf("got %+v, want pong (nothing else about the call)", m)
			}
		})
	}
}

// TestCallIDReuseIsDuplicate pins "call_id unique per connection": opening a call with a call_id already used on
// the connection (live, ended, refused, an incoming call's or a resumed one's) gets duplicate_call, not final, no
// hangup, and never reaches the call layer; the call that owns the call_id is untouched.
func TestCallIDReuseIsDuplicate(t *testing.T) {
	call := func(id string) Message { return Message{Type: TypeCall, CallID: id, To: "600", SDP: testOffer} }
	e := newEnv(t, nil)
	e.h.onMessage = func(ctx context.Context, s *Session, m Message) {
		switch {
		case m.Type == TypeCall && m.CallID == "ended":
			_ = s.Send(ctx, HangupMessage(m.CallID, wire.CauseNormalClearing))
		case m.Type == TypeDTMF && m.Digits == "9": // ring this tab
			_ = s.Send(ctx, Message{Type: TypeIncoming, CallID: "in-1", From: "100", SDP: testOffer})
		}
	}
	ws := e.authedRaw("alice")
	defer ws.Close()
	expectHandled := func(typ, id string) {
		t.Helper()
		select {
		case m := <-e.h.msgs:
			if m.Type != typ || m.CallID != id {
				t.Fatalf("handler got %+v, want %s %s", m, typ, id)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("%s %s never reached the handler", typ, id)
		}
	}
	expectDuplicate := func(id string) {
		t.Helper()
		m := readMsg(t, ws)
		if m.Type != TypeError || m.Error != wire.CodeDuplicateCall || m.CallID != id || m.Final {
			t.Fatalf("got %+v, want a non-final duplicate_call on %s", m, id)
		}
		writeJSON(t, ws, Message{Type: TypePing})
		if m := readMsg(t, ws); m.Type != TypePong {
			t.Fatalf("got %+v after duplicate_call, want pong (no hangup)", m)
		}
	}

	writeJSON(t, ws, call("live"))
	expectHandled(TypeCall, "live")
	writeJSON(t, ws, call("live"))
	expectDuplicate("live")
	// A reuse the decoder refuses must not end the live call in the client (no final error, no hangup).
	writeJSON(t, ws, Message{Type: TypeCall, CallID: "live", To: "6&0", SDP: testOffer})
	expectDuplicate("live")
	writeJSON(t, ws, Message{Type: TypeJoin, CallID: "live", Room: "r", SDP: testOffer})
	expectDuplicate("live")

	writeJSON(t, ws, call("ended"))
	expectHandled(TypeCall, "ended")
	if m := readMsg(t, ws); m.Type != TypeHangup || m.CallID != "ended" {
		t.Fatalf("got %+v, want the hangup of ended", m)
	}
	writeJSON(t, ws, call("ended"))
	expectDuplicate("ended")

	writeJSON(t, ws, Message{Type: TypeCall, CallID: "refused", To: "6 0", SDP: testOffer})
	for _, want := range []string{TypeError, TypeHangup} {
		if m := readMsg(t, ws); m.Type != want {
			t.Fatalf("got %+v, want %s", m, want)
		}
	}
	writeJSON(t, ws, call("refused"))
	expectDuplicate("refused")

	writeJSON(t, ws, Message{Type: TypeDTMF, CallID: "live", Digits: "9"})
	expectHandled(TypeDTMF, "live")
	if m := readMsg(t, ws); m.Type != TypeIncoming {
		t.Fatalf("got %+v, want incoming", m)
	}
	writeJSON(t, ws, call("in-1"))
	expectDuplicate("in-1")

	// A supervise with only a mode is about an existing call: never a duplicate.
	writeJSON(t, ws, Message{Type: TypeSupervise, CallID: "live", Mode: ModeBarge})
	expectHandled(TypeSupervise, "live")
}
