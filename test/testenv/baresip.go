package testenv

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/patchbay/patchbay/tools/audio"
)

// BaresipOptions describes one softphone.
type BaresipOptions struct {
	Name      string // label for logs; default User
	Registrar string // host:port of the SIP registrar, e.g. "127.0.0.1:5060" (use SIPTLSPort for tls)
	User      string
	Password  string
	Transport string // udp (default), tcp or tls
	SRTP      bool   // mandatory SDES-SRTP (mediaenc=srtp-mand)
	// PlayWAV is what the phone sends in calls. Keep it longer than the call: baresip ends the
	// call when the file ends. Empty: 10 minutes of silence.
	PlayWAV    string
	AutoAnswer bool
	// LocalAddr is the loopback address the phone binds (SIP and RTP); default 127.0.0.1. A carrier test uses
	// 127.0.0.2 so Asterisk identifies it as the trunk by source IP.
	LocalAddr string
	// NoRegister keeps the account from registering (regint=0): a carrier that only places calls.
	NoRegister bool
}

// BaresipEvent is one ctrl_tcp event, e.g. Type "CALL_ESTABLISHED".
type BaresipEvent struct {
	Type      string `json:"type"`
	Class     string `json:"class"`
	Account   string `json:"accountaid"`
	Direction string `json:"direction"`
	PeerURI   string `json:"peeruri"`
	ID        string `json:"id"`
	Param     string `json:"param"`
}

type baresipResponse struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

// Baresip is a running baresip softphone, scripted through its ctrl_tcp module.
type Baresip struct {
	Name    string
	Dir     string // config dir: config, accounts, baresip.log, recordings/
	SIPPort int    // local SIP port

	opts BaresipOptions
	cmd  *exec.Cmd
	done chan struct{}
	conn net.Conn

	writeMu sync.Mutex // one command on the wire at a time

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever events or responses arrive
	events   []BaresipEvent
	consumed map[int]bool // events returned by WaitEvent
	resps    map[string]baresipResponse
	readErr  error
	nextTok  int
}

var errBaresipPortTaken = errors.New("a port picked for it was taken meanwhile")

// launch writes baresip's config on newly picked ports, starts it and connects to its control socket.
func (b *Baresip) launch(bin string, o BaresipOptions) error {
	// baresip listens for TLS on the SIP port + 1: keep the control port off it.
	ports, err := astFreePorts(3)
	if err != nil {
		return fmt.Errorf("pick ports: %w", err)
	}
	b.SIPPort = ports[0]
	ctrlPort := ports[1]
	if ctrlPort == b.SIPPort+1 {
		ctrlPort = ports[2]
	}
	ctrlAddr := fmt.Sprintf("127.0.0.1:%d", ctrlPort)

	if err := os.WriteFile(filepath.Join(b.Dir, "config"), []byte(b.config(o, ctrlAddr)), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.Dir, "accounts"), []byte(b.account(o)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write accounts: %w", err)
	}
	// Stop the (empty) contacts file from being created with samples that dial nothing.
	if err := os.WriteFile(filepath.Join(b.Dir, "contacts"), nil, 0o600); err != nil {
		return fmt.Errorf("write contacts: %w", err)
	}

	logf, err := os.Create(filepath.Join(b.Dir, "baresip.log"))
	if err != nil {
		return err
	}
	b.cmd = exec.Command(bin, "-f", b.Dir)
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start: %w", err)
	}
	logf.Close()
	done := make(chan struct{})
	b.done = done
	cmd := b.cmd
	go func() { // owned by b: ends when the process exits (Close guarantees it)
		_ = cmd.Wait()
		close(done)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ctrlAddr)
		if err == nil {
			b.conn = c
			return nil
		}
		select {
		case <-done:
			if log, _ := os.ReadFile(filepath.Join(b.Dir, "baresip.log")); strings.Contains(string(log), "Address already in use") {
				return errBaresipPortTaken
			}
			return errors.New("exited at startup")
		case <-ctx.Done():
			return fmt.Errorf("ctrl_tcp %s not answering: %w", ctrlAddr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StartBaresip starts a softphone with its own config dir and waits until its control socket is
// up. It does not wait for registration: call WaitRegistered. t.Cleanup stops it.
func StartBaresip(t testing.TB, o BaresipOptions) *Baresip {
	t.Helper()
	bin, err := exec.LookPath("baresip")
	if err != nil {
		t.Fatalf("baresip not found: apt-get install baresip (%v)", err)
	}
	if o.Transport == "" {
		o.Transport = "udp"
	}
	switch o.Transport {
	case "udp", "tcp", "tls":
	default:
		t.Fatalf("baresip %s: transport %q: want udp, tcp or tls", o.Name, o.Transport)
	}
	if o.Name == "" {
		o.Name = o.User
	}
	if _, _, err := net.SplitHostPort(o.Registrar); err != nil {
		t.Fatalf("baresip %s: registrar %q must be host:port: %v", o.Name, o.Registrar, err)
	}

	// A short path: baresip's sndfile module builds each recording's file name in a 128-byte buffer and cuts
	// longer ones silently, and t.TempDir() paths carry the test's name.
	dir, err := os.MkdirTemp("", "pb-baresip-")
	if err != nil {
		t.Fatalf("baresip %s: make its config dir: %v", o.Name, err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	b := &Baresip{
		Name:     o.Name,
		Dir:      dir,
		opts:     o,
		changed:  make(chan struct{}),
		consumed: map[int]bool{},
		resps:    map[string]baresipResponse{},
	}
	if o.PlayWAV == "" {
		o.PlayWAV = filepath.Join(b.Dir, "silence.wav")
		if err := audio.WriteWAV(o.PlayWAV, make([]int16, 8000*600), 8000); err != nil {
			t.Fatalf("baresip %s: write silence WAV: %v", o.Name, err)
		}
	}
	if _, err := os.Stat(o.PlayWAV); err != nil {
		t.Fatalf("baresip %s: WAV to play: %v", o.Name, err)
	}
	if err := os.MkdirAll(b.recordDir(), 0o755); err != nil {
		t.Fatalf("baresip %s: %v", o.Name, err)
	}
	// A failed test keeps the phone's log in ArtifactsDir()/<test>-baresip-<name>: its dir is removed at the end.
	// (Registered before Close's cleanup, so it runs after it, on the whole log.)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if log, err := os.ReadFile(filepath.Join(dir, "baresip.log")); err == nil {
			kept := testArtifactDir(t.Name(), "baresip-"+o.Name)
			if os.MkdirAll(kept, 0o755) == nil && os.WriteFile(filepath.Join(kept, "baresip.log"), log, 0o644) == nil {
				t.Logf("baresip %s: log kept in %s", o.Name, kept)
			}
		}
	})
	// The ports are free when picked but are ephemeral ones, so another process may take one before baresip
	// binds it (its TLS port, SIP + 1, is not even checked): then start again on new ports.
	t.Cleanup(func() { b.Close() })
	for attempt := 1; ; attempt++ {
		err := b.launch(bin, o)
		if err == nil {
			break
		}
		if errors.Is(err, errBaresipPortTaken) && attempt < 4 {
			t.Logf("baresip %s: %v; again on other ports", o.Name, err)
			continue
		}
		t.Fatalf("baresip %s: %v\n%s", o.Name, err, b.logTail())
	}
	go b.readLoop() // owned by b: ends when Close closes the connection
	return b
}

func (b *Baresip) recordDir() string { return filepath.Join(b.Dir, "recordings") }

func (b *Baresip) config(o BaresipOptions, ctrlAddr string) string {
	lines := []string{
		"poll_method epoll",
		fmt.Sprintf("sip_listen %s:%d", o.localAddr(), b.SIPPort),
		"call_local_timeout 120",
		"call_max_calls 4",
		// No sound card: send the WAV; record what is heard (sndfile, in the receive path before the player). The
		// players are aubridge's, which never run without a source on the same device: ALSA's null device took
		// samples as fast as they came, and its player thread spun a core for every phone in a call. Ringback has
		// a device of its own: sharing the call's broke the call's playback path (frames dropped, nothing recorded).
		"audio_player aubridge,nowhere",
		"audio_alert aubridge,nowhere-alert",
		"audio_source aufile," + o.PlayWAV,
		"audio_level no",
		// No jitter buffer (loopback needs none). baresip 1.0 flushes its buffer on an SSRC change only once the
		// buffer has played a frame, so a change in the first 100 ms (Asterisk's new source when a transfer bridges
		// the phone, right after its first packets) left the old stream's higher sequence numbers in it, and every
		// packet after was dropped as late ("dropping … (Connection timed out)"): a silent recording, TestCTICalls'
		// blind transfer flake.
		"jitter_buffer_delay 0-0",
		"rtp_stats no",
		// "lo" fails as an interface name; the address works.
		"net_interface " + o.localAddr(),
		"module_path /usr/lib/baresip/modules",
		"module g711.so",
		"module aubridge.so",
		"module aufile.so",
		"module sndfile.so",
		"module srtp.so",
		"module_tmp uuid.so",
		"module_tmp account.so",
		"module_app menu.so",
		"module_app ctrl_tcp.so",
		"ctrl_tcp_listen " + ctrlAddr,
		"snd_path " + b.recordDir(),
	}
	return strings.Join(lines, "\n") + "\n"
}

func (o BaresipOptions) localAddr() string {
	if o.LocalAddr == "" {
		return "127.0.0.1"
	}
	return o.LocalAddr
}

func (b *Baresip) account(o BaresipOptions) string {
	answer := "manual"
	if o.AutoAnswer {
		answer = "auto"
	}
	regint := 300
	if o.NoRegister {
		regint = 0
	}
	acc := fmt.Sprintf("<sip:%s@%s;transport=%s>;auth_pass=%s;answermode=%s;regint=%d;audio_codecs=PCMU,PCMA",
		o.User, o.Registrar, o.Transport, o.Password, answer, regint)
	if o.SRTP {
		acc += ";mediaenc=srtp-mand"
	}
	return acc
}

// readLoop decodes ctrl_tcp netstrings ("len:json,") into events and command responses.
func (b *Baresip) readLoop() {
	r := bufio.NewReader(b.conn)
	var err error
	for {
		var msg []byte
		msg, err = baresipReadNetstring(r)
		if err != nil {
			break
		}
		var head struct {
			Event    bool `json:"event"`
			Response bool `json:"response"`
		}
		if json.Unmarshal(msg, &head) != nil {
			continue
		}
		b.mu.Lock()
		switch {
		case head.Event:
			var ev BaresipEvent
			if json.Unmarshal(msg, &ev) == nil {
				b.events = append(b.events, ev)
			}
		case head.Response:
			var resp baresipResponse
			if json.Unmarshal(msg, &resp) == nil {
				b.resps[resp.Token] = resp
			}
		}
		b.notifyLocked()
		b.mu.Unlock()
	}
	b.mu.Lock()
	b.readErr = fmt.Errorf("baresip %s control connection: %w", b.Name, err)
	b.notifyLocked()
	b.mu.Unlock()
}

func (b *Baresip) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

func baresipReadNetstring(r *bufio.Reader) ([]byte, error) {
	lenStr, err := r.ReadString(':')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(lenStr, ":")))
	if err != nil || n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("bad netstring length %q", lenStr)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if buf[n] != ',' {
		return nil, errors.New("netstring not terminated by ','")
	}
	return buf[:n], nil
}

// command sends one ctrl_tcp command and waits for its response.
func (b *Baresip) command(ctx context.Context, cmd, params string) (string, error) {
	b.mu.Lock()
	b.nextTok++
	tok := strconv.Itoa(b.nextTok)
	b.mu.Unlock()
	msg, err := json.Marshal(map[string]string{"command": cmd, "params": params, "token": tok})
	if err != nil {
		return "", err
	}
	b.writeMu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		_ = b.conn.SetWriteDeadline(dl)
	}
	_, err = fmt.Fprintf(b.conn, "%d:%s,", len(msg), msg)
	b.writeMu.Unlock()
	if err != nil {
		return "", fmt.Errorf("baresip %s: send %s: %w", b.Name, cmd, err)
	}
	for {
		b.mu.Lock()
		resp, ok := b.resps[tok]
		delete(b.resps, tok)
		ch, rerr := b.changed, b.readErr
		b.mu.Unlock()
		if ok {
			if !resp.OK {
				return resp.Data, fmt.Errorf("baresip %s: %s %s failed: %s", b.Name, cmd, params, strings.TrimSpace(resp.Data))
			}
			return resp.Data, nil
		}
		if rerr != nil {
			return "", rerr
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", fmt.Errorf("baresip %s: no answer to %s: %w", b.Name, cmd, ctx.Err())
		}
	}
}

// Dial calls uri: a full SIP URI or just a user/extension (completed with the registrar's domain).
func (b *Baresip) Dial(ctx context.Context, uri string) error {
	if !strings.HasPrefix(uri, "sip:") {
		uri = fmt.Sprintf("sip:%s@%s;transport=%s", uri, b.opts.Registrar, b.opts.Transport)
	}
	_, err := b.command(ctx, "dial", uri)
	return err
}

// Hangup ends the current call.
func (b *Baresip) Hangup(ctx context.Context) error {
	_, err := b.command(ctx, "hangup", "")
	return err
}

// Command runs any baresip command (e.g. "reginfo", "send_dtmf 1") and returns its output.
func (b *Baresip) Command(ctx context.Context, cmd, params string) (string, error) {
	return b.command(ctx, cmd, params)
}

// WaitEvent returns the oldest event of that type not yet returned, waiting for one if needed.
func (b *Baresip) WaitEvent(ctx context.Context, typ string) (BaresipEvent, error) {
	return b.WaitAnyEvent(ctx, typ)
}

// WaitAnyEvent returns the oldest event of any of the types not yet returned (e.g. CALL_ESTABLISHED or
// CALL_CLOSED, whichever comes), waiting for one if needed.
func (b *Baresip) WaitAnyEvent(ctx context.Context, types ...string) (BaresipEvent, error) {
	typ := strings.Join(types, "|")
	for {
		b.mu.Lock()
		for i, ev := range b.events {
			if slices.Contains(types, ev.Type) && !b.consumed[i] {
				b.consumed[i] = true
				b.mu.Unlock()
				return ev, nil
			}
		}
		ch, rerr := b.changed, b.readErr
		b.mu.Unlock()
		if rerr != nil {
			return BaresipEvent{}, fmt.Errorf("wait for %s: %w", typ, rerr)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return BaresipEvent{}, fmt.Errorf("baresip %s: no %s event (seen: %s): %w\n%s",
				b.Name, typ, b.eventTypes(), ctx.Err(), b.logTail())
		}
	}
}

func (b *Baresip) eventTypes() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s []string
	for _, ev := range b.events {
		s = append(s, ev.Type)
	}
	return strings.Join(s, ",")
}

// WaitRegistered waits until the account is registered. The REGISTER_OK event may come before the
// control socket connects, so it also asks baresip (reginfo).
func (b *Baresip) WaitRegistered(ctx context.Context) error {
	for {
		b.mu.Lock()
		var failed string
		for _, ev := range b.events {
			switch ev.Type {
			case "REGISTER_OK":
				b.mu.Unlock()
				return nil
			case "REGISTER_FAIL":
				failed = ev.Param
			}
		}
		b.mu.Unlock()
		if failed != "" {
			return fmt.Errorf("baresip %s: registration to %s failed: %s", b.Name, b.opts.Registrar, failed)
		}
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		out, err := b.command(qctx, "reginfo", "")
		cancel()
		if err == nil && (strings.Contains(out, " OK ") || strings.Contains(out, "\x1b[32mOK")) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("baresip %s: not registered to %s (%s): %w\n%s", b.Name, b.opts.Registrar, strings.TrimSpace(out), ctx.Err(), b.logTail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// RecordingPath is the WAV of what the phone heard in its latest call ("" if none). The file is
// complete once the call has closed.
func (b *Baresip) RecordingPath() string {
	matches, _ := filepath.Glob(filepath.Join(b.recordDir(), "*dec*.wav"))
	if len(matches) == 0 {
		return ""
	}
	sort.Slice(matches, func(i, j int) bool {
		si, ei := os.Stat(matches[i])
		sj, ej := os.Stat(matches[j])
		if ei != nil || ej != nil {
			return matches[i] < matches[j]
		}
		return si.ModTime().Before(sj.ModTime())
	})
	return matches[len(matches)-1]
}

// Recording waits until the latest recording is finished and returns its samples and rate. Call it after
// CALL_CLOSED. sndfile writes the RIFF size into the header only when it closes the file, and it buffers writes,
// so a file that merely stopped growing for a moment may still be half written: finished means the header's size
// matches the file, or (for a recorder that never fixes the header) no growth for a whole second.
//
// It waits at most 20 s: a recording that is not there by then never will be, and a test's whole deadline spent
// waiting for it would fail everything after it too.
func (b *Baresip) Recording(ctx context.Context) ([]int16, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var (
		lastSize int64 = -1
		stableAt time.Time
	)
	for {
		if path := b.RecordingPath(); path != "" {
			if st, err := os.Stat(path); err == nil && st.Size() > 44 {
				if st.Size() != lastSize {
					lastSize, stableAt = st.Size(), time.Now()
				}
				if wavHeaderComplete(path, st.Size()) || time.Since(stableAt) >= time.Second {
					s, rate, err := audio.ReadWAV(path)
					if err != nil {
						return nil, 0, fmt.Errorf("baresip %s: read recording: %w", b.Name, err)
					}
					return s, rate, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			files, _ := filepath.Glob(filepath.Join(b.recordDir(), "*"))
			return nil, 0, fmt.Errorf("baresip %s: no finished recording in %s (files %v; events %v): %w\n%s",
				b.Name, b.recordDir(), files, b.eventTypes(), ctx.Err(), b.logTail())
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// wavHeaderComplete reports whether the RIFF chunk size in path's header accounts for the whole file of size.
func wavHeaderComplete(path string, size int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var hdr [8]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || string(hdr[:4]) != "RIFF" {
		return false
	}
	return int64(binary.LittleEndian.Uint32(hdr[4:]))+8 == size
}

// Close stops baresip (SIGTERM, then SIGKILL after 3 s). Safe to call more than once.
func (b *Baresip) Close() {
	if b.conn != nil {
		b.conn.Close()
	}
	if b.done == nil { // never started
		return
	}
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(3 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

func (b *Baresip) logTail() string {
	data, _ := os.ReadFile(filepath.Join(b.Dir, "baresip.log"))
	return "--- baresip " + b.Name + " log:\n" + astTail(string(data), 25)
}

// Events returns the types of every ctrl_tcp event seen so far, in order (e.g. to prove no re-INVITE came:
// baresip reports each remote SDP as CALL_REMOTE_SDP).
func (b *Baresip) Events() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.events))
	for _, ev := range b.events {
		out = append(out, ev.Type)
	}
	return out
}

// AllRecordings waits until the latest recording is finished (see Recording) and returns every recording of the
// phone joined in the order they were written: baresip starts a new file when a re-INVITE (hold, a session
// refresh) restarts its audio stream.
func (b *Baresip) AllRecordings(ctx context.Context) ([]int16, int, error) {
	if _, _, err := b.Recording(ctx); err != nil {
		return nil, 0, err
	}
	matches, _ := filepath.Glob(filepath.Join(b.recordDir(), "*dec*.wav"))
	sort.Slice(matches, func(i, j int) bool {
		si, ei := os.Stat(matches[i])
		sj, ej := os.Stat(matches[j])
		if ei != nil || ej != nil {
			return matches[i] < matches[j]
		}
		return si.ModTime().Before(sj.ModTime())
	})
	var all []int16
	rate := 0
	for _, m := range matches {
		s, r, err := audio.ReadWAV(m)
		if err != nil {
			return nil, 0, fmt.Errorf("baresip %s: read recording %s: %w", b.Name, m, err)
		}
		if rate != 0 && r != rate {
			return nil, 0, fmt.Errorf("baresip %s: recordings at %d and %d Hz", b.Name, rate, r)
		}
		rate = r
		all = append(all, s...)
	}
	return all, rate, nil
}
