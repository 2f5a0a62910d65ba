package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Patchbay logs `answered after=D` (text) or {"msg":"answered","after":NANOS} (JSON) when the far end of an
// outgoing call answers, with D measured from the offer's arrival. The far end is dialled only once the browser's
// media flows, so D includes the caller's ICE and DTLS handshakes: it is offer → far answered, not the server's
// offer → answer. That one is in each call record (setup_answer_ms: offer received → answer SDP sent), read by
// ReadRecordAnswers.

// LogOffset returns the current size of the log file, so that only lines written afterwards are read.
func LogOffset(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("Patchbay log %s: %w", path, err)
	}
	return fi.Size(), nil
}

// ReadAnswered reads the server-side answer times logged in path from offset on.
func ReadAnswered(path string, offset int64) ([]time.Duration, error) {
	f, err := openAt(path, offset, "Patchbay log")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseAnswered(f)
}

// openAt opens what (a log, the call records) at path and seeks to offset.
func openAt(path string, offset int64, what string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek %s: %w", what, err)
	}
	return f, nil
}

// ParseAnswered extracts the `answered` times from Patchbay log lines, text or JSON.
func ParseAnswered(r io.Reader) ([]time.Duration, error) {
	var out []time.Duration
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if d, ok := parseAnsweredLine(sc.Text()); ok {
			out = append(out, d)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read Patchbay log: %w", err)
	}
	return out, nil
}

func parseAnsweredLine(line string) (time.Duration, bool) {
	if strings.HasPrefix(line, "{") {
		var rec struct {
			Msg   string          `json:"msg"`
			After json.RawMessage `json:"after"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "answered" || rec.After == nil {
			return 0, false
		}
		if ns, err := strconv.ParseInt(string(rec.After), 10, 64); err == nil {
			return time.Duration(ns), true
		}
		var s string
		if json.Unmarshal(rec.After, &s) == nil {
			d, err := time.ParseDuration(s)
			return d, err == nil
		}
		return 0, false
	}
	if !strings.Contains(line, " msg=answered ") {
		return 0, false
	}
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, "after="); ok {
			d, err := time.ParseDuration(v)
			return d, err == nil
		}
	}
	return 0, false
}

// ReadRecordAnswers reads the offer → answer-sent times (setup_answer_ms) of the call records in path (JSON lines,
// calls.records.file) from offset on: the server's own setup time, without the client's scheduling delays.
func ReadRecordAnswers(path string, offset int64) ([]time.Duration, error) {
	f, err := openAt(path, offset, "call records")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseRecordAnswers(f)
}

// ParseRecordAnswers extracts setup_answer_ms from call records; records without it (refused calls) are skipped.
func ParseRecordAnswers(r io.Reader) ([]time.Duration, error) {
	var out []time.Duration
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var rec struct {
			SetupAnswerMS *float64 `json:"setup_answer_ms"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.SetupAnswerMS == nil {
			continue
		}
		out = append(out, time.Duration(*rec.SetupAnswerMS*float64(time.Millisecond)))
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read call records: %w", err)
	}
	return out, nil
}
