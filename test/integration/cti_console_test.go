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

// consoleState mirrors window.patchbayConsole.
type consoleState struct {
	Status    string `json:"status"`
	LastError string `json:"lastError"`
	Queue     []struct {
		Room     string  `json:"room"`
		Number   string  `json:"number"`
		CallerID string  `json:"caller_id"`
		WaitS    float64 `json:"wait_s"`
	} `json:"queue"`
	Calls []struct {
		ID   string `json:"id"`
		User string `json:"user"`
	} `json:"calls"`
	CallState  string `json:"callState"`
	Customer   string `json:"customer"`
	Seconds    int    `json:"seconds"`
	Held       bool   `json:"held"`
	Recording  bool   `json:"recording"`
	Supervisor bool   `json:"supervisor"`
	Supervise  string `json:"supervising"`
	Mode       string `json:"mode"`
}

// TestCTIAgentConsole, in Chromium and in Firefox ESR: a customer's phone waits in a room mapped to a number; the
// agent console (/agent) shows it in the queue with its caller ID and wait time, answers it (joining the room with video),
// holds (the customer hears music on hold) and resumes, records (the indicator shows), and a supervisor's console
// lists the live call and listens in. Screenshots of the waiting queue, the call and the supervisor's view are kept
// in artifacts/.
func TestCTIAgentConsole(t *testing.T) {
	testenv.Heavy(t)
	for _, name := range testenv.BrowserNames {
		t.Run(name, func(t *testing.T) { agentConsole(t, name) })
	}
}

func agentConsole(t *testing.T, browserName string) {
	ast := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	recDir := t.TempDir()
	pb := testenv.StartPatchbay(t, ast, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Media.PublicIPs = []string{"127.0.0.1"}
		c.Media.Video = true
		c.Recording.Mode = config.RecordingOnRequest
		c.Recording.Dir = recDir
		c.Auth.APIKeys = map[string]config.Secret{"crm": ctiKey}
		c.Limits.PerToken = config.LimitSet{}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	r, err := pb.Server.Rooms().Create(ctx, rooms.CreateOptions{Name: "Support"})
	if err != nil {
		t.Fatal(err)
	}
	const number = "8200"
	if err := pb.Server.Numbers().Map(ctx, number, r.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tone := filepath.Join(dir, "1000.wav")
	if err := audio.WriteWAV(tone, audio.Sine(phone101Hz, 8000, 5*time.Minute, 0.3), 8000); err != nil {
		t.Fatal(err)
	}
	customer := testenv.StartBaresip(t, testenv.BaresipOptions{Name: "101", Registrar: fmt.Sprintf("127.0.0.1:%d", ast.SIPPort),
		User: "101", Password: ast.Phone(t, "101").Password, PlayWAV: tone})
	if err := customer.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	mint := func(user, name, role string) string {
		c := auth.Claims{Name: name, Role: role, Dial: []string{"ext"}}
		c.Subject = user
		tok, err := pb.Server.Signer().Mint(c, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	mic := filepath.Join(dir, "agent.wav")
	if err := audio.WriteWAV(mic, audio.Sine(agentHz, 48000, 10*time.Second, 0.3), 48000); err != nil {
		t.Fatal(err)
	}
	br := testenv.StartBrowser(t, browserName, testenv.BrowserOptions{Name: browserName + "-console", FakeMicWAV: mic, FakeToneHz: int(agentHz), TrustCA: pb.CACert})
	agent := br.NewTab(t, "agent")
	state := func(p testenv.Tab) consoleState {
		var s consoleState
		if err := p.Eval(ctx, `window.patchbayConsole`, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	open := func(p testenv.Tab, token string) {
		q := url.Values{"token": {token}, "echoCancellation": {"0"}, "noiseSuppression": {"0"}, "autoGainControl": {"0"}}
		if err := p.Navigate(ctx, pb.BaseURL+"/agent?"+q.Encode()); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor(ctx, "console signed in", `window.patchbayConsole && window.patchbayConsole.status === "connected"`, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	open(agent, mint("agent-7", "Agent Smith", rooms.RoleAgent))

	// The customer calls the number mapped to the room and waits there.
	if err := customer.Dial(ctx, number); err != nil {
		t.Fatal(err)
	}
	if _, err := customer.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitFor(ctx, "the customer in the queue", `(() => { const q = window.patchbayConsole.queue; `+
		`return q.length === 1 && q[0].caller_id === "101" && q[0].number === "8200"; })()`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // a wait time worth showing
	if s := state(agent); s.Queue[0].WaitS < 1 {
		t.Errorf("queue entry shows no wait time: %+v", s.Queue[0])
	}
	if path, err := agent.Screenshot(ctx, browserName+"-agent-console-waiting"); err != nil {
		t.Error(err)
	} else {
		t.Logf("screenshot: %s", path)
	}

	// Answer: the agent joins the customer's room, with video.
	if err := agent.Click(ctx, `#queue button.go`); err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitFor(ctx, "in the call", `window.patchbayConsole.callState === "answered"`, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	ps, _ := pb.Server.Rooms().Participants(r.ID)
	if len(ps) != 2 {
		t.Errorf("room holds %d participants after the answer, want the customer and the agent", len(ps))
	}
	if err := agent.WaitFor(ctx, "queue emptied", `window.patchbayConsole.queue.length === 0`, 5*time.Second); err != nil {
		t.Error(err)
	}
	// Hold: the customer hears music on hold; resume.
	heldAt := time.Now()
	if err := agent.Click(ctx, "#hold"); err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitFor(ctx, "on hold", `window.patchbayConsole.held === true`, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	resumedAt := time.Now()
	if err := agent.Click(ctx, "#hold"); err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitFor(ctx, "resumed", `window.patchbayConsole.held === false`, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Record: the indicator shows.
	if err := agent.Click(ctx, "#record"); err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitFor(ctx, "recording", `window.patchbayConsole.recording === true && !document.getElementById("rec").hidden`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := agent.WaitFor(ctx, "timer running", `window.patchbayConsole.seconds >= 3`, 10*time.Second); err != nil {
		t.Error(err)
	}
	if path, err := agent.Screenshot(ctx, browserName+"-agent-console-in-call"); err != nil {
		t.Error(err)
	} else {
		t.Logf("screenshot: %s", path)
	}

	// A supervisor's console lists the call and listens in.
	supPage := br.NewTab(t, "supervisor")
	open(supPage, mint("sam", "Sam Supervisor", "supervisor"))
	if err := supPage.WaitFor(ctx, "the agent's call listed", `(window.patchbayConsole.calls || []).some((c) => c.user === "agent-7")`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := supPage.Click(ctx, `#live button[data-mode="listen"]`); err != nil {
		t.Fatal(err)
	}
	if err := supPage.WaitFor(ctx, "listening", `window.patchbayConsole.supervising !== "" && window.patchbayConsole.mode === "listen"`, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if path, err := supPage.Screenshot(ctx, browserName+"-supervisor-console"); err != nil {
		t.Error(err)
	} else {
		t.Logf("screenshot: %s", path)
	}

	// The agent hangs up; the customer's recording shows the music while held.
	if err := agent.Click(ctx, "#end"); err != nil {
		t.Fatal(err)
	}
	if err := supPage.WaitFor(ctx, "supervision over", `window.patchbayConsole.supervising === ""`, 10*time.Second); err != nil {
		t.Error(err)
	}
	if err := customer.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := customer.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	s, rate, err := customer.Recording(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rate != 8000 {
		s = resample8k(s, rate)
	}
	// The customer hears nothing until the agent answers (its recording is not on the wall clock): the music on
	// hold is found anywhere in it, at least two seconds of it.
	ws := audio.Windows(s, 8000, mohHz...)
	music := 0
	for _, w := range ws {
		if !w.Voiced() {
			continue
		}
		sum := 0.0
		for _, sh := range w.Shares {
			sum += sh
		}
		if sum >= 0.5 {
			music++
		}
	}
	t.Logf("customer heard %.1f s of music on hold in %.1f s (held for %v)", float64(music)/10, float64(len(ws))/10, resumedAt.Sub(heldAt).Round(100*time.Millisecond))
	if music < 15 { // of 3 s held: the hold and resume round trips through the page take their share
		t.Errorf("the customer heard %.1f s of music on hold while the agent held the room; want at least 1.5 s", float64(music)/10)
	}
	var list struct{ Recordings []recordingMeta }
	apiDo(t, pb, "GET", "/recordings", ctiKey, nil, &list)
	if len(list.Recordings) != 1 {
		t.Errorf("recordings after the agent recorded the room: %+v", list.Recordings)
	}
}
