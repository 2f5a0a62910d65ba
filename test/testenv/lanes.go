package testenv

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// LaneLockEnv names the file scripts/itest.sh gives every lane to share: Heavy and Sensitive take a lock on it.
const LaneLockEnv = "PATCHBAY_ITEST_LANE_LOCK"

// Heavy marks a test that loads the host the most (several browsers at once, or two nodes with their Asterisks):
// while it runs, no Heavy or Sensitive test of another lane does. Sensitive marks a test whose checks are tight in
// time (audio back within 2 s of a link returning, tones in 100 ms windows): it may run beside other Sensitive
// tests, never beside a Heavy one. On two cores, a lane's multi-browser test starved the other lane's timed
// checks; these keep the lanes' parallelism for everything else. The lock is held until the test's cleanups
// (browsers, Asterisk) are done. Without LaneLockEnv (one lane, a test run alone) they do nothing.
func Heavy(t testing.TB) { laneLock(t, syscall.LOCK_EX, "heavy") }

// Sensitive: see Heavy.
func Sensitive(t testing.TB) { laneLock(t, syscall.LOCK_SH, "sensitive") }

func laneLock(t testing.TB, how int, what string) {
	t.Helper()
	path := os.Getenv(LaneLockEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("lane lock %s: %v", path, err)
	}
	start := time.Now()
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		t.Fatalf("lane lock %s: %v", path, err)
	}
	if w := time.Since(start); w > time.Second {
		t.Logf("%s test: waited %v for another lane's test", what, w.Round(time.Second))
	}
	// Registered first, so it runs last: after the test's own cleanups have stopped what it started.
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}
