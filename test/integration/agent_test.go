//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
)

// TestAgentFollowsCustomerByNumber is the seed use case, in Chromium and Firefox ESR: a customer waits in a room
// whose number is mapped to it; an agent opens /agent?number=X with an agent token and lands in the same room; the
// customer's page pins the agent's video first. A customer token cannot use the number route.
func TestAgentFollowsCustomerByNumber(t *testing.T) {
	ast := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	pb := testenv.StartPatchbay(t, ast, testenv.PatchbayOptions{Config: func(c *config.Config) {
		loopbackPage(c)
		c.Media.Video = true
		c.Rooms.Grace = 2 * time.Second
	}})
	for _, name := range testenv.BrowserNames {
		t.Run(name, func(t *testing.T) { agentFollowsCustomer(t, pb, name) })
	}
}

func agentFollowsCustomer(t *testing.T, pb *testenv.Patchbay, browserName string) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	r, err := pb.Server.Rooms().Create(ctx, rooms.CreateOptions{Name: "Support"})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	// A number per browser run: the second run's customer waits in a room of its own.
	customerNumber := map[string]string{"chromium": "+441632960123", "firefox": "+441632960124"}[browserName]
	if err := pb.Server.Numbers().Map(ctx, customerNumber, r.ID, time.Hour); err != nil {
		t.Fatalf("map number: %v", err)
	}
	mint := func(user, name, room, role string) string {
		c := auth.Claims{Name: name, Room: room, Role: role}
		c.Subject = user
		tok, err := pb.Server.Signer().Mint(c, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	dir := t.TempDir()
	// Chromium: an instance per page, each with its own microphone tone. Firefox: one instance with two tabs (its
	// tone is per instance, and this test checks video, not audio).
	var firefox testenv.Browser
	page := func(name string, hz float64) testenv.Tab {
		if browserName == "firefox" {
			if firefox == nil {
				firefox = testenv.StartBrowser(t, "firefox", testenv.BrowserOptions{FakeToneHz: int(hz)})
			}
			return firefox.NewTab(t, name)
		}
		wav := filepath.Join(dir, fmt.Sprintf("%s.wav", name))
		if err := audio.WriteWAV(wav, audio.Sine(hz, 48000, 10*time.Second, 0.3), 48000); err != nil {
			t.Fatal(err)
		}
		return testenv.StartBrowser(t, browserName, testenv.BrowserOptions{Name: name, FakeMicWAV: wav, TrustCA: pb.CACert}).NewTab(t, name)
	}
	customer, agent := page("customer", 440), page("agent", 1000)

	if err := customer.OpenPatchbay(ctx, pb, mint("cust-1", "Customer", r.ID, rooms.RoleCustomer), url.Values{"room": {r.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := customer.WaitFor(ctx, "customer in the room", `window.patchbayState.roomState === "joined"`, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	q := url.Values{"number": {customerNumber}, "token": {mint("agent-7", "Agent Smith", "", rooms.RoleAgent)},
		"echoCancellation": {"0"}, "noiseSuppression": {"0"}, "autoGainControl": {"0"}}
	if err := agent.Navigate(ctx, pb.BaseURL+"/agent?"+q.Encode()); err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitFor(ctx, "agent in the customer's room", `window.patchbayState.roomState === "joined" && `+
		`window.patchbayState.room === `+fmt.Sprintf("%q", r.ID), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	// The customer sees the agent pinned, with video.
	if err := customer.WaitFor(ctx, "agent pinned with video", `(() => { const p = window.patchbayState.participants; `+
		`return p.length === 2 && p[0].role === "agent" && p[0].pinned && p[0].video; })()`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	agentID := roomState(t, ctx, customer).Participants[0].ID
	framesFrom(t, ctx, customer, agentID) // the pinned tile shows moving video, not a black box
	time.Sleep(500 * time.Millisecond)
	if path, err := customer.Screenshot(ctx, "agent-pinned-"+browserName); err == nil {
		t.Logf("screenshot: %s", path)
	}
	if got := roomState(t, ctx, customer).VideoTiles; got != 1 {
		t.Errorf("customer sees %d video tiles, want the agent's", got)
	}
}
