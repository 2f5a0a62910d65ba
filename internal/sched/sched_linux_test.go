//go:build linux

package sched

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSetBatch: every thread, those running and one started afterwards, ends up under SCHED_BATCH with its
// niceness kept.
func TestSetBatch(t *testing.T) {
	before, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetBatch(); err != nil {
		t.Fatal(err)
	}
	// A goroutine locked to a thread of its own: the runtime may have to start one now.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		attr, err := unix.SchedGetAttr(0, 0)
		if err != nil || attr.Policy != unix.SCHED_BATCH {
			t.Errorf("a thread after SetBatch: policy %v (%v), want SCHED_BATCH", attr, err)
		}
	}()
	wg.Wait()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // ended meanwhile
		}
		if attr.Policy != unix.SCHED_BATCH || attr.Nice != before.Nice {
			t.Errorf("thread %d: policy %d nice %d, want SCHED_BATCH (%d) nice %d", tid, attr.Policy, attr.Nice, unix.SCHED_BATCH, before.Nice)
		}
	}
}
