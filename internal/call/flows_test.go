package call

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/patchbay/patchbay/ari/aritest"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Happy paths, one per flow: what the browser, the phone or the API client sees, and that nothing is left.

// heardEcho checks a synthetic call heard its own tone back.
func heardEcho(t *testing.T, rep *synth.Report) {
	t.Helper()
	if rep.FirstEchoAfter == 0 || rep.Received == 0 || !rep.Heard.Detected(3) {
		t.Errorf("no echo heard: sent %d received %d first echo after %v heard %+v", rep.Sent, rep.Received, rep.FirstEchoAfter, rep.Heard)
	}
}

// A browser calls an extension, reached three ways (browser_out.go): the echo extension its own channel runs in
// the dialplan (no bridge), a phone's PJSIP endpoint and any other extension through a Local channel (bridged).
// It hears its echo, is told of the answer, and the far end is dialled (or the dialplan entered) only once the
// browser's media flows.
func TestBrowserCallsExtension(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	h.fake.Endpoint("PJSIP/101", aritest.Ring(0).Answer(30*time.Millisecond))
	alice := h.browser("alice")
	presents := map[string]string{"CALLERID(num)": browserCLI, "CALLERID(name)": "Alice"}
	for _, tc := range []struct {
		to, endpoint, start string // endpoint "": no far leg (the browser's channel runs the extension)
		vars                map[string]string
		emVars              map[string]string // the browser's channel, at its creation
	}{
		{to: "600", start: "/channels/*/continue", emVars: presents},
		{to: "101", endpoint: "PJSIP/101", start: "/channels/*/dial", vars: map[string]string{
			"CALLERID(num)": browserCLI, "CONNECTEDLINE(num,i)": browserCLI, "CALLERID(name)": "Alice", "CONNECTEDLINE(name,i)": "Alice"},
			emVars: presents},
		{to: "602", endpoint: "Local/602@from-patchbay", start: "/channels/*/dial", vars: map[string]string{
			"CALLERID(num)": browserCLI, "CALLERID(name)": "Alice"}},
	} {
		t.Run(tc.to, func(t *testing.T) {
			from := len(h.fake.Requests())
			startedAtAnswer := atomic.Int32{}
			startedAtAnswer.Store(-1)
			before := h.fake.Count("POST", tc.start)
			startedAt := h.firstSeen("POST", tc.start)
			c := alice.call(tc.to, synth.CallOptions{Duration: 600 * time.Millisecond}, func(m signal.Message) {
				if m.Type == signal.TypeAnswer {
					// The browser has not applied the answer yet: no media can have flowed, so nothing may start.
					startedAtAnswer.Store(int32(h.fake.Count("POST", tc.start) - before))
				}
			})
			rep, err := c.result(t, patience)
			if err != nil {
				t.Fatalf("call: %v (events %+v)", err, rep.Events)
			}
			heardEcho(t, rep)
			if _, ok := rep.Event(signal.TypeAnswered); !ok {
				t.Errorf("no answered event: %+v", rep.Events)
			}
			if n := startedAtAnswer.Load(); n != 0 {
				t.Errorf("far end reached (%d × %s) before the browser could send media", n, tc.start)
			}
			// The browser's first packet leaves once its peer is connected; the far end may be reached only after.
			if at, connected := startedAt(), rep.Start.Add(rep.ConnectedAfter); at.IsZero() || at.Before(connected) {
				t.Errorf("far end reached at %v, the browser's media could flow only from %v", at, connected)
			}
			h.assertClean()
			t.Logf("requests: %v", h.steps(from))
			reqs := h.fake.Requests()[from:]
			var creates, starts, bridges []aritest.Request
			for _, r := range reqs {
				switch ok := pathMatch(tc.start, r.Path); {
				case r.Method == "POST" && r.Path == "/channels/externalMedia":
					// The dialplan (600) and the phone's connected line (101) see the token's identity; a Local
					// channel's far leg presents it itself (602).
					if v := vars(r); !mapsEqual(v, tc.emVars) {
						t.Errorf("the browser's channel is made presenting %v, want %v", v, tc.emVars)
					}
				case r.Method == "POST" && strings.HasSuffix(r.Path, "/variable") && strings.Contains(r.Path, ".em."):
					t.Errorf("the browser's channel is given a variable after its creation: %s %s", r.Path, r.Body)
				case r.Method == "POST" && r.Path == "/channels/create":
					creates = append(creates, r)
				case r.Method == "POST" && r.Path == "/bridges":
					bridges = append(bridges, r)
				case r.Method == "POST" && ok:
					starts = append(starts, r)
				}
			}
			if len(starts) != 1 {
				t.Errorf("%d × %s, want 1", len(starts), tc.start)
			}
			if tc.endpoint == "" {
				if len(creates)+len(bridges) != 0 || starts[0].Query.Get("context") != "from-patchbay" || starts[0].Query.Get("extension") != tc.to {
					t.Errorf("dialplan extension: creates %d bridges %d, continue %v", len(creates), len(bridges), starts[0].Query)
				}
				return
			}
			if len(creates) != 1 || len(bridges) != 1 {
				t.Fatalf("%d channels and %d bridges created, want the far leg and its bridge", len(creates), len(bridges))
			}
			cr := creates[0]
			if ep := cr.Query.Get("endpoint"); ep != tc.endpoint || cr.Query.Get("formats") != "ulaw" {
				t.Errorf("far leg: endpoint %q formats %q", ep, cr.Query.Get("formats"))
			}
			if v := vars(cr); !mapsEqual(v, tc.vars) {
				t.Errorf("far leg presents %v, want %v", v, tc.vars)
			}
			if !strings.Contains(starts[0].Path, ".far.") {
				t.Errorf("dialled %s, want the far leg", starts[0].Path)
			}
		})
	}
}

// A browser whose media never reaches the server gets no_audio within the no-media timeout, and the far end is
// never dialled.
func TestBrowserWithoutMediaGetsNoAudio(t *testing.T) {
	defer goleak.VerifyNone(t)
	const noMedia = time.Second
	h := newHarness(t, withOptions(func(o *Options) { o.NoMediaTimeout = noMedia }))
	defer h.close()
	alice := h.browser("alice")
	id := alice.rawCall("602")
	alice.wait(id, signal.TypeAnswer, patience)
	start := time.Now()
	errMsg, hangup := alice.ended(id, patience)
	// The no-media timer, not ICE's own timeouts (seconds more) nor the setup timeout, ended it: a busy machine
	// may add some scheduling delay, never take it away.
	if took := time.Since(start); took < noMedia-200*time.Millisecond || took > noMedia+3*time.Second {
		t.Errorf("no_audio %v after the answer, want about the %v no-media timeout", took, noMedia)
	}
	if errMsg == nil || errMsg.Error != wire.CodeNoAudio || !errMsg.Final || hangup.Cause != wire.CauseMediaTimeout {
		t.Errorf("got error %+v, hangup %+v; want a final no_audio then media_timeout", errMsg, hangup)
	}
	if n := h.fake.Count("POST", "/channels/*/dial") + h.fake.Count("POST", "/channels/*/continue"); n != 0 {
		t.Errorf("far end reached %d times for a browser without media", n)
	}
	h.assertClean()
}

// An outside call presents the token's caller ID: on the trunk leg (CALLERID and CONNECTEDLINE, which PJSIP puts in
// From and P-Asserted-Identity) and on the browser's own channel (copied into the trunk's connected line by the
// bridge).
func TestBrowserCallsPSTNWithCallerID(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	h.fake.Endpoint("PJSIP/+44", aritest.Ring(0).Answer(50*time.Millisecond))
	alice := h.browser("alice")
	rep, err := alice.call("0044"+pstnNumber[3:], synth.CallOptions{Duration: 600 * time.Millisecond}).result(t, 10*time.Second)
	if err != nil {
		t.Fatalf("call: %v (events %+v)", err, rep.Events)
	}
	heardEcho(t, rep)
	for _, typ := range []string{signal.TypeRinging, signal.TypeAnswered} {
		if _, ok := rep.Event(typ); !ok {
			t.Errorf("no %s event: %+v", typ, rep.Events)
		}
	}
	h.assertClean()
	creates := h.requests("POST", "/channels/create")
	if len(creates) != 1 {
		t.Fatalf("%d channels created, want the trunk leg only", len(creates))
	}
	if ep := creates[0].Query.Get("endpoint"); ep != "PJSIP/"+pstnNumber+"@pstn" {
		t.Errorf("trunk leg endpoint %q", ep)
	}
	want := map[string]string{"CALLERID(num)": browserCLI, "CONNECTEDLINE(num,i)": browserCLI, "CALLERID(name)": "Alice", "CONNECTEDLINE(name,i)": "Alice"}
	if v := vars(creates[0]); !mapsEqual(v, want) {
		t.Errorf("trunk leg variables %v, want %v", v, want)
	}
	set := map[string]string{}
	for _, r := range h.requests("POST", "/channels/*/variable") {
		if strings.Contains(r.Path, ".em.") {
			set[r.Query.Get("variable")] = r.Query.Get("value")
		}
	}
	if set["CALLERID(num)"] != browserCLI || set["CALLERID(name)"] != "Alice" {
		t.Errorf("the browser's channel presents %v", set)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// A phone calls a browser user with two tabs open: both ring, the first to answer gets the call, the other hears
// answered_elsewhere; the phone is answered only once the browser's media flows.
func TestPhoneCallsBrowserUser(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	tab1, tab2 := h.browser("alice"), h.browser("alice")
	answeredAt := h.firstSeen("POST", "/channels/*/answer")
	phone := h.fake.Incoming(aritest.Call{Endpoint: "PJSIP/101", CallerNumber: "101", CallerName: "Bob", Args: []string{"inbound", "alice"}})
	in1 := tab1.wait("", signal.TypeIncoming, patience)
	in2 := tab2.wait("", signal.TypeIncoming, patience)
	if in1.CallID != in2.CallID || in1.From != "101" || in1.FromName != "Bob" || in1.SDP == "" {
		t.Errorf("incoming: %+v / %+v", in1, in2)
	}
	c := tab1.receive(synth.CallOptions{Duration: 800 * time.Millisecond})
	rep, err := c.result(t, patience)
	if err != nil {
		t.Fatalf("answer: %v (events %+v)", err, rep.Events)
	}
	heardEcho(t, rep)
	if _, h2 := tab2.ended(in2.CallID, patience); h2.Cause != wire.CauseAnsweredElsewhere {
		t.Errorf("second tab: hangup %+v, want answered_elsewhere", h2)
	}
	if at, connected := answeredAt(), rep.Start.Add(rep.ConnectedAfter); at.IsZero() || at.Before(connected) {
		t.Errorf("phone answered at %v, the browser's media could flow only from %v", at, connected)
	}
	h.assertClean()
	if hs := h.requests("DELETE", "/channels/"+phone); len(hs) != 1 {
		t.Errorf("phone hung up %d times", len(hs))
	}
}

// An offer that passes the signalling server's checks but that the media layer cannot parse is refused as the
// signalling server refuses a malformed one: a plain bad_message (not final: the code ends no call), then the
// call's hangup with interworking (127), and nothing is made in Asterisk.
func TestBrowserOfferThatCannotBeParsed(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	b := h.browser("alice")
	b.send(signal.Message{Type: signal.TypeCall, CallID: "bad-sdp", To: "600",
		SDP: "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nthis is not SDP\r\n"})
	errMsg, hangup := b.ended("bad-sdp", patience)
	if errMsg == nil || errMsg.Error != wire.CodeBadMessage || errMsg.Final {
		t.Errorf("error %+v; want a bad_message without final", errMsg)
	}
	if hangup.Cause != wire.CauseInterworking || hangup.Code != 127 {
		t.Errorf("hangup %+v; want interworking (127)", hangup)
	}
	if n := h.fake.Count("POST", "/channels/externalMedia"); n != 0 {
		t.Errorf("%d externalMedia channels made for an offer that cannot be parsed", n)
	}
	if hs := b.messages("bad-sdp"); len(hs) != 2 {
		t.Errorf("browser got %s; want the error and the hangup only", describeMsgs(hs))
	}
	h.assertClean()
}

// A browser that answers but never connects media: the phone is never answered, the browser gets no_audio.
func TestPhoneCallsBrowserWithoutMedia(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t, withOptions(func(o *Options) { o.NoMediaTimeout = time.Second }))
	defer h.close()
	tab := h.browser("alice")
	phone := h.fake.Incoming(aritest.Call{Endpoint: "PJSIP/101", CallerNumber: "101", Args: []string{"inbound", "7001"}})
	in := tab.wait("", signal.TypeIncoming, patience)
	tab.send(signal.Message{Type: signal.TypeAnswer, CallID: in.CallID, SDP: deadAnswer(t, in.SDP)})
	errMsg, hangup := tab.ended(in.CallID, patience)
	if errMsg == nil || errMsg.Error != wire.CodeNoAudio || !errMsg.Final || hangup.Cause != wire.CauseMediaTimeout {
		t.Errorf("got error %+v, hangup %+v; want a final no_audio then media_timeout", errMsg, hangup)
	}
	if n := h.fake.Count("POST", "/channels/*/answer"); n != 0 {
		t.Errorf("phone answered %d times though no media ever flowed", n)
	}
	h.assertClean()
	if hs := h.requests("DELETE", "/channels/"+phone); len(hs) != 1 {
		t.Errorf("phone hung up %d times", len(hs))
	}
}

func roomClaims(user, room, role string) auth.Claims {
	cl := claimsFor(user)
	cl.Room, cl.Role = room, role
	return cl
}

// A browser joins a room with a room token; a phone arrives on a number the store maps to the room. The browser
// sees the phone come and go; the phone is answered and mixed in the room's bridge.
func TestRoomWithBrowserAndMappedPhone(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	ctx := context.Background()
	if _, err := h.rooms.Create(ctx, rooms.CreateOptions{ID: "sales"}); err != nil {
		t.Fatal(err)
	}
	if err := h.numbers.Map(ctx, "+442079460000", "sales", time.Hour); err != nil {
		t.Fatal(err)
	}
	alice := h.browserWith(roomClaims("alice", "sales", rooms.RoleParticipant))
	c := alice.join(synth.JoinOptions{Room: "sales"}, synth.CallOptions{Duration: 1500 * time.Millisecond})
	joined := alice.wait(c.id, signal.TypeJoined, patience)
	if joined.Room != "sales" || joined.Participant == nil || !joined.Participant.You || len(joined.Participants) != 1 {
		t.Errorf("joined: %+v", joined)
	}
	phone := h.fake.Incoming(aritest.Call{Endpoint: "PJSIP/trunk", CallerNumber: "+15550001111", Args: []string{"did", "+442079460000"}})
	h.eventually("the browser sees the phone join", patience, func() bool {
		for _, m := range alice.messages(c.id) {
			if m.Type == signal.TypeRoom && m.Event == signal.RoomEventJoined && m.Participant != nil && m.Participant.Kind == rooms.KindPhone && m.Participant.CallerID == "+15550001111" {
				return true
			}
		}
		return false
	})
	time.Sleep(500 * time.Millisecond) // the browser hears the room while the phone is up
	ch, _ := h.fake.Channel(phone)
	bridges := h.fake.Bridges()
	if ch.State != "Up" || len(bridges) != 1 || !slices.Contains(bridges[0].Channels, phone) || len(bridges[0].Channels) != 2 {
		t.Errorf("phone %s state %s; bridges %+v", phone, ch.State, bridges)
	}
	if err := h.fake.HangupFromFar(phone, aritest.CauseNormalClearing); err != nil {
		t.Fatal(err)
	}
	h.eventually("the browser sees the phone leave", patience, func() bool {
		for _, m := range alice.messages(c.id) {
			if m.Type == signal.TypeRoom && m.Event == signal.RoomEventLeft && m.Participant != nil && m.Participant.Kind == rooms.KindPhone {
				return true
			}
		}
		return false
	})
	rep, err := c.result(t, patience)
	if err != nil {
		t.Fatalf("join: %v (events %+v)", err, rep.Events)
	}
	if rep.Received == 0 {
		t.Errorf("the browser heard nothing from the room (the fake echoes while another member is up)")
	}
	h.assertClean()
}

// A softphone dials an outside number: the trunk leg presents the phone's configured caller ID; the trunk's
// ringing and answer reach the phone; the trunk hanging up hangs the phone up.
func TestSoftphoneCallsPSTN(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	h.fake.Endpoint("PJSIP/+44", aritest.Ring(0).Answer(50*time.Millisecond))
	phone := h.fake.Incoming(aritest.Call{Endpoint: "PJSIP/101", CallerNumber: "101", Args: []string{"outbound", pstnNumber}})
	h.eventually("the phone is answered once the trunk answers", patience, func() bool {
		ch, _ := h.fake.Channel(phone)
		return ch.State == "Up"
	})
	trunks := h.channelsOf("trunk")
	if len(trunks) != 1 || trunks[0].State != "Up" {
		t.Fatalf("trunk legs %+v", trunks)
	}
	cr := h.requests("POST", "/channels/create")
	want := map[string]string{"CALLERID(num)": phoneCallerID, "CONNECTEDLINE(num,i)": phoneCallerID}
	if len(cr) != 1 || cr[0].Query.Get("endpoint") != "PJSIP/"+pstnNumber+"@pstn" || !mapsEqual(vars(cr[0]), want) {
		t.Errorf("trunk leg request %+v vars %v", cr, vars(cr[0]))
	}
	if n := h.fake.Count("POST", "/channels/"+phone+"/ring"); n != 1 {
		t.Errorf("phone told of ringing %d times", n)
	}
	if err := h.fake.HangupFromFar(trunks[0].ID, aritest.CauseNormalClearing); err != nil {
		t.Fatal(err)
	}
	h.assertClean()
	if hs := h.requests("DELETE", "/channels/"+phone); len(hs) != 1 || hs[0].Query.Get("reason") != "normal" {
		t.Errorf("phone hang-ups %+v", hs)
	}
}

// Click-to-call into a room: the far end is dialled with the key's caller ID and, once answered, is a member of
// the room; the API's state follows it.
func TestAPICallToRoom(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	ctx := context.Background()
	if _, err := h.rooms.Create(ctx, rooms.CreateOptions{ID: "support"}); err != nil {
		t.Fatal(err)
	}
	h.fake.Endpoint("Local/600", aritest.Ring(0).Answer(50*time.Millisecond))
	res, err := h.m.Originate(ctx, OriginateRequest{APIKey: "crm", To: "600", Room: "support"})
	if err != nil {
		t.Fatal(err)
	}
	if res.State != StateDialing || res.CallerID != apiCallerID || res.Room != "support" {
		t.Errorf("originate result %+v", res)
	}
	h.eventually("the answered call is in the room", patience, func() bool {
		ps, _ := h.rooms.Participants("support")
		return len(ps) == 1 && ps[0].Kind == rooms.KindPhone
	})
	if st, _ := h.m.APICall(res.ID, "crm"); st.State != StateAnswered {
		t.Errorf("API state %+v", st)
	}
	if cr := h.requests("POST", "/channels/create"); len(cr) != 1 || vars(cr[0])["CALLERID(num)"] != apiCallerID {
		t.Errorf("far leg %+v", cr)
	}
	if err := h.m.HangupAPICall(res.ID, "crm"); err != nil {
		t.Fatal(err)
	}
	h.assertClean()
	if st, _ := h.m.APICall(res.ID, "crm"); st.State != StateEnded || st.Cause != wire.CauseNormalClearing {
		t.Errorf("API state after hangup %+v", st)
	}
}

// Click-to-call to a browser user: once the far end answers, the user's browser is rung and hears the far end;
// progress reaches the browser and the API.
func TestAPICallToUser(t *testing.T) {
	defer goleak.VerifyNone(t)
	h := newHarness(t)
	defer h.close()
	alice := h.browser("alice")
	res, err := h.m.Originate(context.Background(), OriginateRequest{APIKey: "crm", To: "600", ConnectUser: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := alice.receive(synth.CallOptions{Duration: 800 * time.Millisecond}).result(t, 10*time.Second)
	if err != nil {
		t.Fatalf("answer: %v (events %+v)", err, rep.Events)
	}
	heardEcho(t, rep)
	h.assertClean()
	st, _ := h.m.APICall(res.ID, "crm")
	if st.State != StateEnded || st.Answered.IsZero() || st.User != "alice" {
		t.Errorf("API state %+v", st)
	}
	h.eventually("the browser is told the API call ended", patience, func() bool {
		var progress []string
		for _, m := range alice.messages(res.ID) {
			if m.Type == signal.TypeProgress {
				progress = append(progress, m.Event)
			}
		}
		return slices.Equal(progress, []string{signal.ProgressAnswered, signal.ProgressEnded})
	})
}
