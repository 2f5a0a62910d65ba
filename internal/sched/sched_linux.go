//go:build linux

package sched

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

func setBatch() error {
	// Twice: a thread the runtime started during the first pass is caught by the second (one it starts later
	// inherits the policy from a thread already set).
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("sched: list this process's threads: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := batch(tid); err != nil {
				return err
			}
		}
	}
	return nil
}

func batch(tid int) error {
	attr, err := unix.SchedGetAttr(tid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil // the thread ended meanwhile
	}
	if err != nil {
		return fmt.Errorf("sched: read thread %d's scheduling: %w", tid, err)
	}
	if attr.Policy == unix.SCHED_BATCH {
		return nil
	}
	if attr.Policy != unix.SCHED_NORMAL {
		return fmt.Errorf("sched: thread %d has scheduling policy %d, not the normal one: leave media.sched_batch off", tid, attr.Policy)
	}
	set := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH, Nice: attr.Nice}
	if err := unix.SchedSetAttr(tid, &set, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("sched: put thread %d under SCHED_BATCH: %w", tid, err)
	}
	return nil
}
