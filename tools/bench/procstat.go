package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is 100 on every Linux architecture Go
// supports (the kernel converts to it whatever its internal HZ).
const clockTicks = 100

// ProcSample is one reading of a process's CPU time and resident memory.
type ProcSample struct {
	CPU  time.Duration // utime + stime of every thread
	RSS  int64         // VmRSS, bytes
	CPUs int           // CPUs the process may run on (Cpus_allowed_list)
}

// ReadProc reads /proc/PID/stat and /proc/PID/status.
func ReadProc(pid int) (ProcSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("read CPU time of pid %d: %w (is the process running?)", pid, err)
	}
	cpu, err := ParseStatCPU(string(stat))
	if err != nil {
		return ProcSample{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	rss, err := ParseStatusRSS(string(status))
	if err != nil {
		return ProcSample{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	return ProcSample{CPU: cpu, RSS: rss, CPUs: ParseStatusCPUs(string(status))}, nil
}

// ParseStatCPU returns utime+stime from the text of /proc/PID/stat. The command name (field 2) is in parentheses
// and may itself hold spaces and parentheses, so fields are counted from the last ')'.
func ParseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat: no ')' after the command name")
	}
	f := strings.Fields(stat[i+1:])
	// After ')': state is field 3, so utime (14) and stime (15) are f[11] and f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("malformed /proc stat: CPU time %q", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// ParseStatusRSS returns VmRSS in bytes from the text of /proc/PID/status.
func ParseStatusRSS(status string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("malformed VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed VmRSS line %q: %w", sc.Text(), err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("no VmRSS in /proc status (kernel thread or zombie?)")
}

// ReadHostBusy returns the CPU time all CPUs of the host spent busy (not idle or waiting for I/O), from /proc/stat.
func ReadHostBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read host CPU time: %w", err)
	}
	return ParseHostBusy(string(b))
}

// ParseHostBusy parses the aggregate "cpu" line of /proc/stat: user nice system idle iowait irq softirq steal
// (guest time is already counted in user). Busy is everything but idle and iowait.
func ParseHostBusy(stat string) (time.Duration, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, errors.New("malformed /proc/stat: first line is not the aggregate cpu line")
	}
	var busy int64
	for i, s := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat: %q", s)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// ParseStatusCPUs counts the CPUs in the Cpus_allowed_list line of /proc/PID/status; 0 when absent or malformed.
func ParseStatusCPUs(status string) int {
	for line := range strings.Lines(status) {
		if rest, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			cpus, err := ParseCPUList(strings.TrimSpace(rest))
			if err != nil {
				return 0
			}
			return len(cpus)
		}
	}
	return 0
}
