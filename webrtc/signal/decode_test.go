package signal

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/patchbay/patchbay/wire"
	"github.com/pion/webrtc/v4"
)

func TestDecode(t *testing.T) {
	offer := testOffer
	tests := []struct {
		name   string
		in     string
		want   Message // compared with String() plus the fields below
		code   string  // expected error code, "" for success
		callID string  // expected CallID on the error
	}{
		{name: "auth", in: `{"type":"auth","token":"abc"}`, want: Message{Type: TypeAuth, Token: "abc"}},
		{name: "auth without token", in: `{"type":"auth"}`, code: wire.CodeUnauthorized},
		{name: "auth token too long", in: `{"type":"auth","token":"` + strings.Repeat("a", MaxTokenBytes+1) + `"}`, code: wire.CodeUnauthorized},
		{name: "ping", in: `{"type":"ping","call_id":"zz"}`, want: Message{Type: TypePing}},
		{name: "call", in: mustJSON(Message{Type: TypeCall, CallID: "a_B-9", To: "+4930123", SDP: offer}), want: Message{Type: TypeCall, CallID: "a_B-9", To: "+4930123", SDP: offer}},
		{name: "call sip uri", in: mustJSON(Message{Type: TypeCall, CallID: "c", To: "sip:bob@example.com", SDP: offer}), want: Message{Type: TypeCall, CallID: "c", To: "sip:bob@example.com", SDP: offer}},
		{name: "call with caller_id", in: mustJSON(Message{Type: TypeCall, CallID: "c", To: "+14155550100", CallerID: "+442071230002", SDP: offer}), want: Message{Type: TypeCall, CallID: "c", To: "+14155550100", CallerID: "+442071230002", SDP: offer}},
		{name: "call caller_id national", in: mustJSON(Message{Type: TypeCall, CallID: "c", To: "600", CallerID: "02071230002", SDP: offer}), code: wire.CodeBadMessage, callID: "c"},
		{name: "call caller_id with spaces", in: mustJSON(Message{Type: TypeCall, CallID: "c", To: "600", CallerID: "+44 20 7123 0002", SDP: offer}), code: wire.CodeBadMessage, callID: "c"},
		{name: "call caller_id injection", in: mustJSON(Message{Type: TypeCall, CallID: "c", To: "600", CallerID: "+4420&PJSIP/x", SDP: offer}), code: wire.CodeBadMessage, callID: "c"},
		{name: "call caller_id too long", in: mustJSON(Message{Type: TypeCall, CallID: "c", To: "600", CallerID: "+1234567890123456", SDP: offer}), code: wire.CodeBadMessage, callID: "c"},
		{name: "caller_id dropped from dtmf", in: mustJSON(Message{Type: TypeDTMF, CallID: "c", Digits: "1", CallerID: "+442071230002"}), want: Message{Type: TypeDTMF, CallID: "c", Digits: "1"}},
		{name: "call without to", in: mustJSON(Message{Type: TypeCall, CallID: "c", SDP: offer}), code: wire.CodeInvalidNumber, callID: "c"},
		{name: "call to too long", in: mustJSON(Message{Type: TypeCall, CallID: "c", To: strings.Repeat("1", 65), SDP: offer}), code: wire.CodeInvalidNumber, callID: "c"},
		{name: "call to with newline", in: mustJSON(Message{Type: TypeCall, CallID: "c", To: "600\n", SDP: offer}), code: wire.CodeInvalidNumber, callID: "c"},
		{name: "call to with comma", in: mustJSON(Message{Type: TypeCall, CallID: "c", To: "600,r", SDP: offer}), code: wire.CodeInvalidNumber, callID: "c"},
		{name: "call to with ${}", in: mustJSON(Message{Type: TypeCall, CallID: "c", To: "${EXTEN}", SDP: offer}), code: wire.CodeInvalidNumber, callID: "c"},
		{name: "call without sdp", in: `{"type":"call","call_id":"c","to":"600"}`, code: wire.CodeBadMessage, callID: "c"},
		{name: "call sdp not sdp", in: `{"type":"call","call_id":"c","to":"600","sdp":"hello"}`, code: wire.CodeBadMessage, callID: "c"},
		{name: "call sdp too big", in: mustJSON(Message{Type: TypeCall, CallID: "c", To: "600", SDP: offer + strings.Repeat("a=x\r\n", MaxSDPBytes/5)}), code: wire.CodeBadMessage, callID: "c"},
		{name: "call without call_id", in: mustJSON(Message{Type: TypeCall, To: "600", SDP: offer}), code: wire.CodeBadMessage},
		{name: "call_id with slash", in: mustJSON(Message{Type: TypeHangup, CallID: "../x"}), code: wire.CodeBadMessage},
		{name: "call_id 64", in: mustJSON(Message{Type: TypeHangup, CallID: strings.Repeat("z", 64)}), want: Message{Type: TypeHangup, CallID: strings.Repeat("z", 64)}},
		{name: "call_id unicode", in: `{"type":"hangup","call_id":"cällé"}`, code: wire.CodeBadMessage},
		{name: "answer", in: mustJSON(Message{Type: TypeAnswer, CallID: "c", SDP: offer}), want: Message{Type: TypeAnswer, CallID: "c", SDP: offer}},
		{name: "answer without sdp", in: `{"type":"answer","call_id":"c"}`, code: wire.CodeBadMessage, callID: "c"},
		{name: "reject", in: `{"type":"reject","call_id":"c","cause":"x"}`, want: Message{Type: TypeReject, CallID: "c"}},
		{name: "hangup", in: `{"type":"hangup","call_id":"c"}`, want: Message{Type: TypeHangup, CallID: "c"}},
		{name: "dtmf", in: `{"type":"dtmf","call_id":"c","digits":"0123456789*#ABCD"}`, want: Message{Type: TypeDTMF, CallID: "c", Digits: "0123456789*#ABCD"}},
		{name: "dtmf lowercase", in: `{"type":"dtmf","call_id":"c","digits":"a"}`, code: wire.CodeBadMessage, callID: "c"},
		{name: "dtmf empty", in: `{"type":"dtmf","call_id":"c"}`, code: wire.CodeBadMessage, callID: "c"},
		{name: "candidate", in: `{"type":"candidate","call_id":"c","candidate":{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
			want: Message{Type: TypeCandidate, CallID: "c", Candidate: &ICECandidate{Candidate: "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host"}}},
		{name: "candidate null", in: `{"type":"candidate","call_id":"c","candidate":null}`, want: Message{Type: TypeCandidate, CallID: "c"}},
		{name: "candidate empty", in: `{"type":"candidate","call_id":"c","candidate":{"candidate":""}}`, want: Message{Type: TypeCandidate, CallID: "c"}},
		{name: "candidate junk", in: `{"type":"candidate","call_id":"c","candidate":{"candidate":"hello"}}`, code: wire.CodeBadMessage, callID: "c"},
		{name: "candidate long mid", in: `{"type":"candidate","call_id":"c","candidate":{"candidate":"candidate:1","sdpMid":"` + strings.Repeat("m", 65) + `"}}`, code: wire.CodeBadMessage, callID: "c"},
		{name: "candidate index overflow", in: `{"type":"candidate","call_id":"c","candidate":{"candidate":"candidate:1","sdpMLineIndex":70000}}`, code: wire.CodeBadMessage},
		{name: "server-only type", in: `{"type":"incoming","call_id":"c"}`, code: wire.CodeBadMessage, callID: "c"},
		{name: "no type", in: `{"call_id":"c"}`, code: wire.CodeBadMessage, callID: "c"},
		{name: "trailing garbage", in: `{"type":"ping"} x`, code: wire.CodeBadMessage},
		{name: "empty", in: ``, code: wire.CodeBadMessage},
		{name: "number", in: `42`, code: wire.CodeBadMessage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.in))
			if tc.code != "" {
				pe, ok := err.(*Error)
				if !ok {
					t.Fatalf("got %+v, %v; want *Error %s", got, err, tc.code)
				}
				if pe.Code != tc.code || pe.CallID != tc.callID || pe.Message == "" {
					t.Fatalf("got error %+v, want code %s call_id %q", pe, tc.code, tc.callID)
				}
				if ErrorCode(err) != tc.code {
					t.Fatalf("ErrorCode = %q", ErrorCode(err))
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if got.String() != tc.want.String() || got.To != tc.want.To || got.SDP != tc.want.SDP ||
				got.Digits != tc.want.Digits || got.Token != tc.want.Token || (got.Candidate == nil) != (tc.want.Candidate == nil) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if got.Candidate != nil && got.Candidate.Candidate != tc.want.Candidate.Candidate {
				t.Fatalf("candidate %+v", got.Candidate)
			}
		})
	}
}

func mustJSON(m Message) string {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestCauses(t *testing.T) {
	tests := []struct {
		cause string
		code  int
	}{
		{wire.CauseNormalClearing, 16}, {wire.CauseUserBusy, 17}, {wire.CauseNoAnswer, 19}, {wire.CauseCallRejected, 21},
		{wire.CauseUnallocatedNumber, 1}, {wire.CauseAnsweredElsewhere, 26}, {wire.CauseTemporaryFailure, 41},
		{wire.CauseCongestion, 34}, {wire.CauseInterworking, 127},
	}
	for _, tc := range tests {
		if got := wire.CauseCode(tc.cause); got != tc.code {
			t.Errorf("wire.CauseCode(%s) = %d, want %d", tc.cause, got, tc.code)
		}
		if got := wire.CauseName(tc.code); got != tc.cause {
			t.Errorf("wire.CauseName(%d) = %s, want %s", tc.code, got, tc.cause)
		}
	}
	if wire.CauseCode("nonsense") != 31 || wire.CauseName(9999) != wire.CauseNormalUnspecified {
		t.Error("unknown causes must map to normal_unspecified (31)")
	}
	if m := HangupMessage("c", wire.CauseUserBusy); m.Code != 17 || m.Cause != "user_busy" || m.Type != TypeHangup {
		t.Errorf("HangupMessage = %+v", m)
	}
}

func TestErrorMessageRoundTrip(t *testing.T) {
	m := ErrorMessage("c1", wire.CodeUnknownCall, "no such call")
	err := m.Err()
	if ErrorCode(err) != wire.CodeUnknownCall || !strings.Contains(err.Error(), "c1") {
		t.Fatalf("Err() = %v", err)
	}
	if (Message{Type: TypePong}).Err() != nil {
		t.Fatal("pong is not an error")
	}
	if s := (Message{Type: TypeAuth, Token: "secret-token"}).String(); strings.Contains(s, "secret") {
		t.Fatalf("String() leaks the token: %s", s)
	}
}

// The media layer converts candidates without copying; this breaks the build
// if the field set ever drifts from pion's.
func TestICECandidateMatchesPion(t *testing.T) {
	mid, idx := "0", uint16(0)
	c := ICECandidate{Candidate: "candidate:1", SDPMid: &mid, SDPMLineIndex: &idx}
	p := webrtc.ICECandidateInit(c)
	if p.Candidate != c.Candidate || *p.SDPMid != "0" {
		t.Fatal(p)
	}
}

func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"type":"auth","token":"x.y.z"}`,
		`{"type":"ping"}`,
		mustJSON(Message{Type: TypeCall, CallID: "c1", To: "600", SDP: testOffer}),
		`{"type":"candidate","call_id":"c","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
		`{"type":"candidate","call_id":"c","candidate":null}`,
		`{"type":"dtmf","call_id":"c","digits":"12#"}`,
		`{"type":"hangup","call_id":"c"}`, `{"type":"reject","call_id":"c"}`,
		mustJSON(Message{Type: TypeAnswer, CallID: "c", SDP: testOffer}),
		`{"type":"call","call_id":"c","to":"500&SIP/x"}`, `{`, `[]`, `null`, `"x"`, "\xff",
		`{"type":"join","call_id":"j","room":"r","number":"1","sdp":"v=0\nm=audio 9"}`, `{"type":"join","call_id":"j","ticket":"a b"}`,
		`{"type":"transfer","call_id":"c","to":"102","target":"c2"}`, `{"type":"transfer","call_id":"c","target":"c"}`,
		`{"type":"supervise","call_id":"s","mode":"barge","target":"x"}`, `{"type":"supervise","call_id":"s","mode":"listen","target":"x","sdp":"v=0\nm=video 9"}`,
		`{"type":"moderate","call_id":"j","action":"kick"}`, `{"type":"record","call_id":"c","action":"pause"}`,
		`{"type":"offer","call_id":"c","sdp":"v=1"}`, `{"type":"console","call_id":"x"}`,
		`{"type":"share","call_id":"j","action":"start"}`, `{"type":"share","call_id":"j","action":"nope"}`, `{"type":"moderate","call_id":"j","action":"stop_share","target":"p-1"}`,
		`{"type":"auth","token":"t","resume":"` + strings.Repeat("r", 300) + `"}`, `{"type":"candidate","call_id":"c","candidate":{"candidate":"x"}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			pe, ok := err.(*Error)
			if !ok || pe.Code == "" || pe.Message == "" {
				t.Fatalf("error %v is not a coded *Error", err)
			}
			if !slices.Contains(wire.Codes, pe.Code) {
				t.Fatalf("error code %q is not a wire code", pe.Code)
			}
			if pe.CallID != "" && !validCallID(pe.CallID) {
				t.Fatalf("error carries invalid call_id %q", pe.CallID)
			}
			return
		}
		// Invariants of every accepted message.
		switch m.Type {
		case TypeAuth, TypePing, TypeConsole: // messages about no call
			if m.CallID != "" {
				t.Fatalf("%s kept a call_id", m.Type)
			}
		default:
			if !validCallID(m.CallID) {
				t.Fatalf("accepted call_id %q", m.CallID)
			}
		}
		if m.Digits != "" && !ValidDigits(m.Digits) {
			t.Fatalf("accepted digits %q", m.Digits)
		}
		if len(m.To) > MaxToLen || strings.ContainsAny(m.To, dialMeta+" \r\n\t") {
			t.Fatalf("accepted to %q", m.To)
		}
		if len(m.SDP) > MaxSDPBytes {
			t.Fatalf("accepted %d-byte SDP", len(m.SDP))
		}
		if m.From != "" || m.User != "" || m.Error != "" || m.ICEServers != nil {
			t.Fatalf("server-only fields survived: %+v", m)
		}
		// Decoding is stable: what we accepted, re-encoded, decodes the same.
		b, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := Decode(b)
		if err != nil {
			t.Fatalf("re-decode of accepted %s failed: %v", b, err)
		}
		b2, _ := Encode(m2)
		if string(b) != string(b2) {
			t.Fatalf("not stable:\n%s\n%s", b, b2)
		}
	})
}

func TestQualityMessageEncoding(t *testing.T) {
	b, err := Encode(QualityMessage("c1", wire.QualityOneWayAudio, wire.ToBrowser))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"quality","call_id":"c1","issue":"one_way_audio","direction":"to_browser"}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	if _, err := Decode(b); err == nil {
		t.Error("a browser may not send quality: it is server→browser only")
	}
}
