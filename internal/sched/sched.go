// Package sched sets how the kernel schedules Patchbay's own threads.
package sched

// SetBatch puts every thread of this process under SCHED_BATCH, keeping each one's niceness; threads made later
// inherit it from the thread that makes them. A batch thread that wakes does not preempt the task running on its
// CPU: it waits for that task to sleep or use up its slice. Beside Asterisk on one core, Patchbay is woken for
// nearly every datagram, and each wake-up used to cut into the Asterisk thread that had just sent it (and each of
// Patchbay's sends into the Asterisk thread it woke); as a batch task it runs once that thread has gone back to
// sleep, and reads what came meanwhile in one batch. See docs/benchmarks.md for what it saved and cost.
func SetBatch() error { return setBatch() }
