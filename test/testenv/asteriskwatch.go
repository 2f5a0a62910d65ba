package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test Asterisks have gone silent for seconds in CI runs (ARI pongs and REST answers missing, then everything
// back at once) without a word in their logs, and not when the failing test ran alone. The watchdog below pings
// every running, unfrozen instance and, when an answer is late, records what was happening on both ends of the
// socket at that moment, to find the cause rather than guess it. (In CI runs 40-46 the run queues it records showed
// the cause: the tests' session had been reniced to -20, so each Asterisk, a session of its own, got about 1 % of a
// busy CPU; see shareAutogroupNice.)

const (
	watchEvery = 500 * time.Millisecond
	// watchLate is when a ping answer counts as a stall: an idle Asterisk answers in well under 10 ms and a busy
	// lane in under 100 ms.
	watchLate = 1500 * time.Millisecond
	// watchMaxCaptures bounds the files one instance can write.
	watchMaxCaptures = 3
)

// asteriskWatch is one instance's watchdog; stop ends it and waits.
type asteriskWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (w *asteriskWatch) stop() {
	if w == nil {
		return
	}
	w.cancel()
	<-w.done
}

// startWatch pings a's ARI until stopped. It skips instances that are stopped, killed or frozen on purpose.
func (a *Asterisk) startWatch(t testing.TB) *asteriskWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &asteriskWatch{cancel: cancel, done: make(chan struct{})}
	go func() { // owned by w: cleanup stops it before the test ends
		defer close(w.done)
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		defer client.CloseIdleConnections()
		captures := 0
		inStall := false
		unreadSince := map[string]time.Time{} // ARI sockets with bytes unread, since when
		tick := time.NewTicker(watchEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			pid := a.PID()
			if !a.watchable(pid) {
				inStall = false
				clear(unreadSince)
				continue
			}
			// A socket whose received bytes sit unread is a stall even when a fresh connection's ping is answered:
			// the events socket's reader may be the one stuck, on either side. (Unacknowledged bytes are not: a
			// request waiting for its answer holds its ACK back.)
			now := time.Now()
			unread := ariUnread(a.HTTPPort)
			for sock := range unreadSince {
				if _, ok := unread[sock]; !ok {
					delete(unreadSince, sock)
				}
			}
			var stuck []string
			for sock, n := range unread {
				since, ok := unreadSince[sock]
				if !ok {
					unreadSince[sock] = now
				} else if now.Sub(since) >= watchLate {
					stuck = append(stuck, fmt.Sprintf("%s: %d bytes for %v", sock, n, now.Sub(since).Round(time.Millisecond)))
				}
			}
			took, err := a.ping(ctx, client, watchLate)
			if ctx.Err() != nil {
				return
			}
			if a.PID() != pid || !a.watchable(pid) {
				continue // stopped, restarted or frozen while the ping ran: not a stall
			}
			var problem string
			switch {
			case err != nil || took >= watchLate:
				problem = fmt.Sprintf("ARI ping unanswered after %v (%v)", took.Round(time.Millisecond), err)
			case len(stuck) > 0:
				sort.Strings(stuck)
				problem = "bytes unread on ARI sockets: " + strings.Join(stuck, ", ")
			}
			if problem == "" {
				if inStall {
					t.Logf("asterisk %s: ARI is well again (ping %v, nothing left unread)", a.id, took.Round(time.Millisecond))
				}
				inStall = false
				continue
			}
			if inStall || captures >= watchMaxCaptures {
				continue
			}
			inStall = true
			captures++
			path := a.captureStall(ctx, client, pid, captures, problem, t.Name())
			t.Logf("asterisk %s (pid %d): %s; state recorded in %s", a.id, pid, problem, path)
		}
	}()
	return w
}

func (a *Asterisk) watchable(pid int) bool {
	return pid != 0 && a.ready.Load() && !a.frozen.Load() && time.Now().UnixNano() > a.quietUntil.Load()
}

// ping times one GET /ari/asterisk/ping on a fresh connection.
func (a *Asterisk) ping(ctx context.Context, client *http.Client, timeout time.Duration) (time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	status, err := a.ariGet(rctx, client, "/ari/asterisk/ping")
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("ARI ping: HTTP %d", status)
	}
	return time.Since(start), err
}

// captureStall writes what the host, Asterisk's threads, the ARI port's sockets and this process's goroutines
// were doing into ArtifactsDir()/<test>-asterisk-<id>/stall-<n>.txt and returns the path.
func (a *Asterisk) captureStall(ctx context.Context, client *http.Client, pid, n int, problem, test string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s asterisk %s pid %d: %s\n", time.Now().Format(time.RFC3339Nano), a.id, pid, problem)
	for _, f := range []string{"/proc/loadavg", "/proc/pressure/cpu", "/proc/pressure/memory", "/proc/pressure/io"} {
		data, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "--- %s\n%s", f, data)
	}
	writeThreads(&b, pid)
	writeSched(&b)
	port := strconv.Itoa(a.HTTPPort)
	b.WriteString("--- ss, the ARI port\n")
	b.Write(runOut(ctx, 10*time.Second, "ss", "-tnmoiep", "state", "all", "( sport = :"+port+" or dport = :"+port+" )"))
	b.WriteString("--- top threads\n")
	b.Write(runOut(ctx, 10*time.Second, "top", "-b", "-H", "-n", "1", "-w", "200"))
	// Still stuck? Then the threads again: what changed and what did not.
	took2, err2 := a.ping(ctx, client, 2*time.Second)
	fmt.Fprintf(&b, "--- second ping: %v, err %v\n", took2, err2)
	if err2 != nil || took2 >= watchLate {
		writeThreads(&b, pid)
		writeSched(&b)
	}
	writeFDs(&b, pid)
	b.WriteString("--- this test process's goroutines\n")
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)

	dir := a.artifactDir(test)
	path := filepath.Join(dir, fmt.Sprintf("stall-%d.txt", n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Sprintf("(not written: %v)", err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Sprintf("(not written: %v)", err)
	}
	return path
}

// ariUnread returns the IPv4 TCP sockets to or from port whose receive queue holds bytes ("local->remote" to
// their count); a listener's is its accept backlog.
func ariUnread(port int) map[string]int {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		// sl local_address rem_address st tx_queue:rx_queue ...
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		local, remote := tcpPort(f[1]), tcpPort(f[2])
		if local != port && remote != port {
			continue
		}
		_, rxHex, _ := strings.Cut(f[4], ":")
		if rx, _ := strconv.ParseUint(rxHex, 16, 32); rx > 0 {
			out[fmt.Sprintf("%d->%d", local, remote)] = int(rx)
		}
	}
	return out
}

// tcpPort is the port of a /proc/net/tcp address such as "0100007F:1F90".
func tcpPort(addr string) int {
	_, hex, ok := strings.Cut(addr, ":")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(hex, 16, 16)
	return int(n)
}

// writeFDs lists pid's descriptors that are sockets, so a thread's fd and ss's inode meet.
func writeFDs(b *bytes.Buffer, pid int) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		fmt.Fprintf(b, "--- fds: %v\n", err)
		return
	}
	b.WriteString("--- socket fds (fd in hex: target)\n")
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, fd.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:") {
			continue
		}
		n, _ := strconv.Atoi(fd.Name())
		fmt.Fprintf(b, "%#x: %s\n", n, target)
	}
}

// writeThreads lists pid's threads grouped by kernel state, wait channel and kernel stack, each with its
// syscall number and first argument.
func writeThreads(b *bytes.Buffer, pid int) {
	base := fmt.Sprintf("/proc/%d/task", pid)
	tids, err := os.ReadDir(base)
	if err != nil {
		fmt.Fprintf(b, "--- threads: %v\n", err)
		return
	}
	groups := map[string][]string{}
	for _, tid := range tids {
		dir := filepath.Join(base, tid.Name())
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		stat, _ := os.ReadFile(filepath.Join(dir, "stat"))
		wchan, _ := os.ReadFile(filepath.Join(dir, "wchan"))
		stack, _ := os.ReadFile(filepath.Join(dir, "stack"))
		// "nr arg1 ... sp pc": the syscall number and its first argument (the fd, for I/O) say what it waits on.
		sys, _ := os.ReadFile(filepath.Join(dir, "syscall"))
		sysf := strings.Fields(string(sys))
		if len(sysf) > 2 {
			sysf = sysf[:2]
		}
		state := "?"
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			state = string(stat[i+2])
		}
		key := fmt.Sprintf("state %s wchan %s\n%s", state, wchan, stack)
		label := fmt.Sprintf("%s/%s%v", strings.TrimSpace(string(comm)), tid.Name(), sysf)
		if state == "R" || state == "D" {
			// "ns on a CPU, ns waiting in a run queue, slices": two captures apart, whether a runnable thread
			// was given a CPU at all.
			ss, _ := os.ReadFile(filepath.Join(dir, "schedstat"))
			label += "{" + strings.TrimSpace(string(ss)) + "}"
		}
		groups[key] = append(groups[key], label)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(b, "--- %d threads at %s\n", len(tids), time.Now().Format("15:04:05.000"))
	for _, k := range keys {
		fmt.Fprintf(b, "[%d] %s\n%s\n", len(groups[k]), strings.Join(groups[k], " "), k)
	}
}

// schedDebug is the kernel's view of its run queues (debugfs; scripts/itest.sh mounts it).
const schedDebug = "/sys/kernel/debug/sched/debug"

// writeSched writes, per CPU, the task groups with queued tasks (their vruntime and weight: an autogroup or cgroup
// starved as a whole shows there) and the runnable tasks, from the kernel's scheduler debug file.
func writeSched(b *bytes.Buffer) {
	data, err := os.ReadFile(schedDebug)
	if err != nil {
		fmt.Fprintf(b, "--- scheduler: %v\n", err)
		return
	}
	fmt.Fprintf(b, "--- scheduler at %s (%s: CPUs, task groups with queued tasks, runnable tasks)\n", time.Now().Format("15:04:05.000"), schedDebug)
	var block []string // one "cfs_rq[n]:/group" block
	queued := false
	flush := func() {
		if queued {
			b.WriteString(strings.Join(block, "\n") + "\n")
		}
		block, queued = nil, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "cpu#"), strings.HasPrefix(line, "runnable tasks:"):
			flush()
			b.WriteString(line + "\n")
		case strings.HasPrefix(line, "cfs_rq["):
			flush()
			block = []string{line}
		case block != nil && line == "":
			flush()
		case block != nil:
			if len(f) == 3 && f[0] == ".h_nr_queued" && f[2] != "0" {
				queued = true
			}
			if len(f) == 3 && (f[0] == ".h_nr_queued" || f[0] == ".throttled" || strings.HasPrefix(f[0], ".se->") || f[0] == ".avg_vruntime") {
				block = append(block, line)
			}
		case len(f) > 2 && (f[0] == "R" || f[0] == ">R"):
			b.WriteString(line + "\n")
		}
	}
	flush()
}

var runOutMu sync.Mutex // one capture's commands at a time per process: they are heavy

func runOut(ctx context.Context, timeout time.Duration, name string, args ...string) []byte {
	runOutMu.Lock()
	defer runOutMu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := exec.CommandContext(cctx, name, args...).CombinedOutput()
	if err != nil {
		out = append(out, fmt.Sprintf("(%s: %v)\n", name, err)...)
	}
	return out
}
