//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
)

// TestAsteriskTwoInstances runs two instances side by side and checks each one's ARI, PJSIP
// endpoints, transports and dialplan contexts.
func TestAsteriskTwoInstances(t *testing.T) {
	var asts [2]*testenv.Asterisk
	// An ARI user stored as a crypt(3) hash, as ari.conf's comment tells admins to do.
	const cryptClear = "crypt-Secret-9"
	hash, err := exec.Command("openssl", "passwd", "-6", cryptClear).Output()
	if err != nil {
		t.Fatalf("openssl passwd -6 (apt-get install openssl): %v", err)
	}
	start := time.Now()
	// Started one after the other (t.Fatalf belongs to the test goroutine), then run side by side.
	for i := range asts {
		asts[i] = testenv.StartAsterisk(t, testenv.AsteriskOptions{Extra: map[string]string{
			"extensions.conf": fmt.Sprintf("[test-extra]\nexten => %d,1,Hangup()\n", 900+i),
			"ari.conf": "[cryptuser]\ntype = user\nread_only = yes\npassword_format = crypt\npassword = " +
				strings.TrimSpace(string(hash)) + "\n",
		}})
	}
	t.Logf("two instances ready in %v", time.Since(start).Round(time.Millisecond))
	if asts[0].HTTPPort == asts[1].HTTPPort || asts[0].SIPPort == asts[1].SIPPort {
		t.Fatalf("instances share ports: %+v / %+v", asts[0], asts[1])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, a := range asts {
		info := astAriGet(ctx, t, a, "/ari/asterisk/info")
		if sys, _ := info["system"].(map[string]any); sys == nil || !strings.HasPrefix(sys["version"].(string), "22.") {
			t.Errorf("instance %d: not Asterisk 22: %v", i, info["system"])
		}

		for _, c := range []struct {
			pass string
			want int
		}{{cryptClear, http.StatusOK}, {"wrong", http.StatusUnauthorized}} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.ARIURL()+"/ari/asterisk/info", nil)
			req.SetBasicAuth("cryptuser", c.pass)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("instance %d: crypt ARI user with password %q: %s, want %d", i, c.pass, resp.Status, c.want)
			}
		}

		out, err := a.CLI(ctx, "pjsip show endpoints")
		if err != nil {
			t.Fatal(err)
		}
		for _, ph := range testenv.SamplePhones {
			if !strings.Contains(out, "Endpoint:  "+ph.Name) {
				t.Errorf("instance %d: endpoint %s missing from `pjsip show endpoints`:\n%s", i, ph.Name, out)
			}
		}

		out, err = a.CLI(ctx, "pjsip show transports")
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range []string{"transport-udp", "transport-tcp", "transport-tls", "transport-wss"} {
			if !strings.Contains(out, tr) {
				t.Errorf("instance %d: transport %s missing:\n%s", i, tr, out)
			}
		}

		for _, ctxName := range []string{"internal", "from-phones", "from-patchbay", "from-trunk"} {
			out, err := a.CLI(ctx, "dialplan show "+ctxName)
			if err != nil || !strings.Contains(out, "'"+ctxName+"'") {
				t.Errorf("instance %d: context %s not loaded: %v\n%s", i, ctxName, err, out)
			}
		}

		out, err = a.CLI(ctx, "dialplan show test-extra")
		if err != nil || !strings.Contains(out, fmt.Sprintf("'%d' =>", 900+i)) {
			t.Errorf("instance %d: Extra dialplan not loaded: %v\n%s", i, err, out)
		}

		// A clean start: no errors in the log.
		logData, err := os.ReadFile(a.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(logData), "\n") {
			if strings.Contains(l, "ERROR[") {
				t.Errorf("instance %d logged an error at startup: %s", i, l)
			}
		}

		out, err = a.CLI(ctx, "module show like res_pjsip.so")
		if err != nil || !strings.Contains(out, "Running") {
			t.Errorf("instance %d: res_pjsip not running: %v\n%s", i, err, out)
		}
		// AMI must be off.
		out, _ = a.CLI(ctx, "manager show settings")
		if !strings.Contains(out, "Manager (AMI):             No") {
			t.Errorf("instance %d: AMI enabled:\n%s", i, out)
		}
	}

	// Every module modules.conf names exists in the root ("load" lines would fail silently).
	modConf, err := os.ReadFile(filepath.Join(asts[0].Root, asts[0].Params.EtcDir, "modules.conf"))
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, l := range strings.Split(string(modConf), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.HasPrefix(strings.TrimSpace(l), ";") {
			continue
		}
		if k = strings.TrimSpace(k); k != "load" && k != "require" {
			continue
		}
		named++
		mod := filepath.Join(asts[0].Root, "usr/lib/x86_64-linux-gnu/asterisk/modules", strings.TrimSpace(v))
		if _, err := os.Stat(mod); err != nil {
			t.Errorf("modules.conf names %s, which the sid root lacks: %v", strings.TrimSpace(v), err)
		}
	}
	if named < 50 {
		t.Errorf("only %d modules named in modules.conf; parsing broke?", named)
	}

	// Restart keeps the ports and credentials.
	asts[1].Restart(t)
	astAriGet(ctx, t, asts[1], "/ari/asterisk/info")
	astAriGet(ctx, t, asts[0], "/ari/asterisk/info")
}

func astAriGet(ctx context.Context, t *testing.T, a *testenv.Asterisk, path string) map[string]any {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.ARIURL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(a.ARIUser, a.ARIPassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("ARI GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ARI GET %s: %s", path, resp.Status)
	}
	var v map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("ARI GET %s: decode: %v", path, err)
	}
	return v
}

// TestDialplanExtensions calls the test extensions from a softphone: echo (600), tones (601, 603),
// and a room (8XXX) while no Stasis app is connected, which must end with a cause, not silence.
func TestDialplanExtensions(t *testing.T) {
	ast := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	wav := filepath.Join(t.TempDir(), "1000.wav")
	if err := audio.WriteWAV(wav, audio.Sine(1000, 8000, 120*time.Second, 0.3), 8000); err != nil {
		t.Fatal(err)
	}
	phone := testenv.StartBaresip(t, testenv.BaresipOptions{
		Registrar: fmt.Sprintf("127.0.0.1:%d", ast.SIPPort), User: "101",
		Password: ast.Phone(t, "101").Password, PlayWAV: wav,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := phone.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		exten string
		want  float64
	}{
		{"600", 1000}, // echo of what we send
		{"601", 440},
		{"603", 1000},
	} {
		t.Run(tc.exten, func(t *testing.T) {
			if err := phone.Dial(ctx, tc.exten); err != nil {
				t.Fatal(err)
			}
			if _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2500 * time.Millisecond)
			if err := phone.Hangup(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
				t.Fatal(err)
			}
			s, rate, err := phone.Recording(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rep := audio.Detect(s, rate, tc.want)
			t.Logf("%s: %d Hz in %d/%d voiced windows (%.2f)", tc.exten, int(tc.want), rep.Matching, rep.Voiced, rep.Fraction)
			if !rep.Detected(15) {
				t.Errorf("extension %s: no %d Hz heard: %+v", tc.exten, int(tc.want), rep)
			}
		})
	}

	// 602 reads four RFC 4733 digits and stores them in a global before hanging up.
	t.Run("602-dtmf", func(t *testing.T) {
		if err := phone.Dial(ctx, "602"); err != nil {
			t.Fatal(err)
		}
		if _, err := phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
		for _, d := range "4711" {
			if _, err := phone.Command(ctx, "sndcode", string(d)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if _, err := phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
		out, err := ast.CLI(ctx, "dialplan show globals")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "LAST_DTMF_READ=4711") {
			t.Errorf("602 did not store the digits 4711:\n%s", out)
		}
	})

	// A phone that is not registered: Dial gives CHANUNAVAIL, which must reach the caller as 480.
	t.Run("unregistered-phone", func(t *testing.T) {
		if err := phone.Dial(ctx, "105"); err != nil {
			t.Fatal(err)
		}
		ev, err := phone.WaitEvent(ctx, "CALL_CLOSED")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ev.Param, "480") {
			t.Errorf("call to unregistered 105: want 480, got %q", ev.Param)
		}
	})

	// No Stasis app is connected: the room must be refused with a cause (503), not left silent.
	for _, exten := range []string{"8001", "7001", "alice", "+4930123456"} {
		t.Run("stasis-fallback-"+exten, func(t *testing.T) {
			start := time.Now()
			if err := phone.Dial(ctx, exten); err != nil {
				t.Fatal(err)
			}
			wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
			defer wcancel()
			ev, err := phone.WaitEvent(wctx, "CALL_CLOSED")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s closed after %v: %q", exten, time.Since(start).Round(time.Millisecond), ev.Param)
			if !strings.Contains(ev.Param, "503") {
				t.Errorf("%s: want 503 (Stasis app not connected), got %q", exten, ev.Param)
			}
		})
	}
}

// TestAsteriskCrashRecovery kills a test process that left an Asterisk instance running (as a
// crashed or timed-out run would) and checks that the next StartAsterisk reaps it and works.
func TestAsteriskCrashRecovery(t *testing.T) {
	if os.Getenv("PATCHBAY_TESTENV_CRASH_CHILD") == "1" {
		a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
		fmt.Printf("CHILD pid=%d dir=%s\n", a.PID(), a.Dir)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL) // die without any cleanup
		select {}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAsteriskCrashRecovery$")
	cmd.Env = append(os.Environ(), "PATCHBAY_TESTENV_CRASH_CHILD=1")
	out, _ := cmd.CombinedOutput() // killed by design
	var (
		pid int
		dir string
	)
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "CHILD ") {
			fmt.Sscanf(l, "CHILD pid=%d dir=%s", &pid, &dir)
		}
	}
	if pid == 0 {
		t.Fatalf("child did not start Asterisk:\n%s", out)
	}
	if syscall.Kill(pid, 0) != nil {
		t.Fatalf("orphaned Asterisk %d should still run before the reap", pid)
	}

	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("stale Asterisk %d still running after a new instance started", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("stale instance dir %s not removed: %v", dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := a.CLI(ctx, "core show uptime"); err != nil {
		t.Fatalf("new instance unusable: %v %s", err, out)
	}
}

// astCarrierUAS is a SIPp carrier on 127.0.0.2: it challenges and accepts REGISTER, answers OPTIONS,
// and answers one INVITE with PCMU, then waits for BYE.
const astCarrierUAS = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier">
  <recv request="REGISTER" optional="true" next="reg"/>
  <recv request="OPTIONS" optional="true" next="opt"/>
  <recv request="INVITE" next="inv"/>

  <label id="reg"/>
  <send><![CDATA[
SIP/2.0 401 Unauthorized
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
WWW-Authenticate: Digest realm="carrier.test", nonce="5b0e5e1c9a8d4f2e", algorithm=MD5
Content-Length: 0

]]></send>
  <recv request="REGISTER">
    <action>
      <ereg regexp="Authorization: Digest[^\r\n]*username=.acct1." search_in="msg" check_it="true" assign_to="auth"/>
    </action>
  </recv>
  <send next="end"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Contact:];expires=3600
Content-Length: 0

]]></send>

  <label id="opt"/>
  <send next="end"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>

  <label id="inv"/>
  <send><![CDATA[
SIP/2.0 100 Trying
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:carrier@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=carrier 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000

]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <label id="end"/>
  <Reference variables="auth"/>
</scenario>
`

// astDidUAC calls a DID from the carrier's address and expects the 503 of the Stasis fallback.
const astDidUAC = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="did">
  <send retrans="500"><![CDATA[
INVITE sip:4930999@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+15551234@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:4930999@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:carrier@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=carrier 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000

]]></send>
  <recv response="100" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="503"/>
  <send><![CDATA[
ACK sip:4930999@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: <sip:+15551234@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
`

// TestTrunk checks the trunk template against a SIPp carrier on 127.0.0.2: outbound registration
// with digest auth, identify-by-IP into from-trunk (DID to Stasis, 503 fallback without the app),
// and an outbound call from from-patchbay through the trunk.
func TestTrunk(t *testing.T) {
	if _, err := exec.LookPath("sipp"); err != nil {
		t.Fatalf("sipp not found: apt-get install sip-tester (%v)", err)
	}
	dir := t.TempDir()
	carrierPort := astFreeUDPPort(t, "127.0.0.2")
	uasFile, uacFile := filepath.Join(dir, "uas.xml"), filepath.Join(dir, "uac.xml")
	msgLog := filepath.Join(dir, "uas.msg")
	for f, s := range map[string]string{uasFile: astCarrierUAS, uacFile: astDidUAC} {
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	uas := exec.CommandContext(ctx, "sipp", "-sf", uasFile, "-i", "127.0.0.2", "-mi", "127.0.0.2",
		"-p", fmt.Sprint(carrierPort), "-nostdin", "-trace_msg", "-message_file", msgLog, "-trace_err",
		"-error_file", filepath.Join(dir, "uas.err"))
	uas.Dir = dir
	if err := uas.Start(); err != nil {
		t.Fatalf("start SIPp carrier: %v", err)
	}
	t.Cleanup(func() { _ = uas.Process.Kill(); _ = uas.Wait() })

	trunkPassword := "trunk-" + fmt.Sprint(time.Now().UnixNano())
	ast := testenv.StartAsterisk(t, testenv.AsteriskOptions{Params: func(p *asteriskconfigs.Params) {
		p.Trunk = asteriskconfigs.Trunk{
			Name: "carrier", Host: fmt.Sprintf("127.0.0.2:%d", carrierPort),
			Username: "acct1", Password: trunkPassword, Match: []string{"127.0.0.2"},
			FromUser: "+4930123456",
		}
	}})

	// Outbound registration with digest auth.
	astWaitFor(ctx, t, "trunk registration", func() (bool, string) {
		out, _ := ast.CLI(ctx, "pjsip show registrations")
		return strings.Contains(out, "Registered"), out
	})

	// Inbound: a DID from 127.0.0.2 is identified as the trunk and handed to Stasis.
	uac := exec.CommandContext(ctx, "sipp", "-sf", uacFile, "-i", "127.0.0.2", "-mi", "127.0.0.2",
		"-p", fmt.Sprint(astFreeUDPPort(t, "127.0.0.2")), "-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error",
		fmt.Sprintf("127.0.0.1:%d", ast.SIPPort))
	uac.Dir = dir
	if out, err := uac.CombinedOutput(); err != nil {
		t.Errorf("DID call did not end with 503: %v\n%s", err, astLastLines(string(out), 15))
	}
	logData, _ := os.ReadFile(ast.LogPath)
	if !strings.Contains(string(logData), `[4930999@from-trunk:2] Stasis("PJSIP/carrier-`) ||
		!strings.Contains(string(logData), "patchbay,did,4930999") {
		t.Errorf("DID call did not run from-trunk's Stasis(did) on the carrier endpoint; see %s", ast.LogPath)
	}

	// Outbound: a Local channel in from-patchbay dials the number through the trunk, once Asterisk holds the
	// carrier reachable: on a loaded host its first OPTIONS may be answered past qualify_timeout, and a dial to a
	// contact marked Unreachable fails at once (as it should: that is what failover to another trunk is for).
	// A contact marked Unavailable waits for the next qualify (60 s): ask for one at once, as an admin would.
	lastQualify := time.Now()
	astWaitFor(ctx, t, "trunk contact reachable", func() (bool, string) {
		out, err := ast.CLI(ctx, "pjsip show contacts")
		if err != nil {
			return false, err.Error()
		}
		if testenv.ContactUsable(out, "carrier") {
			return true, out
		}
		if time.Since(lastQualify) > 2*time.Second {
			lastQualify = time.Now()
			_, _ = ast.CLI(ctx, "pjsip qualify carrier")
		}
		return false, out
	})
	if _, err := ast.CLI(ctx, "channel originate Local/+4930777@from-patchbay application Wait 2"); err != nil {
		t.Fatal(err)
	}
	astWaitFor(ctx, t, "outbound INVITE and BYE at the carrier", func() (bool, string) {
		b, _ := os.ReadFile(msgLog)
		s := string(b)
		return strings.Contains(s, "INVITE sip:+4930777@127.0.0.2") && strings.Contains(s, "BYE sip:"), astLastLines(s, 30)
	})
	b, _ := os.ReadFile(msgLog)
	if !strings.Contains(string(b), "<sip:+4930123456@") { // originate from the CLI has no caller ID, so the name is "Anonymous"
		t.Errorf("outbound INVITE does not carry the trunk's from_user:\n%s", astLastLines(string(b), 40))
	}
}

func astFreeUDPPort(t *testing.T, ip string) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", ip+":0")
	if err != nil {
		t.Fatalf("find a free UDP port on %s: %v", ip, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func astWaitFor(ctx context.Context, t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		if ctx.Err() == nil { // a check cut short by the deadline tells nothing
			last = state
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s; last state:\n%s", what, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func astLastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
