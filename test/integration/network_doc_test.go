//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/webrtc/media"
)

// docMessages reads every JSON example of docs/signalling.md, by section and type.
func docMessages(t *testing.T) map[string]map[string][]map[string]json.RawMessage {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "docs", "signalling.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]map[string]json.RawMessage{}
	section, in := "", false
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "## "):
			section = strings.TrimPrefix(l, "## ")
		case l == "```json":
			in = true
		case l == "```":
			in = false
		case in && strings.TrimSpace(l) != "":
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("doc example %s: %v", l, err)
			}
			var typ string
			_ = json.Unmarshal(m["type"], &typ)
			if out[section] == nil {
				out[section] = map[string][]map[string]json.RawMessage{}
			}
			out[section][typ] = append(out[section][typ], m)
		}
	}
	return out
}

// shape is a message's keys with the JSON kind of each value.
func shape(m map[string]json.RawMessage) string {
	var s []string
	for k, v := range m {
		kind := "string"
		switch t := strings.TrimSpace(string(v)); {
		case strings.HasPrefix(t, "["):
			kind = "array"
		case strings.HasPrefix(t, "{"):
			kind = "object"
		case t == "true" || t == "false":
			kind = "bool"
		case strings.HasPrefix(t, `"`):
		default:
			kind = "number"
		}
		s = append(s, k+":"+kind)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

// TestNetworkDocProtocol drives a real Patchbay with the browser→server examples of docs/signalling.md (token,
// SDP and ids replaced by real ones) and checks that every reply has the shape of the doc's example of that type:
// the same fields, of the same kinds.
func TestNetworkDocProtocol(t *testing.T) {
	doc := docMessages(t)
	e := newNetworkEnv(t, networkOptions{turn: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	serverEx := doc["Server → browser"]
	browserEx := doc["Browser → server"]
	if len(serverEx) < 8 || len(browserEx) < 8 {
		t.Fatalf("too few examples: %d server, %d browser types", len(serverEx), len(browserEx))
	}
	matches := func(got map[string]json.RawMessage) {
		t.Helper()
		var typ string
		_ = json.Unmarshal(got["type"], &typ)
		exs := serverEx[typ]
		if len(exs) == 0 {
			t.Errorf("the server sent %q, which the doc does not show: %s", typ, shape(got))
			return
		}
		for _, ex := range exs {
			if shape(ex) == shape(got) {
				return
			}
		}
		var want []string
		for _, ex := range exs {
			want = append(want, shape(ex))
		}
		t.Errorf("server %s has shape %s; the doc shows %v", typ, shape(got), want)
	}
	dial := func() *websocket.Conn {
		d := websocket.Dialer{TLSClientConfig: e.pb.TLS}
		ws, _, err := d.DialContext(ctx, e.pb.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		return ws
	}
	send := func(ws *websocket.Conn, ex map[string]json.RawMessage, set map[string]any) {
		t.Helper()
		m := map[string]any{}
		for k, v := range ex {
			m[k] = v
		}
		for k, v := range set {
			m[k] = v
		}
		if err := ws.WriteJSON(m); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(ws *websocket.Conn) map[string]json.RawMessage {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		var m map[string]json.RawMessage
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("read: %v", err)
		}
		return m
	}
	recvType := func(ws *websocket.Conn, typ string) map[string]json.RawMessage {
		t.Helper()
		for {
			m := recv(ws)
			matches(m)
			var got string
			_ = json.Unmarshal(m["type"], &got)
			if got == typ {
				return m
			}
		}
	}

	tok := e.pb.Token(t, "alice", "ext")
	ws := dial()
	send(ws, browserEx["auth"][0], map[string]any{"token": tok})
	authed := recvType(ws, "authed")
	var resumeToken, session string
	_ = json.Unmarshal(authed["resume_token"], &resumeToken)
	_ = json.Unmarshal(authed["session"], &session)

	send(ws, browserEx["ping"][0], nil)
	recvType(ws, "pong")

	// A call to 600 with a real offer; the doc's call_id is kept.
	pc := docPeer(t)
	offer := localOffer(t, pc, nil)
	send(ws, browserEx["call"][0], map[string]any{"sdp": offer})
	ans := recvType(ws, "answer")
	var answerSDP, callID string
	_ = json.Unmarshal(ans["sdp"], &answerSDP)
	_ = json.Unmarshal(ans["call_id"], &callID)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answerSDP}); err != nil {
		t.Fatal(err)
	}
	for _, ex := range browserEx["candidate"] {
		send(ws, ex, nil) // a foreign candidate and end-of-candidates: accepted, no reply
	}
	send(ws, browserEx["dtmf"][0], nil)
	// The ICE restart the doc shows: a new ufrag, answered with "answer".
	restart := localOffer(t, pc, &webrtc.OfferOptions{ICERestart: true})
	send(ws, browserEx["offer"][0], map[string]any{"sdp": restart})
	recvType(ws, "answer")

	// Resume: drop the socket, come back with the token: the call is given back.
	ws.UnderlyingConn().Close()
	ws2 := dial()
	send(ws2, browserEx["auth"][1], map[string]any{"token": tok, "resume": resumeToken})
	back := recvType(ws2, "authed")
	var resumed []string
	_ = json.Unmarshal(back["resumed"], &resumed)
	if len(resumed) != 1 || resumed[0] != callID {
		t.Errorf("resumed %v, want [%s]", resumed, callID)
	}
	send(ws2, browserEx["hangup"][0], nil)
	waitActive(t, e.pb, 0, 10*time.Second)

	// A destination the token may not dial: final error, then exactly one hangup.
	pc2 := docPeer(t)
	send(ws2, browserEx["call"][0], map[string]any{"sdp": localOffer(t, pc2, nil), "to": "+14155550100", "call_id": "doc-refused"})
	er := recvType(ws2, "error")
	var final bool
	_ = json.Unmarshal(er["final"], &final)
	if !final {
		t.Errorf("refused call: error without final: %s", shape(er))
	}
	recvType(ws2, "hangup")
	// An unknown type: bad_message without a call_id.
	send(ws2, map[string]json.RawMessage{"type": json.RawMessage(`"foo"`)}, nil)
	recvType(ws2, "error")
	_ = session
}

func docPeer(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(media.PCMU.Codec(), webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	return pc
}

func localOffer(t *testing.T, pc *webrtc.PeerConnection, o *webrtc.OfferOptions) string {
	t.Helper()
	offer, err := pc.CreateOffer(o)
	if err != nil {
		t.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-g
	return pc.LocalDescription().SDP
}
