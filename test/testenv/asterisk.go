// Package testenv starts the real things integration tests need: Asterisk 22 in a Debian sid
// chroot, SIP softphones (baresip), Redis, Chromium. Tests only.
package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/certs"
)

// DefaultAsteriskRoot is where scripts/asterisk-root.sh builds the chroot; PATCHBAY_ASTERISK_ROOT
// overrides it.
const DefaultAsteriskRoot = "/var/cache/patchbay/asterisk-root"

// astInstancesDir is where per-instance directories live, as seen inside the chroot.
const astInstancesDir = "/var/lib/patchbay-test"

// AsteriskOptions tunes one test instance.
type AsteriskOptions struct {
	// Params edits the instance's parameters after the harness filled in ports, password,
	// directories and the sample phones (101-106, see SamplePhones).
	Params func(*asteriskconfigs.Params)
	// Extra appends text to rendered files (or creates files), keyed by file name, e.g.
	// {"extensions.conf": "[test]\nexten => 1,1,Hangup()\n"}.
	Extra map[string]string
}

// Asterisk is one running Asterisk instance in the shared chroot.
type Asterisk struct {
	Root string // the chroot
	Dir  string // the instance directory on the host (inside Root)

	HTTPPort, HTTPSPort, SIPPort, SIPTLSPort int

	ARIUser, ARIPassword, App string
	// CertDir holds ca.crt, server.crt, server.key on the host (Params.CertDir is the chroot path).
	CertDir string
	// Params are what was rendered; paths in it are as seen inside the chroot.
	Params asteriskconfigs.Params
	// LogPath is Asterisk's console output on the host.
	LogPath string

	id       string
	confPath string // asterisk.conf inside the chroot

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	mounted bool
	// The watchdog leaves an instance alone while it boots (ready false), while frozen on purpose, and for a few
	// seconds after Thaw (quietUntil, unix ns) while it catches up.
	ready, frozen atomic.Bool
	quietUntil    atomic.Int64
	watch         *asteriskWatch
}

// SamplePhones are the softphones every test instance has; passwords are random per instance.
var SamplePhones = []struct {
	Name      string
	Transport string
	SRTP      bool
}{
	{"101", asteriskconfigs.TransportUDP, false},
	{"102", asteriskconfigs.TransportUDP, false},
	{"103", asteriskconfigs.TransportTLS, true},
	{"104", asteriskconfigs.TransportTLS, true},
	{"105", asteriskconfigs.TransportTCP, false},
	{"106", asteriskconfigs.TransportWSS, false}, // Asterisk-native WebRTC (webrtc=yes, DTLS)
}

// AsteriskRoot returns the chroot path, building it with scripts/asterisk-root.sh when missing.
func AsteriskRoot(t testing.TB) string {
	t.Helper()
	root := os.Getenv("PATCHBAY_ASTERISK_ROOT")
	if root == "" {
		root = DefaultAsteriskRoot
	}
	if _, err := os.Stat(filepath.Join(root, "usr/sbin/asterisk")); err == nil {
		return root
	}
	if os.Geteuid() != 0 {
		t.Fatalf("Asterisk tests need root (chroot, mount): run `sudo go test -tags integration ./test/integration/...`")
	}
	script := filepath.Join(astRepoRoot(), "scripts", "asterisk-root.sh")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, script, root).CombinedOutput()
	if err != nil {
		t.Fatalf("build the Asterisk root with %s %s: %v (needs network to deb.debian.org and apt-get install mmdebstrap)\n%s",
			script, root, err, astTail(string(out), 30))
	}
	return root
}

func astRepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// StartAsterisk starts an Asterisk instance on free loopback ports and waits until ARI answers.
// Any failure is fatal for t; t.Cleanup stops the instance.
func StartAsterisk(t testing.TB, opts AsteriskOptions) *Asterisk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("Asterisk tests need root (chroot, mount): run `sudo go test -tags integration ./test/integration/...`")
	}
	root := AsteriskRoot(t)
	uid, gid, err := astLookupUser(root, "asterisk")
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := astReapStale(root); err != nil {
		t.Logf("cleaning stale Asterisk instances: %v", err)
	}

	a := &Asterisk{Root: root, id: astRandomHex(6)}
	chrootDir := filepath.Join(astInstancesDir, a.id)
	a.Dir = filepath.Join(root, chrootDir)
	// proc, /dev and the instances' tmpfs, before anything is written into the instance dir.
	if err := astAcquireMounts(root, a.id); err != nil {
		t.Fatalf("mount proc, /dev and the instances' tmpfs in %s: %v", root, err)
	}
	a.mounted = true
	t.Cleanup(func() { a.cleanup(t) })
	// The parent must be traversable by the chroot's asterisk user.
	parent := filepath.Join(root, astInstancesDir)
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatalf("chmod %s: %v", parent, err)
	}
	// res_crypto reads astkeydir/keys; Debian's package does not create it.
	if err := os.MkdirAll(filepath.Join(root, "var/lib/asterisk/keys"), 0o755); err != nil {
		t.Fatalf("create the chroot's key dir: %v", err)
	}
	// spool/recording: ARI records into <astspooldir>/recording and fails with 500 when it is missing.
	for _, sub := range []string{"etc", "run", "db", "log", "spool", "spool/recording", "keys"} {
		if err := os.MkdirAll(filepath.Join(a.Dir, sub), 0o750); err != nil {
			t.Fatalf("create Asterisk instance dir: %v", err)
		}
	}
	// The owner file lets a later run recognise this instance as stale if this process dies.
	if err := os.WriteFile(filepath.Join(a.Dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatalf("write instance owner file: %v", err)
	}

	a.CertDir = filepath.Join(a.Dir, "keys")
	if _, err := certs.Ensure(certs.Options{Dir: a.CertDir, Hosts: []string{"localhost", "127.0.0.1"}}); err != nil {
		t.Fatalf("make test certificates in %s: %v", a.CertDir, err)
	}

	p := asteriskconfigs.DefaultParams()
	ports, err := astFreePorts(4)
	if err != nil {
		t.Fatalf("pick free ports: %v", err)
	}
	p.HTTPBindAddr, p.SIPBindAddr = "127.0.0.1", "127.0.0.1"
	p.HTTPPort, p.HTTPSPort, p.SIPPort, p.SIPTLSPort = ports[0], ports[1], ports[2], ports[3]
	// A random 200-port slice keeps concurrent instances from fighting over RTP ports.
	base := 20000 + 200*int(astRandomUint16()%50)
	p.RTPStart, p.RTPEnd = base, base+199
	p.ARIPassword = astRandomHex(16)
	p.CertDir = filepath.Join(chrootDir, "keys")
	p.EtcDir = filepath.Join(chrootDir, "etc")
	p.RunDir = filepath.Join(chrootDir, "run")
	p.DBDir = filepath.Join(chrootDir, "db")
	p.LogDir = filepath.Join(chrootDir, "log")
	p.SpoolDir = filepath.Join(chrootDir, "spool")
	p.LocalNets = []string{"127.0.0.0/8"}
	for _, ph := range SamplePhones {
		p.Phones = append(p.Phones, asteriskconfigs.Phone{
			Name: ph.Name, Password: astRandomHex(12), Transport: ph.Transport, SRTP: ph.SRTP,
		})
	}
	if opts.Params != nil {
		opts.Params(&p)
	}
	a.Params = p
	a.HTTPPort, a.HTTPSPort, a.SIPPort, a.SIPTLSPort = p.HTTPPort, p.HTTPSPort, p.SIPPort, p.SIPTLSPort
	a.ARIUser, a.ARIPassword, a.App = p.ARIUser, p.ARIPassword, p.App
	a.confPath = filepath.Join(p.EtcDir, "asterisk.conf")
	a.LogPath = filepath.Join(a.Dir, "asterisk.out")

	etc := filepath.Join(root, p.EtcDir)
	if _, err := asteriskconfigs.Render(p, etc); err != nil {
		t.Fatalf("render Asterisk configs: %v", err)
	}
	for name, text := range opts.Extra {
		if err := astAppendFile(filepath.Join(etc, filepath.Base(name)), text); err != nil {
			t.Fatalf("add extra config to %s: %v", name, err)
		}
	}
	if err := astChownTree(a.Dir, uid, gid); err != nil {
		t.Fatalf("hand the instance dir to the chroot's asterisk user: %v", err)
	}

	if err := a.start(); err != nil {
		t.Fatalf("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.waitReady(ctx); err != nil {
		t.Fatalf("%v", err)
	}
	a.watch = a.startWatch(t)
	t.Logf("asterisk %s up: ARI %s, SIP 127.0.0.1:%d (TLS %d), log %s", a.id, a.ARIURL(), a.SIPPort, a.SIPTLSPort, a.LogPath)
	return a
}

// ARIURL is the base URL of ARI's HTTP server, e.g. "http://127.0.0.1:8088".
func (a *Asterisk) ARIURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", a.HTTPPort)
}

// Phone returns the rendered phone with that name, or fails t.
func (a *Asterisk) Phone(t testing.TB, name string) asteriskconfigs.Phone {
	t.Helper()
	for _, p := range a.Params.Phones {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no phone %q in this Asterisk instance", name)
	return asteriskconfigs.Phone{}
}

// PID is the Asterisk process id, or 0 when it is not running.
func (a *Asterisk) PID() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil || a.cmd.Process == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

// CLICommand is the command prefix that runs this instance's CLI; the command follows "-rx".
func (a *Asterisk) CLICommand() []string {
	return []string{"chroot", a.Root, "asterisk", "-C", a.confPath}
}

// CLI runs one Asterisk CLI command (asterisk -rx) and returns its output.
func (a *Asterisk) CLI(ctx context.Context, cmd string) (string, error) {
	out, err := exec.CommandContext(ctx, "chroot", a.Root, "asterisk", "-C", a.confPath, "-rx", cmd).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("asterisk CLI %q on instance %s: %w: %s", cmd, a.id, err, strings.TrimSpace(string(out)))
	}
	// asterisk -rx exits 0 even for unknown commands (e.g. a module that is not loaded).
	if strings.HasPrefix(strings.TrimSpace(string(out)), "No such command") {
		return string(out), fmt.Errorf("asterisk CLI %q on instance %s: %s (is its module loaded?)", cmd, a.id, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Kill kills Asterisk with SIGKILL (a crash) and waits for it to be gone. Start brings it back.
func (a *Asterisk) Kill(t testing.TB) {
	t.Helper()
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Asterisk %s (pid %d) still running after SIGKILL", a.id, cmd.Process.Pid)
	}
}

// Freeze stops Asterisk with SIGSTOP (a hung process: sockets stay open, nothing answers); Thaw resumes it.
func (a *Asterisk) Freeze(t testing.TB) {
	a.frozen.Store(true)
	a.signal(t, syscall.SIGSTOP)
}

// Thaw resumes a frozen Asterisk with SIGCONT.
func (a *Asterisk) Thaw(t testing.TB) {
	a.quietUntil.Store(time.Now().Add(5 * time.Second).UnixNano())
	a.signal(t, syscall.SIGCONT)
	a.frozen.Store(false)
}

func (a *Asterisk) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	pid := a.PID()
	if pid == 0 {
		t.Fatalf("Asterisk %s is not running", a.id)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("signal %v to Asterisk %d: %v", sig, pid, err)
	}
}

// Start starts a stopped or killed Asterisk again with the same configuration and ports, waiting for ARI.
func (a *Asterisk) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.start(); err != nil {
		t.Fatalf("start Asterisk again: %v", err)
	}
	if err := a.waitReady(ctx); err != nil {
		t.Fatalf("start Asterisk again: %v", err)
	}
}

// Restart stops Asterisk and starts it again with the same configuration and ports, waiting for ARI.
func (a *Asterisk) Restart(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if err := a.start(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if err := a.waitReady(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
}

// Stop asks Asterisk to stop now and kills it if it has not exited within 10 s. The mounts and the
// instance directory stay until the test's cleanup, so Restart can start it again.
func (a *Asterisk) Stop(ctx context.Context) error {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, _ = a.CLI(stopCtx, "core stop now") // errors are fine: the kill below is the backstop
	cancel()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stop Asterisk %s (pid %d): still running after SIGKILL", a.id, cmd.Process.Pid)
	}
}

func (a *Asterisk) start() error {
	a.ready.Store(false)
	logf, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open Asterisk log %s: %w", a.LogPath, err)
	}
	// Not CommandContext: the instance outlives the call; Stop/cleanup own the process.
	cmd := exec.Command("chroot", a.Root, "asterisk", "-f", "-U", "asterisk", "-G", "asterisk", "-C", a.confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start Asterisk in %s: %w", a.Root, err)
	}
	logf.Close() // the child holds its own descriptor
	if err := shareAutogroupNice(cmd.Process.Pid); err != nil {
		fmt.Fprintf(os.Stderr, "asterisk %s: %v\n", a.id, err)
	}
	done := make(chan struct{})
	go func() { // owned by a: ends when the process exits, which Stop/cleanup guarantee
		_ = cmd.Wait()
		close(done)
	}()
	a.mu.Lock()
	a.cmd, a.done = cmd, done
	a.mu.Unlock()
	return nil
}

// waitReady polls ARI until it answers, then waits for Asterisk to finish booting.
func (a *Asterisk) waitReady(ctx context.Context) error {
	a.mu.Lock()
	done := a.done
	a.mu.Unlock()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		status, err := a.ariGet(ctx, client, "/ari/asterisk/info")
		if err == nil && status == http.StatusOK {
			break
		}
		if status == http.StatusUnauthorized {
			return fmt.Errorf("asterisk %s: ARI refused the test credentials (401); check ari.conf\n%s", a.id, a.logTail())
		}
		select {
		case <-done:
			return fmt.Errorf("asterisk %s exited during startup; log tail:\n%s", a.id, a.logTail())
		case <-ctx.Done():
			return fmt.Errorf("asterisk %s: ARI at %s not answering: %w; log tail:\n%s", a.id, a.ARIURL(), ctx.Err(), a.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if out, err := a.CLI(ctx, "core waitfullybooted"); err != nil {
		return fmt.Errorf("asterisk %s did not finish booting: %w\n%s\n%s", a.id, err, out, a.logTail())
	}
	a.ready.Store(true)
	return nil
}

// ariGet sends GET path to ARI with the instance's credentials and returns the HTTP status.
func (a *Asterisk) ariGet(ctx context.Context, client *http.Client, path string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.ARIURL()+path, nil)
	if err != nil {
		return 0, fmt.Errorf("build ARI request: %w", err)
	}
	req.SetBasicAuth(a.ARIUser, a.ARIPassword)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (a *Asterisk) logTail() string {
	var b strings.Builder
	for _, f := range []string{a.LogPath, filepath.Join(a.Dir, "log", "messages.log")} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", f, astTail(string(data), 40))
	}
	return b.String()
}

// cleanup stops the instance, keeps its logs in ArtifactsDir() if the test failed (the instance dir is on a tmpfs
// that goes with the last instance), removes the instance dir and releases the mounts.
func (a *Asterisk) cleanup(t testing.TB) {
	a.watch.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Errorf("%v", err)
	}
	if t.Failed() {
		a.keepLogs(t)
	}
	_ = os.RemoveAll(a.Dir)
	if a.mounted {
		if err := astReleaseMounts(a.Root, a.id); err != nil {
			t.Errorf("release chroot mounts: %v", err)
		}
		a.mounted = false
	}
}

// artifactDir is where this instance's logs and stall records for test go: ArtifactsDir()/<test>-asterisk-<id>.
func (a *Asterisk) artifactDir(test string) string { return testArtifactDir(test, "asterisk-"+a.id) }

// testArtifactDir is ArtifactsDir()/<test>-<what>, a subtest's slashes made underscores.
func testArtifactDir(test, what string) string {
	return filepath.Join(ArtifactsDir(), strings.NewReplacer("/", "_").Replace(test)+"-"+what)
}

// keepLogs copies the instance's console output and log files to ArtifactsDir()/<test>-asterisk-<id>.
func (a *Asterisk) keepLogs(t testing.TB) {
	dir := a.artifactDir(t.Name())
	files := []string{a.LogPath}
	if logs, err := filepath.Glob(filepath.Join(a.Dir, "log", "*")); err == nil {
		files = append(files, logs...)
	}
	var kept int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if os.MkdirAll(dir, 0o755) == nil && os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644) == nil {
			kept++
		}
	}
	if kept > 0 {
		t.Logf("asterisk %s: logs kept in %s", a.id, dir)
	}
}

// ---- mounts shared by all instances and all test processes ----

// mountState is the lock and holder list for ROOT's proc and /dev mounts. Each holder line is
// "pid instance-id"; holders whose process is gone are dropped, so a crashed run cannot keep
// mounts pinned forever or make the next run unmount under a live instance.
func astMountStatePaths(root string) (lock, holders string) {
	base := filepath.Clean(root)
	return base + ".mounts.lock", base + ".mounts"
}

func astWithMountLock(root string, fn func(holders []string) ([]string, error)) error {
	lockPath, holdersPath := astMountStatePaths(root)
	lf, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open mount lock %s: %w", lockPath, err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lockPath, err)
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)

	var live []string
	if data, err := os.ReadFile(holdersPath); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			if pid, err := strconv.Atoi(f[0]); err == nil && astProcessAlive(pid) {
				live = append(live, line)
			}
		}
	}
	next, err := fn(live)
	if werr := os.WriteFile(holdersPath, []byte(strings.Join(next, "\n")+"\n"), 0o600); werr != nil && err == nil {
		err = fmt.Errorf("write mount holders %s: %w", holdersPath, werr)
	}
	return err
}

func astAcquireMounts(root, id string) error {
	return astWithMountLock(root, func(holders []string) ([]string, error) {
		// Mount if missing, whatever the holder list says: a crash may have left either behind.
		if err := astEnsureMount(filepath.Join(root, "proc"), "proc", "proc", 0); err != nil {
			return holders, err
		}
		if err := astEnsureMount(filepath.Join(root, "dev"), "/dev", "", syscall.MS_BIND); err != nil {
			return holders, err
		}
		// The instances' logs, spools and astdb on a tmpfs, so that no test Asterisk waits on the host's disk.
		if err := astEnsureTmpfs(filepath.Join(root, astInstancesDir)); err != nil {
			return holders, err
		}
		if err := astEnsureHosts(root); err != nil {
			return holders, err
		}
		return append(holders, fmt.Sprintf("%d %s", os.Getpid(), id)), nil
	})
}

// astEnsureHosts gives the chroot an /etc/hosts naming this host. Asterisk looks its host name up at every start
// (pjproject's pj_gethostip); the root has no hosts file, so the lookup went to the network's DNS server, which
// tests must not depend on or send to.
func astEnsureHosts(root string) error {
	name, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("read the host name for the chroot's /etc/hosts: %w", err)
	}
	want := fmt.Sprintf("# Written by the Patchbay tests (testenv): the host name resolves without DNS.\n"+
		"127.0.0.1\tlocalhost %[1]s\n::1\tlocalhost ip6-localhost ip6-loopback %[1]s\n", name)
	path := filepath.Join(root, "etc", "hosts")
	if have, err := os.ReadFile(path); err == nil && string(have) == want {
		return nil
	}
	tmp := path + ".patchbay-tmp"
	if err := os.WriteFile(tmp, []byte(want), 0o644); err != nil {
		return fmt.Errorf("write the chroot's /etc/hosts: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write the chroot's /etc/hosts: %w", err)
	}
	return nil
}

func astEnsureTmpfs(target string) error {
	if astIsMountPoint(target) {
		return nil
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", target, err)
	}
	if err := syscall.Mount("patchbay-test", target, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755,size=2g"); err != nil {
		return fmt.Errorf("mount a tmpfs on %s for the test Asterisks' logs and spools: %w", target, err)
	}
	return nil
}

func astReleaseMounts(root, id string) error {
	return astWithMountLock(root, func(holders []string) ([]string, error) {
		me := fmt.Sprintf("%d %s", os.Getpid(), id)
		var rest []string
		for _, h := range holders {
			if h != me {
				rest = append(rest, h)
			}
		}
		if len(rest) > 0 {
			return rest, nil
		}
		var errs []error
		for _, m := range []string{astInstancesDir, "dev", "proc"} {
			target := filepath.Join(root, m)
			if !astIsMountPoint(target) {
				continue
			}
			if err := syscall.Unmount(target, 0); err != nil {
				// A straggler still holds it (e.g. a process being reaped): detach lazily.
				if err2 := syscall.Unmount(target, syscall.MNT_DETACH); err2 != nil {
					errs = append(errs, fmt.Errorf("unmount %s: %w", target, err2))
				}
			}
		}
		return rest, errors.Join(errs...)
	})
}

func astEnsureMount(target, source, fstype string, flags uintptr) error {
	if astIsMountPoint(target) {
		return nil
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create mount point %s: %w", target, err)
	}
	if err := syscall.Mount(source, target, fstype, flags, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", source, target, err)
	}
	return nil
}

// astIsMountPoint reports whether path is a mount point in this mount namespace.
func astIsMountPoint(path string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	want := filepath.Clean(path)
	if real, err := filepath.EvalSymlinks(want); err == nil {
		want = real
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && astUnescapeMount(fields[4]) == want {
			return true
		}
	}
	return false
}

func astUnescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// ---- stale instances from crashed runs ----

// astReapStale stops Asterisk processes and removes instance dirs whose owning test process is gone.
// Only processes whose root is this chroot and whose pid file is in the stale instance are killed.
func astReapStale(root string) error {
	dirs, err := os.ReadDir(filepath.Join(root, astInstancesDir))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var errs []error
	for _, d := range dirs {
		dir := filepath.Join(root, astInstancesDir, d.Name())
		data, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue // being created right now, or not ours
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || astProcessAlive(owner) {
			continue
		}
		if pidData, err := os.ReadFile(filepath.Join(dir, "run", "asterisk.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(pidData))); err == nil && astProcessInRoot(pid, root) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func astProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// astProcessInRoot guards against pid reuse: the process must be running inside root.
func astProcessInRoot(pid int, root string) bool {
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
	if err != nil {
		return false
	}
	want, err := filepath.EvalSymlinks(root)
	if err != nil {
		want = root
	}
	return filepath.Clean(link) == filepath.Clean(want)
}

// ---- small helpers ----

func astLookupUser(root, name string) (uid, gid int, err error) {
	data, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		return 0, 0, fmt.Errorf("read the chroot's passwd: %w (is %s a complete Asterisk root?)", err, root)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 3 && f[0] == name {
			uid, err1 := strconv.Atoi(f[2])
			gid, err2 := strconv.Atoi(f[3])
			if err1 == nil && err2 == nil {
				return uid, gid, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("no user %q in %s/etc/passwd: reinstall the root (remove it and rerun scripts/asterisk-root.sh)", name, root)
}

func astChownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

func astAppendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, asteriskconfigs.FileMode)
	if err != nil {
		return err
	}
	if _, err := f.WriteString("\n" + text + "\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Test ports come from 10000–19999: below the kernel's ephemeral range (32768–60999 by default), so no outgoing
// connection can take one between the check here and the bind by whatever it was picked for (a port picked by
// binding port 0 did get taken so once: a Patchbay's ICE-TCP port, in use by the time it started), and below the
// test Asterisks' RTP slices (20000–29999).
const testPortFirst, testPortCount = 10000, 10000

// astFreePorts returns n distinct ports free for both TCP and UDP on every address at the time of the call.
func astFreePorts(n int) ([]int, error) {
	var ports []int
	var holds []io.Closer
	defer func() {
		for _, h := range holds {
			h.Close()
		}
	}()
	for tries := 0; len(ports) < n && tries < 1000; tries++ {
		port := testPortFirst + int(astRandomUint16())%testPortCount
		if slices.Contains(ports, port) {
			continue
		}
		l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			l.Close()
			continue
		}
		holds = append(holds, l, u)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("no %d free ports in %d-%d", n, testPortFirst, testPortFirst+testPortCount-1)
	}
	return ports, nil
}

// freePort is one port from astFreePorts.
func freePort() (int, error) {
	ports, err := astFreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

func astRandomHex(nBytes int) string {
	b := make([]byte, nBytes)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux
	return hex.EncodeToString(b)
}

func astRandomUint16() uint16 {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return uint16(b[0])<<8 | uint16(b[1])
}

func astTail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// FreePorts returns n distinct ports free on loopback for both TCP and UDP at the time of the call, for tests that
// must fix a port before starting something (a cluster node's SIP port, which its peer's config names).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := astFreePorts(n)
	if err != nil {
		t.Fatalf("pick free ports: %v", err)
	}
	return ports
}

// shareAutogroupNice gives the Asterisk at pid, in a session and so a scheduler autogroup of its own, the niceness
// of the tests' autogroup. Otherwise a test run from a reniced session (`echo -20 >/proc/self/autogroup`, as a
// bench script once did to its caller by mistake) starves the Asterisks: each of them weighs 1024 against 88761 for
// a nice -20 group holding the tests and the browsers, and was seen waiting seconds for a CPU while runnable.
func shareAutogroupNice(pid int) error {
	mine, err := os.ReadFile("/proc/self/autogroup") // "/autogroup-123 nice -20"
	if err != nil {
		return nil // a kernel without autogroups
	}
	f := strings.Fields(string(mine))
	if len(f) != 3 || f[1] != "nice" || f[2] == "0" {
		return nil
	}
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/autogroup", pid), []byte(f[2]), 0); err != nil {
		return fmt.Errorf("give Asterisk the tests' autogroup niceness %s (it may be starved beside them): %w", f[2], err)
	}
	return nil
}

// ContactUsable reports whether `pjsip show contacts` output shows a contact of AOR aor that PJSIP will dial: its
// status is "Avail", or "NonQual" when it is not qualified. Whole words: "Unavail" contains "Avail".
func ContactUsable(out, aor string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "Contact:" || !strings.HasPrefix(f[1], aor+"/sip") {
			continue
		}
		for _, w := range f[2:] {
			if w == "Avail" || w == "NonQual" {
				return true
			}
		}
	}
	return false
}
