package signal

import (
	"reflect"
	"testing"

	"github.com/patchbay/patchbay/wire"
)

// TestDecodeCTI: the contact-center messages keep only their own fields and refuse malformed ones with bad_message
// (or invalid_number for a transfer's destination), naming the call.
func TestDecodeCTI(t *testing.T) {
	offer := testOffer
	for _, tc := range []struct {
		name string
		in   Message
		want Message
		code string
	}{
		{"hold", Message{Type: TypeHold, CallID: "c", To: "x"}, Message{Type: TypeHold, CallID: "c"}, ""},
		{"resume", Message{Type: TypeResume, CallID: "c"}, Message{Type: TypeResume, CallID: "c"}, ""},
		{"hold without call", Message{Type: TypeHold}, Message{}, wire.CodeBadMessage},
		{"blind transfer", Message{Type: TypeTransfer, CallID: "c", To: "102", SDP: offer}, Message{Type: TypeTransfer, CallID: "c", To: "102"}, ""},
		{"transfer with caller id", Message{Type: TypeTransfer, CallID: "c", To: "+442079460000", CallerID: "+442071230001"},
			Message{Type: TypeTransfer, CallID: "c", To: "+442079460000", CallerID: "+442071230001"}, ""},
		{"transfer injection", Message{Type: TypeTransfer, CallID: "c", To: "102&PJSIP/x"}, Message{}, wire.CodeInvalidNumber},
		{"attended transfer", Message{Type: TypeTransfer, CallID: "c", Target: "d"}, Message{Type: TypeTransfer, CallID: "c", Target: "d"}, ""},
		{"transfer to itself", Message{Type: TypeTransfer, CallID: "c", Target: "c"}, Message{}, wire.CodeBadMessage},
		{"transfer both", Message{Type: TypeTransfer, CallID: "c", To: "102", Target: "d"}, Message{}, wire.CodeBadMessage},
		{"transfer neither", Message{Type: TypeTransfer, CallID: "c"}, Message{}, wire.CodeBadMessage},
		{"attended with caller id", Message{Type: TypeTransfer, CallID: "c", Target: "d", CallerID: "+442071230001"}, Message{}, wire.CodeBadMessage},
		{"record", Message{Type: TypeRecord, CallID: "c", Action: ActionStart}, Message{Type: TypeRecord, CallID: "c", Action: ActionStart}, ""},
		{"record junk", Message{Type: TypeRecord, CallID: "c", Action: "maybe"}, Message{}, wire.CodeBadMessage},
		{"supervise", Message{Type: TypeSupervise, CallID: "s", Target: "0123abcd", Mode: ModeWhisper, SDP: offer},
			Message{Type: TypeSupervise, CallID: "s", Target: "0123abcd", Mode: ModeWhisper, SDP: offer}, ""},
		{"supervise mode change", Message{Type: TypeSupervise, CallID: "s", Mode: ModeBarge}, Message{Type: TypeSupervise, CallID: "s", Mode: ModeBarge}, ""},
		{"supervise bad mode", Message{Type: TypeSupervise, CallID: "s", Mode: "spy", Target: "x", SDP: offer}, Message{}, wire.CodeBadMessage},
		{"supervise no target", Message{Type: TypeSupervise, CallID: "s", Mode: ModeListen, SDP: offer}, Message{}, wire.CodeBadMessage},
		{"supervise target without sdp", Message{Type: TypeSupervise, CallID: "s", Mode: ModeListen, Target: "x"}, Message{}, wire.CodeBadMessage},
		{"console", Message{Type: TypeConsole, CallID: "ignored"}, Message{Type: TypeConsole}, ""},
		{"moderate mute", Message{Type: TypeModerate, CallID: "j", Action: ActionMute, Target: "p-abc"}, Message{Type: TypeModerate, CallID: "j", Action: ActionMute, Target: "p-abc"}, ""},
		{"moderate end", Message{Type: TypeModerate, CallID: "j", Action: ActionEndRoom, Target: "p-abc"}, Message{Type: TypeModerate, CallID: "j", Action: ActionEndRoom}, ""},
		{"moderate kick without target", Message{Type: TypeModerate, CallID: "j", Action: ActionKick}, Message{}, wire.CodeBadMessage},
		{"moderate junk", Message{Type: TypeModerate, CallID: "j", Action: "ban"}, Message{}, wire.CodeBadMessage},
		{"moderate stop_share", Message{Type: TypeModerate, CallID: "j", Action: ActionStopShare, Target: "p-abc"}, Message{Type: TypeModerate, CallID: "j", Action: ActionStopShare, Target: "p-abc"}, ""},
		{"moderate stop_share without target", Message{Type: TypeModerate, CallID: "j", Action: ActionStopShare}, Message{}, wire.CodeBadMessage},
		{"share start", Message{Type: TypeShare, CallID: "j", Action: ActionStart, Target: "p-abc", SDP: offer}, Message{Type: TypeShare, CallID: "j", Action: ActionStart}, ""},
		{"share stop", Message{Type: TypeShare, CallID: "j", Action: ActionStop}, Message{Type: TypeShare, CallID: "j", Action: ActionStop}, ""},
		{"share junk", Message{Type: TypeShare, CallID: "j", Action: "pause"}, Message{}, wire.CodeBadMessage},
		{"share without call", Message{Type: TypeShare, Action: ActionStart}, Message{}, wire.CodeBadMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(mustJSON(tc.in)))
			if code := ErrorCode(err); code != tc.code {
				t.Fatalf("Decode: %v; want code %q", err, tc.code)
			}
			if tc.code != "" {
				if e, ok := err.(*Error); ok && tc.in.CallID != "" && e.CallID != tc.in.CallID {
					t.Errorf("error names call %q, want %q", e.CallID, tc.in.CallID)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decode = %+v\nwant     %+v", got, tc.want)
			}
		})
	}
}

func TestHeldMessage(t *testing.T) {
	if m := HeldMessage("c", true, ByFar); m.Type != TypeHeld || m.By != ByFar || m.CallID != "c" {
		t.Errorf("held: %+v", m)
	}
	if m := HeldMessage("c", false, ByYou); m.Type != TypeResumed || m.By != ByYou {
		t.Errorf("resumed: %+v", m)
	}
}
