package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SIPpOptions describe a SIPp instance playing a carrier (Debian package sip-tester: UDP only, no TLS/SRTP).
type SIPpOptions struct {
	// IP to bind; default 127.0.0.2 (a loopback address of its own, so that Asterisk's identify-by-IP tells the
	// carrier from the phones on 127.0.0.1).
	IP string
	// Scenario is the scenario XML; default CarrierUAS.
	Scenario string
	// RTPEcho echoes the RTP received on the media port back to its sender (audio both ways through the trunk).
	RTPEcho bool
	// RingFor is how long the UAS rings (180) before answering; default 200 ms.
	RingFor time.Duration
	// MediaPort, when set, is the port SIPp advertises in its SDP instead of its own media port: a test's own
	// RTP endpoint (see CarrierRTP) then plays and records the carrier's audio.
	MediaPort int
}

// optionsAnswer is every carrier scenario's answer to Asterisk's qualify OPTIONS. The OPTIONS "call" then stays
// 4 s: SIPp answers a retransmission of a request only while its call lives, and drops it as a "Dead call" after.
// Asterisk retransmits when it missed the 200 (seen in CI, runs 58 and 64), and a qualify that times out (3 s)
// marks the trunk Unreachable, so every call to it then fails with ARI's 500 "Allocation failed".
const optionsAnswer = `  <label id="options"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTagOpt[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <pause milliseconds="4000"/>
`

// CarrierPCMAUAS is CarrierUAS offering PCMA only (a European carrier): Asterisk must send and accept PCMA.
var CarrierPCMAUAS = strings.NewReplacer(
	"m=audio [media_port] RTP/AVP 0 101", "m=audio [media_port] RTP/AVP 8 101",
	"a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
).Replace(CarrierUAS)

// Carrier503 refuses every INVITE with 503 Service Unavailable (a carrier that is overloaded or down behind a
// proxy) and answers OPTIONS, so Asterisk still sees the trunk as reachable.
const Carrier503 = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="Patchbay test carrier (503)">
  <recv request="OPTIONS" optional="true" next="options"/>
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[

SIP/2.0 503 Service Unavailable
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag03[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK" next="end"/>
` + optionsAnswer + `  <label id="end"/>
  <nop/>
</scenario>
`

// CarrierSilent takes INVITEs and never answers them (no 100, no 180): a carrier that is down behind a
// balancer. It still answers OPTIONS.
const CarrierSilent = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="Patchbay test carrier (silent)">
  <recv request="OPTIONS" optional="true" next="options"/>
  <recv request="INVITE" crlf="true"/>
  <pause milliseconds="40000"/>
  <nop next="end"/>
` + optionsAnswer + `  <label id="end"/>
  <nop/>
</scenario>
`

// CarrierUAS answers every INVITE after ringing (100, 180, 200 with PCMU SDP on SIPp's media port), waits for
// the BYE, and answers OPTIONS (Asterisk qualifies the trunk; an unanswered qualify makes the trunk unreachable).
const CarrierUAS = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="Patchbay test carrier (UAS)">
  <recv request="OPTIONS" optional="true" next="options"/>
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[

SIP/2.0 100 Trying
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <send><![CDATA[

SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
  <pause milliseconds="{{RING_MS}}"/>
  <send retrans="500"><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=carrier 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv

]]></send>
  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
  <send next="end"><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
` + optionsAnswer + `  <label id="end"/>
  <nop/>
</scenario>
`

// SIPp is a running SIPp.
type SIPp struct {
	IP              string
	Port, MediaPort int
	Dir             string
	// MessageLog is SIPp's -trace_msg file: every SIP message sent and received.
	MessageLog string

	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// StartSIPp starts SIPp as a UAS on o.IP and a free port, and stops it at cleanup. It fails the test when sipp
// is not installed.
func StartSIPp(t testing.TB, o SIPpOptions) *SIPp {
	t.Helper()
	bin, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatalf("sipp not found in PATH: install it with `apt-get install -y sip-tester` (%v)", err)
	}
	if o.IP == "" {
		o.IP = "127.0.0.2"
	}
	if o.Scenario == "" {
		o.Scenario = CarrierUAS
	}
	if o.RingFor <= 0 {
		o.RingFor = 200 * time.Millisecond
	}
	s := &SIPp{IP: o.IP, Dir: t.TempDir(), t: t, done: make(chan struct{})}
	scen := filepath.Join(s.Dir, "scenario.xml")
	text := strings.ReplaceAll(o.Scenario, "{{RING_MS}}", strconv.Itoa(int(o.RingFor/time.Millisecond)))
	if o.MediaPort != 0 {
		text = strings.ReplaceAll(text, "m=audio [media_port]", "m=audio "+strconv.Itoa(o.MediaPort))
	}
	if err := os.WriteFile(scen, []byte(text), 0o644); err != nil {
		t.Fatalf("write SIPp scenario: %v", err)
	}
	s.MessageLog = filepath.Join(s.Dir, "messages.log")
	if s.Port, s.MediaPort, err = sippPorts(o.IP); err != nil {
		t.Fatalf("find free ports on %s for SIPp: %v", o.IP, err)
	}
	args := []string{"-sf", scen, "-i", o.IP, "-p", strconv.Itoa(s.Port), "-t", "u1",
		"-mi", o.IP, "-mp", strconv.Itoa(s.MediaPort), "-nostdin",
		"-trace_msg", "-message_file", s.MessageLog, "-trace_err", "-error_file", filepath.Join(s.Dir, "errors.log"),
		"-max_recv_loops", "1000", "-aa"}
	if o.RTPEcho {
		args = append(args, "-rtp_echo")
	}
	out, err := os.Create(filepath.Join(s.Dir, "sipp.out"))
	if err != nil {
		t.Fatalf("create SIPp output file: %v", err)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Dir = s.Dir
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start sipp: %v", err)
	}
	out.Close()
	go func() { // owned by s: ends when the process exits, which Stop guarantees
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.Stop)
	// Ready when its SIP port is bound.
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case <-s.done:
			t.Fatalf("sipp exited at start:\n%s", s.tail())
		default:
		}
		if c, err := net.ListenPacket("udp4", net.JoinHostPort(o.IP, strconv.Itoa(s.Port))); err != nil {
			break // taken: SIPp is listening
		} else {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("sipp did not bind %s:%d within 5 s:\n%s", o.IP, s.Port, s.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("sipp carrier on %s:%d (media %d), messages in %s", o.IP, s.Port, s.MediaPort, s.MessageLog)
	return s
}

// Addr is SIPp's host:port, for the trunk's host.
func (s *SIPp) Addr() string { return net.JoinHostPort(s.IP, strconv.Itoa(s.Port)) }

// Stop ends SIPp (SIGTERM, then SIGKILL) and waits for it; its logs stay readable. Safe to call twice.
func (s *SIPp) Stop() {
	s.once.Do(func() {
		if s.cmd.Process == nil {
			return
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(3 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if s.t.Failed() {
			s.t.Logf("sipp output tail:\n%s", s.tail())
			s.keepTrace()
		}
	})
}

// keepTrace copies SIPp's message trace and error log to ArtifactsDir()/<test>-sipp-<port>: its dir is on the
// tests' tmpfs, gone after the run, and a carrier's side of a failed call is often the missing half.
func (s *SIPp) keepTrace() {
	dir := testArtifactDir(s.t.Name(), "sipp-"+strconv.Itoa(s.Port))
	for _, f := range []string{s.MessageLog, filepath.Join(s.Dir, "errors.log"), filepath.Join(s.Dir, "sipp.out")} {
		if b, err := os.ReadFile(f); err == nil && os.MkdirAll(dir, 0o755) == nil {
			_ = os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644)
		}
	}
	s.t.Logf("sipp trace kept in %s", dir)
}

func (s *SIPp) tail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "sipp.out"))
	e, _ := os.ReadFile(filepath.Join(s.Dir, "errors.log"))
	return astTail(string(b), 30) + "\n" + astTail(string(e), 30)
}

// SIPMessage is one message from SIPp's trace.
type SIPMessage struct {
	Received bool
	Start    string              // request or status line
	Headers  map[string][]string // by lower-case name
	Body     string
}

// Method returns the request method ("" for responses).
func (m SIPMessage) Method() string {
	if strings.HasPrefix(m.Start, "SIP/2.0") {
		return ""
	}
	method, _, _ := strings.Cut(m.Start, " ")
	return method
}

// Header returns the first value of a header (case-insensitive; compact forms are not expanded).
func (m SIPMessage) Header(name string) string {
	if v := m.Headers[strings.ToLower(name)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Messages parses SIPp's message trace. SIPp writes it through stdio buffers, so call Stop first for a
// complete picture, or poll ReceivedInvites, which tolerates a partly written log.
func (s *SIPp) Messages() ([]SIPMessage, error) {
	b, err := os.ReadFile(s.MessageLog)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseSIPpTrace(string(b)), nil
}

// ReceivedInvites returns the initial INVITEs SIPp received (no To tag), once each: UDP retransmissions of an
// INVITE nobody answered share its Call-ID and CSeq and are left out.
func (s *SIPp) ReceivedInvites() ([]SIPMessage, error) {
	msgs, err := s.Messages()
	if err != nil {
		return nil, err
	}
	var out []SIPMessage
	seen := map[string]bool{}
	for _, m := range msgs {
		if m.Received && m.Method() == "INVITE" && !strings.Contains(m.Header("To"), "tag=") {
			key := m.Header("Call-ID") + "\x00" + m.Header("CSeq")
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, m)
		}
	}
	return out, nil
}

// Responses returns the status lines SIPp sent, e.g. "SIP/2.0 503 Service Unavailable".
func (s *SIPp) Responses() ([]string, error) {
	msgs, err := s.Messages()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range msgs {
		if !m.Received && m.Method() == "" {
			out = append(out, m.Start)
		}
	}
	return out, nil
}

// WaitInvites polls until SIPp's trace holds at least n initial INVITEs, for 30 s at most: an INVITE that has not
// come by then is not coming, and a caller's test-wide context must be left for the test's other steps (a missing
// INVITE once used up TestCTICalls' four minutes and failed every subtest after it).
func (s *SIPp) WaitInvites(ctx context.Context, n int) ([]SIPMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		inv, err := s.ReceivedInvites()
		if err == nil && len(inv) >= n {
			return inv, nil
		}
		select {
		case <-ctx.Done():
			return inv, fmt.Errorf("SIPp received %d INVITEs, want %d: %w", len(inv), n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// parseSIPpTrace splits a -trace_msg file into messages. Each entry starts with a line of dashes and a
// timestamp, then "UDP message received [N] bytes :" or "UDP message sent (N bytes):", a blank line, the message.
func parseSIPpTrace(text string) []SIPMessage {
	var out []SIPMessage
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		recv := strings.Contains(l, "message received")
		if !recv && !strings.Contains(l, "message sent") {
			continue
		}
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
			j++
		}
		if j >= len(lines) {
			break
		}
		m := SIPMessage{Received: recv, Start: strings.TrimSpace(lines[j]), Headers: map[string][]string{}}
		k := j + 1
		for ; k < len(lines) && strings.TrimSpace(lines[k]) != ""; k++ {
			name, val, ok := strings.Cut(lines[k], ":")
			if !ok {
				continue
			}
			key := strings.ToLower(strings.TrimSpace(name))
			m.Headers[key] = append(m.Headers[key], strings.TrimSpace(val))
		}
		var body []string
		for k++; k < len(lines) && !strings.HasPrefix(lines[k], "-----") && !strings.Contains(lines[k], "message received") && !strings.Contains(lines[k], "message sent"); k++ {
			body = append(body, lines[k])
		}
		m.Body = strings.TrimSpace(strings.Join(body, "\n"))
		out = append(out, m)
		i = k - 1
	}
	return out
}

// sippPorts picks a free UDP port for SIP and an even one, with the next three free, for media (SIPp uses the
// media port, +1 for RTCP, +2 for video).
func sippPorts(ip string) (sip, media int, err error) {
	free := func(p int) bool {
		c, err := net.ListenPacket("udp4", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	c, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, 0, fmt.Errorf("bind %s (is it a loopback address here?): %w", ip, err)
	}
	sip = c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	for tries := 0; tries < 200; tries++ {
		p := 46000 + 4*int(astRandomUint16()%1000)
		if p != sip && free(p) && free(p+1) && free(p+2) && free(p+3) {
			return sip, p, nil
		}
	}
	return 0, 0, errors.New("no free media ports")
}

// SIPpCall is one call placed by RunSIPpUAC.
type SIPpCall struct {
	// Target is the host:port called (Asterisk's SIP port); Service the number dialled (a DID).
	Target, Service string
	// IP to send from; default 127.0.0.2, so Asterisk identifies the call as coming from the trunk.
	IP string
	// Hold is how long the call stays up after the answer before SIPp hangs up; default 3 s.
	Hold time.Duration
}

// RunSIPpUAC places one call with SIPp's built-in UAC scenario (INVITE with PCMU SDP, ACK, pause, BYE) and
// waits for it; it returns an error with SIPp's output unless the call was answered and ended normally.
func RunSIPpUAC(ctx context.Context, t testing.TB, c SIPpCall) error {
	t.Helper()
	bin, err := exec.LookPath("sipp")
	if err != nil {
		t.Fatalf("sipp not found in PATH: install it with `apt-get install -y sip-tester` (%v)", err)
	}
	if c.IP == "" {
		c.IP = "127.0.0.2"
	}
	if c.Hold <= 0 {
		c.Hold = 3 * time.Second
	}
	dir := t.TempDir()
	sip, media, err := sippPorts(c.IP)
	if err != nil {
		return err
	}
	args := []string{c.Target, "-sn", "uac", "-s", c.Service, "-i", c.IP, "-p", strconv.Itoa(sip), "-t", "u1",
		"-mi", c.IP, "-mp", strconv.Itoa(media), "-m", "1", "-d", strconv.Itoa(int(c.Hold / time.Millisecond)),
		"-nostdin", "-timeout", "30s", "-trace_msg", "-message_file", filepath.Join(dir, "messages.log")}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		msgs, _ := os.ReadFile(filepath.Join(dir, "messages.log"))
		return fmt.Errorf("sipp UAC call to %s@%s failed: %w\n%s\n%s", c.Service, c.Target, err, astTail(string(out), 25), astTail(string(msgs), 60))
	}
	return nil
}

// CarrierUASRefresh is CarrierUAS that also answers in-dialog re-INVITEs and UPDATEs (session-timer refreshes,
// hold) until the BYE, so long calls survive Asterisk's session refreshes.
const CarrierUASRefresh = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="Patchbay test carrier (UAS, session refreshes)">
  <recv request="OPTIONS" optional="true" next="options"/>
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[

SIP/2.0 100 Trying
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <pause milliseconds="{{RING_MS}}"/>
  <send retrans="500"><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE
Content-Type: application/sdp
Content-Length: [len]

v=0
o=carrier 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv

]]></send>
  <recv request="ACK" crlf="true"/>
  <label id="loop"/>
  <recv request="INVITE" optional="true" next="reinvite"/>
  <recv request="UPDATE" optional="true" next="update"/>
  <recv request="BYE" next="bye"/>
  <label id="reinvite"/>
  <send retrans="500"><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
[last_Session-Expires:]
Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=carrier 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv

]]></send>
  <recv request="ACK" next="loop"/>
  <label id="update"/>
  <send next="loop"><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
[last_Session-Expires:]
Contact: <sip:carrier@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
  <label id="bye"/>
  <send next="end"><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
` + optionsAnswer + `  <label id="end"/>
  <nop/>
</scenario>
`
