// Package scripts holds the shell scripts behind make; this test checks run.sh's guards without starting Asterisk.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSecondRunRefused: while a `make run` holds .run/run.lock, another run.sh says so and exits non-zero before
// starting anything.
func TestSecondRunRefused(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		t.Fatal(err)
	}
	// The first run: it holds the lock, as run.sh (or the Patchbay it detached) does.
	lock, err := os.OpenFile(filepath.Join(run, "run.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "patchbay.pid"), []byte("4242\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A stand-in binary that would leave a mark if run.sh went on to use it.
	bin := filepath.Join(dir, "patchbay")
	mark := filepath.Join(dir, "ran")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\ntouch "+mark+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "run.sh", "start")
	cmd.Env = append(os.Environ(), "RUNDIR="+run, "PATCHBAY_BIN="+bin)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("second run.sh succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "already running (PID 4242)") || !strings.Contains(string(out), "make stop") {
		t.Errorf("second run.sh said:\n%s", out)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Error("second run.sh went on to run Patchbay's binary")
	}
}

// TestEnvFilePrivate: run.sh creates .run/env (it holds a token) readable by its owner only.
func TestEnvFilePrivate(t *testing.T) {
	b, err := os.ReadFile("run.sh")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, `(umask 077 && : >"$RUN/env")`), strings.Index(s, `} >"$RUN/env"`)
	if i < 0 || j < 0 || i > j {
		t.Fatal(".run/env must be created with umask 077 before the token is written into it")
	}
	// The same shell steps, run for real: the file ends up 0600.
	dir := t.TempDir()
	script := `RUN="` + dir + `"; rm -f "$RUN/env"; (umask 077 && : >"$RUN/env"); { echo PATCHBAY_TOKEN=x; } >"$RUN/env"`
	if out, err := exec.Command("bash", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	st, err := os.Stat(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf(".run/env mode %v, want 0600", st.Mode().Perm())
	}
}
