//go:build integration

package integration

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/test/testenv"
)

// qualityEnv is one Asterisk and one Patchbay with video rooms, shared by a TestRoomQuality test's browsers.
type qualityEnv struct {
	ast *testenv.Asterisk
	pb  *testenv.Patchbay
}

func newQualityEnv(t *testing.T, edit func(*config.Config)) *qualityEnv {
	t.Helper()
	return newQualityEnvWith(t, testenv.AsteriskOptions{}, edit)
}

// newQualityEnvWith is newQualityEnv with Asterisk started with ao (extra endpoints and dialplan for a baseline).
func newQualityEnvWith(t *testing.T, ao testenv.AsteriskOptions, edit func(*config.Config)) *qualityEnv {
	t.Helper()
	ast := testenv.StartAsterisk(t, ao)
	pb := testenv.StartPatchbay(t, ast, testenv.PatchbayOptions{Config: func(c *config.Config) {
		loopbackPage(c)
		c.Media.Video = true
		c.Rooms.Grace = 2 * time.Second
		if edit != nil {
			edit(c)
		}
	}})
	return &qualityEnv{ast: ast, pb: pb}
}

func (e *qualityEnv) room(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	if _, err := e.pb.Server.Rooms().Create(ctx, rooms.CreateOptions{ID: id, Name: id}); err != nil {
		t.Fatalf("create room %s: %v", id, err)
	}
}

func (e *qualityEnv) token(t *testing.T, room, user, role string) string {
	t.Helper()
	c := auth.Claims{Name: user, Room: room, Role: role}
	c.Subject = user
	tok, err := e.pb.Server.Signer().Mint(c, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// chromiumTab starts a Chromium for one participant (its console is logged if the test fails) and opens a tab.
func (e *qualityEnv) chromiumTab(t *testing.T, name string) *testenv.Page {
	t.Helper()
	c := testenv.StartChromium(t, testenv.ChromiumOptions{Name: name, TrustCA: e.pb.CACert})
	t.Cleanup(func() { // before Chromium's own cleanup removes its directory
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(c.Dir, "console-"+name+".log")); err == nil {
				t.Logf("%s console:\n%s", name, b)
			}
		}
	})
	return c.NewPage(t, name)
}

// joinRoom opens the page signed in as user with role and joins room; it waits until the page is in.
func (e *qualityEnv) joinRoom(t *testing.T, ctx context.Context, p testenv.Tab, room, user, role string) string {
	t.Helper()
	if err := p.OpenPatchbay(ctx, e.pb, e.token(t, room, user, role), url.Values{"room": {room}}); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor(ctx, user+" in the room", `window.patchbayState.roomState === "joined" && window.patchbayState.you !== ""`, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	return roomState(t, ctx, p).You
}

// videoStat is one entry of window.patchbayApp.roomStats().video.
type videoStat struct {
	ParticipantID  string `json:"participantId"`
	Screen         bool   `json:"screen"`
	FramesDecoded  int    `json:"framesDecoded"`
	FramesReceived int    `json:"framesReceived"`
	Width          int    `json:"width"`
	Height         int    `json:"height"`
	Codec          string `json:"codec"`
}

// videoFrom returns p's receive stats of participant pid's camera (screen false) or screen share (screen true).
func videoFrom(t *testing.T, ctx context.Context, p testenv.Tab, pid string, screen bool) (videoStat, bool) {
	t.Helper()
	var st struct {
		Video []videoStat `json:"video"`
	}
	if err := p.Eval(ctx, `window.patchbayApp.roomStats()`, &st); err != nil {
		t.Fatal(err)
	}
	for _, v := range st.Video {
		if v.ParticipantID == pid && v.Screen == screen {
			return v, true
		}
	}
	return videoStat{}, false
}

// waitVideo waits until p decodes more than after frames of pid's camera or screen and cond holds for the stats.
func waitVideo(t *testing.T, ctx context.Context, p testenv.Tab, what, pid string, screen bool, after int, cond func(videoStat) bool) videoStat {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var v videoStat
	for time.Now().Before(deadline) {
		var ok bool
		if v, ok = videoFrom(t, ctx, p, pid, screen); ok && v.FramesDecoded > after && (cond == nil || cond(v)) {
			return v
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %s not decoded within 20 s (last stats %+v)", p.TabName(), what, v)
	return v
}

// TestRoomQualityScreenShare: two headless Chromiums in a room with video (alice a participant, bob its moderator).
// Alice shares her screen (Chromium's fake display capture, 1920×1080 at 15 fps): Bob's page shows it large in
// place of her camera and decodes it at ≥ 1280×720; Bob's own share is refused while hers lasts (share_busy).
// When she stops, Bob's page shows her camera again and decodes it. She shares again and Bob, as moderator, stops
// it: her page stops capturing. A screenshot of Bob's page during the share is kept in
// artifacts/room-screenshare.png.
func TestRoomQualityScreenShare(t *testing.T) {
	testenv.Heavy(t)
	e := newQualityEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	const room = "screenshare"
	e.room(t, ctx, room)
	alice, bob := e.chromiumTab(t, "alice"), e.chromiumTab(t, "bob")
	start := time.Now()
	aliceID := e.joinRoom(t, ctx, alice, room, "alice", rooms.RoleParticipant)
	bobID := e.joinRoom(t, ctx, bob, room, "bob", rooms.RoleModerator)
	for _, p := range []testenv.Tab{alice, bob} {
		if err := p.WaitFor(ctx, "the other's camera tile", `window.patchbayState.participants.length === 2 && window.patchbayState.videoTiles === 1`, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	cam := waitVideo(t, ctx, bob, "alice's camera", aliceID, false, 0, nil)
	t.Logf("both in the room after %v; bob decodes alice's camera: %d frames at %dx%d (%s)",
		time.Since(start).Round(time.Millisecond), cam.FramesDecoded, cam.Width, cam.Height, cam.Codec)

	// Alice shares: Bob's page shows her screen in her tile, large, instead of her camera.
	shareAt := time.Now()
	var ok bool
	if err := alice.Eval(ctx, `window.patchbayApp.shareScreen(true)`, &ok); err != nil || !ok {
		st, _ := alice.State(ctx)
		t.Fatalf("alice's share was refused (%v): %+v", err, st)
	}
	if err := bob.WaitFor(ctx, "alice's screen tile", `window.patchbayState.screenTiles === 1 && window.patchbayState.screenFrom === "`+aliceID+`" && `+
		`window.patchbayState.videoTiles === 0 && document.querySelector('#tiles .tile.screen[data-participant="`+aliceID+`"] video') !== null && `+
		`window.patchbayState.participants.some((p) => p.id === "`+aliceID+`" && p.sharing)`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	hd := func(v videoStat) bool { return v.Width >= 1280 && v.Height >= 720 }
	first := waitVideo(t, ctx, bob, "alice's screen at ≥ 1280×720", aliceID, true, 0, hd)
	t.Logf("bob decodes alice's screen %v after she shared: %d frames at %dx%d (%s)",
		time.Since(shareAt).Round(time.Millisecond), first.FramesDecoded, first.Width, first.Height, first.Codec)
	time.Sleep(2 * time.Second)
	later := waitVideo(t, ctx, bob, "more of alice's screen", aliceID, true, first.FramesDecoded, hd)
	t.Logf("2 s later: %d frames decoded (%d more) at %dx%d", later.FramesDecoded, later.FramesDecoded-first.FramesDecoded, later.Width, later.Height)
	if path, err := bob.Screenshot(ctx, "room-screenshare"); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		t.Logf("bob's page during the share: %s", path)
	}
	if sfuRoom := e.pb.Server.SFU().Room(room); sfuRoom == nil {
		t.Error("no SFU room during the share")
	} else {
		stats, err := sfuRoom.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !stats[aliceID].Sharing || stats[aliceID].ScreenPackets == 0 {
			t.Errorf("SFU stats of alice: %+v, want sharing with screen packets forwarded", stats[aliceID])
		}
		t.Logf("SFU: alice shares, %d screen packets forwarded, %d key frame requests to her camera", stats[aliceID].ScreenPackets, stats[aliceID].KeyframeRequests)
	}

	// One sharer at a time: Bob's share is refused while Alice's lasts.
	if err := bob.Eval(ctx, `window.patchbayApp.shareScreen(true)`, &ok); err != nil {
		t.Fatal(err)
	}
	if st, _ := bob.State(ctx); ok || st.LastError != "share_busy" {
		t.Errorf("bob's share while alice shares: ok %v, last error %q; want refused with share_busy", ok, st.LastError)
	}
	if err := bob.WaitFor(ctx, "bob not sharing", `window.patchbayState.sharing === false`, 5*time.Second); err != nil {
		t.Error(err)
	}

	// Alice stops: Bob's page shows her camera again, and decodes it.
	if err := alice.Eval(ctx, `window.patchbayApp.shareScreen(false)`, &ok); err != nil || !ok {
		t.Fatalf("alice's stop: %v %v", ok, err)
	}
	if err := bob.WaitFor(ctx, "alice's camera tile back", `window.patchbayState.screenTiles === 0 && window.patchbayState.videoTiles === 1 && `+
		`document.querySelector('#tiles .tile.screen') === null && document.querySelector('#tiles .tile[data-participant="`+aliceID+`"] video') !== null && `+
		`!window.patchbayState.participants.some((p) => p.sharing)`, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	before, _ := videoFrom(t, ctx, bob, aliceID, false)
	back := waitVideo(t, ctx, bob, "alice's camera after the share", aliceID, false, before.FramesDecoded+10, nil)
	t.Logf("after the share bob decodes alice's camera again: %d frames at %dx%d", back.FramesDecoded, back.Width, back.Height)

	// She shares again; Bob, the moderator, stops it: her page stops capturing.
	if err := alice.Eval(ctx, `window.patchbayApp.shareScreen(true)`, &ok); err != nil || !ok {
		t.Fatalf("alice's second share: %v %v", ok, err)
	}
	if err := bob.WaitFor(ctx, "alice's screen again", `window.patchbayState.screenTiles === 1`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := bob.Eval(ctx, `window.patchbayApp.stopShareOf("`+aliceID+`"), true`, nil); err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitFor(ctx, "alice's share stopped by the moderator", `window.patchbayState.sharing === false`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := bob.WaitFor(ctx, "alice's camera after the moderator's stop", `window.patchbayState.screenTiles === 0 && window.patchbayState.videoTiles === 1`, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	e.leaveAll(t, ctx, alice, bob)
	_ = bobID
}

// h264Capable is a page expression: the browser sends and receives the H.264 Patchbay negotiates (constrained
// baseline, packetization-mode 1), by RTCRtpSender/RTCRtpReceiver.getCapabilities("video").
const h264Capable = `(() => {
  const cb1 = (c) => c.mimeType.toLowerCase() === "video/h264" && /packetization-mode=1/.test(c.sdpFmtpLine || "") &&
    /profile-level-id=42e0/i.test(c.sdpFmtpLine || "");
  const has = (cls) => Boolean(cls && cls.getCapabilities && (cls.getCapabilities("video") || { codecs: [] }).codecs.some(cb1));
  return { send: has(globalThis.RTCRtpSender), receive: has(globalThis.RTCRtpReceiver) };
})()`

type h264Caps struct {
	Send    bool `json:"send"`
	Receive bool `json:"receive"`
}

// decodes waits until p decodes fresh frames of participant pid's camera in codec (a MIME type) and returns them.
func decodes(t *testing.T, ctx context.Context, p testenv.Tab, pid, codec string) videoStat {
	t.Helper()
	before, _ := videoFrom(t, ctx, p, pid, false)
	v := waitVideo(t, ctx, p, pid+"'s camera in "+codec, pid, false, before.FramesDecoded+5, func(v videoStat) bool { return strings.EqualFold(v.Codec, codec) })
	t.Logf("%s decodes %s's camera in %s: %d frames at %dx%d", p.TabName(), pid, v.Codec, v.FramesDecoded, v.Width, v.Height)
	return v
}

// TestRoomQualityH264: with media.h264 on, two headless Chromiums in a room negotiate H.264 (constrained baseline,
// packetization-mode 1) and decode each other's cameras in it (getStats codec video/H264), and a screen share in it
// at ≥ 1280×720. Then a Firefox ESR joins:
// the room settles on a codec all three support (VP8 unless this Firefox offers H.264 constrained baseline too), and
// every browser decodes every other's camera in it. A Chromium whose WebRTC stack cannot send and receive that
// H.264 fails the test, saying so.
func TestRoomQualityH264(t *testing.T) {
	testenv.Heavy(t)
	e := newQualityEnv(t, func(c *config.Config) { c.Media.H264 = true })
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	const room = "h264"
	e.room(t, ctx, room)
	alice, bob := e.chromiumTab(t, "alice"), e.chromiumTab(t, "bob")
	start := time.Now()
	aliceID := e.joinRoom(t, ctx, alice, room, "alice", rooms.RoleParticipant)
	var caps h264Caps
	if err := alice.Eval(ctx, h264Capable, &caps); err != nil {
		t.Fatal(err)
	}
	if !caps.Send || !caps.Receive {
		t.Fatalf("this Chromium (%s) cannot do H.264 constrained baseline with packetization-mode 1 in WebRTC "+
			"(getCapabilities: send %v, receive %v): Debian's chromium encodes H.264 with OpenH264 (libopenh264) and decodes it with FFmpeg; install them",
			testenv.ChromiumPath, caps.Send, caps.Receive)
	}
	bobID := e.joinRoom(t, ctx, bob, room, "bob", rooms.RoleParticipant)
	for _, p := range []testenv.Tab{alice, bob} {
		if err := p.WaitFor(ctx, "the other's camera tile", `window.patchbayState.participants.length === 2 && window.patchbayState.videoTiles === 1`, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	decodes(t, ctx, alice, bobID, "video/H264")
	decodes(t, ctx, bob, aliceID, "video/H264")
	sfuRoom := e.pb.Server.SFU().Room(room)
	if sfuRoom == nil {
		t.Fatal("no SFU room")
	}
	if c, err := sfuRoom.Codec(ctx); err != nil || c != "H264" {
		t.Errorf("SFU room codec %q (%v), want H264", c, err)
	}
	t.Logf("two Chromiums decode each other in H.264 %v after the first joined", time.Since(start).Round(time.Millisecond))

	// A screen share in an H.264 room travels in H.264 too.
	var ok bool
	if err := alice.Eval(ctx, `window.patchbayApp.shareScreen(true)`, &ok); err != nil || !ok {
		st, _ := alice.State(ctx)
		t.Fatalf("alice's share was refused (%v): %+v", err, st)
	}
	scr := waitVideo(t, ctx, bob, "alice's screen in H.264 at ≥ 1280×720", aliceID, true, 5, func(v videoStat) bool {
		return strings.EqualFold(v.Codec, "video/H264") && v.Width >= 1280 && v.Height >= 720
	})
	t.Logf("bob decodes alice's screen in %s: %d frames at %dx%d", scr.Codec, scr.FramesDecoded, scr.Width, scr.Height)
	if err := alice.Eval(ctx, `window.patchbayApp.shareScreen(false)`, &ok); err != nil || !ok {
		t.Fatalf("alice's stop: %v %v", ok, err)
	}
	if err := bob.WaitFor(ctx, "alice's camera tile back", `window.patchbayState.screenTiles === 0 && window.patchbayState.videoTiles === 1`, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	// A Firefox joins: the room takes a codec all three decode.
	ff := testenv.StartBrowser(t, "firefox", testenv.BrowserOptions{Name: "carol"}).NewTab(t, "carol")
	var ffCaps h264Caps
	if err := ff.Navigate(ctx, e.pb.BaseURL+"/"); err != nil {
		t.Fatal(err)
	}
	if err := ff.Eval(ctx, h264Capable, &ffCaps); err != nil {
		t.Fatal(err)
	}
	want := "video/VP8"
	if ffCaps.Send && ffCaps.Receive {
		want = "video/H264"
	}
	t.Logf("Firefox ESR's H.264 constrained baseline mode 1: send %v, receive %v; the room should use %s", ffCaps.Send, ffCaps.Receive, want)
	ffAt := time.Now()
	carolID := e.joinRoom(t, ctx, ff, room, "carol", rooms.RoleParticipant)
	for _, p := range []testenv.Tab{alice, bob, ff} {
		if err := p.WaitFor(ctx, "two camera tiles", `window.patchbayState.participants.length === 3 && window.patchbayState.videoTiles === 2`, 25*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	decodes(t, ctx, ff, aliceID, want)
	decodes(t, ctx, ff, bobID, want)
	decodes(t, ctx, alice, bobID, want)
	decodes(t, ctx, bob, aliceID, want)
	decodes(t, ctx, alice, carolID, want)
	decodes(t, ctx, bob, carolID, want)
	t.Logf("with Firefox in the room every browser decodes every other in %s %v after it joined", want, time.Since(ffAt).Round(time.Millisecond))
	if st, err := sfuRoom.Stats(ctx); err == nil {
		for id, s := range st {
			t.Logf("SFU member %s: codec %s, %d packets forwarded, %d key frame requests, %d offers", id, s.Codec, s.ForwardedPackets, s.KeyframeRequests, s.Offers)
		}
	}
	if path, err := alice.Screenshot(ctx, "room-h264-fallback"); err == nil {
		t.Logf("alice's page with Firefox in the room: %s", path)
	}

	e.leaveAll(t, ctx, alice, bob, ff)
}

// leaveAll has every page leave the room, then checks that no call is left and that no page logged an error.
func (e *qualityEnv) leaveAll(t *testing.T, ctx context.Context, pages ...testenv.Tab) {
	t.Helper()
	for _, p := range pages {
		if err := p.Eval(ctx, `window.patchbayApp.leave(), true`, nil); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.pb.Server.ActiveCalls() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := e.pb.Server.ActiveCalls(); n > 0 {
		t.Errorf("%d calls left after every page left", n)
	}
	for _, p := range pages {
		if errs := p.ConsoleErrors(); len(errs) > 0 {
			t.Errorf("%s console errors: %s", p.TabName(), strings.Join(errs, "\n"))
		}
	}
}
