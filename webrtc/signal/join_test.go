package signal

import (
	"strings"
	"testing"

	"github.com/patchbay/patchbay/wire"
)

func TestDecodeJoin(t *testing.T) {
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
	for _, tc := range []struct {
		name, frame, code string
	}{
		{"room", `{"type":"join","call_id":"j1","room":"sales-1","sdp":"` + strings.ReplaceAll(sdp, "\r\n", `\r\n`) + `","from":"x"}`, ""},
		{"number", `{"type":"join","call_id":"j1","number":"+442079460000","sdp":"` + strings.ReplaceAll(sdp, "\r\n", `\r\n`) + `"}`, ""},
		{"ticket", `{"type":"join","call_id":"j1","ticket":"abc.def","sdp":"` + strings.ReplaceAll(sdp, "\r\n", `\r\n`) + `"}`, ""},
		{"none", `{"type":"join","call_id":"j1","sdp":"v=0"}`, wire.CodeBadMessage},
		{"two", `{"type":"join","call_id":"j1","room":"a","number":"8001","sdp":"v=0"}`, wire.CodeBadMessage},
		{"room injection", `{"type":"join","call_id":"j1","room":"a&PJSIP/x","sdp":"v=0"}`, wire.CodeBadMessage},
		{"number injection", `{"type":"join","call_id":"j1","number":"8001&PJSIP/x","sdp":"v=0"}`, wire.CodeInvalidNumber},
		{"ticket spaces", `{"type":"join","call_id":"j1","ticket":"a b","sdp":"v=0"}`, wire.CodeBadMessage},
		{"no sdp", `{"type":"join","call_id":"j1","room":"a"}`, wire.CodeBadMessage},
		{"no call_id", `{"type":"join","room":"a","sdp":"v=0"}`, wire.CodeBadMessage},
	} {
		m, err := Decode([]byte(tc.frame))
		if tc.code == "" {
			if err != nil || m.Type != TypeJoin || m.From != "" || m.SDP == "" {
				t.Errorf("%s: %+v %v", tc.name, m, err)
			}
			continue
		}
		if ErrorCode(err) != tc.code {
			t.Errorf("%s: error %v, want %s", tc.name, err, tc.code)
		}
	}
}
