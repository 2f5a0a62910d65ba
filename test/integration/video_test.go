//go:build integration

package integration

import (
	"context"
	"fmt"
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
	"github.com/patchbay/patchbay/tools/audio"
)

// roomStats mirrors what window.patchbayApp.roomStats() returns.
type roomStats struct {
	Video []struct {
		ParticipantID  string `json:"participantId"`
		FramesDecoded  int    `json:"framesDecoded"`
		FramesReceived int    `json:"framesReceived"`
		Width          int    `json:"width"`
		Height         int    `json:"height"`
	} `json:"video"`
	Audio struct {
		PacketsReceived int `json:"packetsReceived"`
	} `json:"audio"`
}

type roomPageState struct {
	RoomState    string `json:"roomState"`
	You          string `json:"you"`
	VideoTiles   int    `json:"videoTiles"`
	Participants []struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		Video bool   `json:"video"`
		You   bool   `json:"you"`
	} `json:"participants"`
}

func roomState(t *testing.T, ctx context.Context, p testenv.Tab) roomPageState {
	t.Helper()
	var s roomPageState
	if err := p.Eval(ctx, `window.patchbayState`, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// framesFrom waits until p has decoded frames of participant pid's camera and returns the count.
func framesFrom(t *testing.T, ctx context.Context, p testenv.Tab, pid string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var st roomStats
	for time.Now().Before(deadline) {
		st = roomStats{}
		if err := p.Eval(ctx, `window.patchbayApp.roomStats()`, &st); err != nil {
			t.Fatal(err)
		}
		for _, v := range st.Video {
			if v.ParticipantID == pid && v.FramesDecoded > 0 {
				t.Logf("%s decodes %s's camera: %d frames (%d received) at %dx%d", p.TabName(), pid, v.FramesDecoded, v.FramesReceived, v.Width, v.Height)
				return v.FramesDecoded
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s decoded no frame of %s's camera in 20 s: stats %+v", p.TabName(), pid, st)
	return 0
}

// TestRoomVideoBetweenTwoBrowsers, two headless Chromiums and then two Firefox ESRs (a fake camera each, and fake
// microphones playing 1000 Hz and 440 Hz; Firefox's tone is a per-instance pref, hence two instances) join one
// room through the page. Each decodes the other's camera through Patchbay's SFU (getStats framesDecoded) and hears
// the other's tone through the Asterisk mix. When one leaves, the other's tile goes (renegotiation toward a real
// browser). A screenshot of the room page is kept in artifacts/ (room-video-<browser>.png).
func TestRoomVideoBetweenTwoBrowsers(t *testing.T) {
	testenv.Heavy(t)
	ast := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	pb := testenv.StartPatchbay(t, ast, testenv.PatchbayOptions{Config: func(c *config.Config) {
		loopbackPage(c)
		c.Media.Video = true
		c.Rooms.Grace = 2 * time.Second
	}})
	dir := t.TempDir()
	phoneTone := filepath.Join(dir, "phone-1700.wav")
	if err := audio.WriteWAV(phoneTone, audio.Sine(1700, 8000, 60*time.Second, 0.25), 8000); err != nil {
		t.Fatal(err)
	}
	for _, name := range testenv.BrowserNames {
		t.Run(name, func(t *testing.T) { roomVideo(t, ast, pb, name, dir, phoneTone) })
	}
}

func roomVideo(t *testing.T, ast *testenv.Asterisk, pb *testenv.Patchbay, browserName, dir, phoneTone string) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	room := "video-e2e-" + browserName // a fresh room per browser
	if _, err := pb.Server.Rooms().Create(ctx, rooms.CreateOptions{ID: room, Name: "Video test"}); err != nil {
		t.Fatalf("create room: %v", err)
	}
	token := func(user, name string) string {
		c := auth.Claims{Name: name, Room: room, Role: rooms.RoleParticipant}
		c.Subject = user
		tok, err := pb.Server.Signer().Mint(c, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	browser := func(name string, hz float64) testenv.Tab {
		wav := filepath.Join(dir, fmt.Sprintf("%s-%d.wav", name, int(hz)))
		// 10 s of whole cycles: Chromium loops the file without a click.
		if err := audio.WriteWAV(wav, audio.Sine(hz, 48000, 10*time.Second, 0.3), 48000); err != nil {
			t.Fatal(err)
		}
		b := testenv.StartBrowser(t, browserName, testenv.BrowserOptions{Name: name, FakeMicWAV: wav, FakeToneHz: int(hz), TrustCA: pb.CACert})
		if c, ok := b.(*testenv.Chromium); ok {
			t.Cleanup(func() { // before Chromium's own cleanup removes its directory
				if t.Failed() {
					if b, err := os.ReadFile(filepath.Join(c.Dir, "console-"+name+".log")); err == nil {
						t.Logf("%s console:\n%s", name, b)
					}
				}
			})
		}
		return b.NewTab(t, name)
	}
	alice, bob := browser("alice", 1000), browser("bob", 440)

	start := time.Now()
	if err := alice.OpenPatchbay(ctx, pb, token("alice", "Alice Example"), url.Values{"room": {room}}); err != nil {
		t.Fatal(err)
	}
	// Bob comes in once Alice's camera is forwarded: his first offer from the server already carries it.
	if err := alice.WaitFor(ctx, "alice in the room", `window.patchbayState.roomState === "joined"`, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := bob.OpenPatchbay(ctx, pb, token("bob", "Bob Example"), url.Values{"room": {room}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []testenv.Tab{alice, bob} {
		if err := p.WaitFor(ctx, "two participants with video", `window.patchbayState.roomState === "joined" && `+
			`window.patchbayState.participants.length === 2 && window.patchbayState.videoTiles === 1`, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("both pages joined and show the other's video tile after %v", time.Since(start).Round(time.Millisecond))
	as, bs := roomState(t, ctx, alice), roomState(t, ctx, bob)
	if as.You == "" || bs.You == "" || as.You == bs.You {
		t.Fatalf("participant ids: alice %q bob %q", as.You, bs.You)
	}
	framesFrom(t, ctx, alice, bs.You)
	framesFrom(t, ctx, bob, as.You)

	// The room's audio is Asterisk's mix: each hears the other's tone, not its own.
	for _, c := range []struct {
		page      testenv.Tab
		want, not float64
	}{{alice, 440, 1000}, {bob, 1000, 440}} {
		rec, err := c.page.RecordRemoteAudio(ctx, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got, wrong := audio.Detect(rec.Samples, rec.Rate, c.want), audio.Detect(rec.Samples, rec.Rate, c.not)
		t.Logf("%s heard (%d Hz, %d samples): %d Hz in %d/%d voiced windows (fraction %.2f), own %d Hz fraction %.2f; analyser peak %.0f Hz",
			c.page.TabName(), rec.Rate, len(rec.Samples), int(c.want), got.Matching, got.Voiced, got.Fraction, int(c.not), wrong.Fraction, rec.PeakHz)
		if !got.Detected(10) {
			t.Errorf("%s did not hear the other browser's %d Hz through the room: %+v", c.page.TabName(), int(c.want), got)
		}
		if wrong.Fraction > 0.1 {
			t.Errorf("%s heard its own %d Hz back (fraction %.2f)", c.page.TabName(), int(c.not), wrong.Fraction)
		}
	}

	// A phone dials the room's number: both pages show it as an audio tile with its caller ID.
	if err := pb.Server.Numbers().Map(ctx, "8100", room, 0); err != nil {
		t.Fatalf("map 8100: %v", err)
	}
	phone := testenv.StartBaresip(t, testenv.BaresipOptions{User: "101", Password: ast.Phone(t, "101").Password,
		Registrar: fmt.Sprintf("127.0.0.1:%d", ast.SIPPort), PlayWAV: phoneTone})
	if err := phone.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	if err := phone.Dial(ctx, fmt.Sprintf("sip:8100@127.0.0.1:%d", ast.SIPPort)); err != nil {
		t.Fatal(err)
	}
	const phoneTile = `window.patchbayState.participants.some((p) => p.kind === "phone" && p.callerId === "101" && !p.video) && ` +
		`[...document.querySelectorAll("#tiles .tile.phone .label")].some((l) => l.textContent.includes("101"))`
	for _, p := range []testenv.Tab{alice, bob} {
		if err := p.WaitFor(ctx, "the phone's audio tile", phoneTile, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	// Frames keep coming, and the page is worth a look.
	n := framesFrom(t, ctx, alice, bs.You)
	time.Sleep(time.Second)
	if m := framesFrom(t, ctx, alice, bs.You); m <= n {
		t.Errorf("alice's decoded frames of bob stalled at %d", m)
	}
	if path, err := alice.Screenshot(ctx, "room-video-"+browserName); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		t.Logf("room page screenshot: %s", path)
	}

	if err := phone.Hangup(ctx); err != nil {
		t.Errorf("phone hangup: %v", err)
	}

	// Bob leaves: Alice's page renegotiates his camera away and keeps the call.
	if err := bob.Eval(ctx, `window.patchbayApp.leave(), true`, nil); err != nil {
		t.Fatal(err)
	}
	if err := alice.WaitFor(ctx, "bob's tile to go", `window.patchbayState.participants.length === 1 && `+
		`window.patchbayState.videoTiles === 0 && window.patchbayState.roomState === "joined"`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := alice.Eval(ctx, `window.patchbayApp.leave(), true`, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for pb.Server.ActiveCalls() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := pb.Server.ActiveCalls(); n > 0 {
		t.Errorf("%d calls left after both left", n)
	}
	for _, p := range []testenv.Tab{alice, bob} {
		if errs := p.ConsoleErrors(); len(errs) > 0 {
			t.Errorf("%s console errors: %s", p.TabName(), strings.Join(errs, "\n"))
		}
	}
}
