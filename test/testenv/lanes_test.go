package testenv

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// tryLock reports whether another lane could take the lock now (another open file description, as another
// process has).
func tryLock(t *testing.T, path string, how int) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		return false
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true
}

func TestLaneLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lane.lock")
	t.Setenv(LaneLockEnv, path)
	t.Run("heavy excludes everything", func(t *testing.T) {
		Heavy(t)
		if tryLock(t, path, syscall.LOCK_SH) || tryLock(t, path, syscall.LOCK_EX) {
			t.Error("another lane got the lock beside a heavy test")
		}
	})
	t.Run("sensitive excludes only heavy", func(t *testing.T) {
		Sensitive(t)
		if !tryLock(t, path, syscall.LOCK_SH) {
			t.Error("a sensitive test kept another lane's sensitive test out")
		}
		if tryLock(t, path, syscall.LOCK_EX) {
			t.Error("a heavy test got the lock beside a sensitive one")
		}
	})
	if !tryLock(t, path, syscall.LOCK_EX) {
		t.Error("the lock is still held after the tests ended")
	}
}
