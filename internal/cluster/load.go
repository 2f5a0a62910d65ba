package cluster

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"
)

// cpuSampler reads the host's CPU busy share between two samples from /proc/stat: the whole host, since Asterisk
// and Patchbay share it and either saturating it hurts calls.
type cpuSampler struct {
	mu          sync.Mutex
	busy, total uint64
}

func newCPUSampler() *cpuSampler {
	s := &cpuSampler{}
	s.busy, s.total, _ = readProcStat()
	return s
}

// sample returns the busy share (0–1) since the previous call; 0 when /proc/stat cannot be read.
func (s *cpuSampler) sample() float64 {
	busy, total, ok := readProcStat()
	if !ok {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prevBusy, prevTotal := s.busy, s.total
	s.busy, s.total = busy, total
	if total <= prevTotal || busy < prevBusy {
		return 0
	}
	return float64(busy-prevBusy) / float64(total-prevTotal)
}

// readProcStat sums the first "cpu" line: busy is everything but idle and iowait.
func readProcStat() (busy, total uint64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, false
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, false
	}
	var idle uint64
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return total - idle, total, true
}
