package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// PulsePath is Debian's PulseAudio daemon.
const PulsePath = "/usr/bin/pulseaudio"

// pulseSink is a private PulseAudio daemon with one null sink: an audio output device for a headless Firefox.
// Without one, Firefox's WebAudio never starts (AudioContext.resume() does not resolve), so a page cannot record
// what it hears. Nothing is played anywhere; the socket lives in a directory of its own.
type pulseSink struct {
	Server string // PULSE_SERVER value, unix:PATH
	dir    string
	cmd    *exec.Cmd
	done   chan struct{}
}

// startPulseSink starts the daemon and waits for its socket. The caller stops it.
func startPulseSink(t testing.TB, logPath string) (*pulseSink, error) {
	t.Helper()
	if _, err := os.Stat(PulsePath); err != nil {
		return nil, fmt.Errorf("pulseaudio not found at %s: run scripts/provision.sh (apt-get install pulseaudio): %w", PulsePath, err)
	}
	// A short path: a unix socket's path is limited to 108 bytes, and t.TempDir() paths can be longer.
	dir, err := os.MkdirTemp("", "pb-pulse-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "native")
	logf, err := os.Create(logPath)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	// -n: no default script (no hardware, no D-Bus, no modules but these two); as root it warns and runs.
	cmd := exec.Command(PulsePath, "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
		"--disallow-module-loading", "--log-target=stderr",
		"--load=module-null-sink sink_name=patchbay_test",
		"--load=module-native-protocol-unix auth-anonymous=1 socket="+sock)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start pulseaudio: %w", err)
	}
	p := &pulseSink{Server: "unix:" + sock, dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return p, nil
		}
		select {
		case <-p.done:
			p.stop()
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("pulseaudio exited at start:\n%s", astTail(string(b), 15))
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, errors.New("pulseaudio: no socket within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *pulseSink) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	_ = os.RemoveAll(p.dir)
}
