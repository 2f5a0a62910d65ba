package cdr

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
)

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Path is the records file; "" or "-" writes to Stdout instead (no rotation).
	Path string
	// MaxSize rotates the file once it would grow past this many bytes (default 100 MiB): PATH becomes PATH.1,
	// PATH.1 becomes PATH.2 and so on; Backups (default 5) rotated files are kept, older ones removed.
	MaxSize int64
	Backups int
	// QueueSize bounds records waiting to be written (default 4096); past it records are dropped and counted.
	QueueSize int
	// Stdout is where "-" writes (default os.Stdout).
	Stdout io.Writer
	Logger *slog.Logger
}

// Writer writes records as JSON lines, one object per line, rotating the file by size. Put never blocks;
// Run owns the file and writes until its context ends, then drains what is queued.
type Writer struct {
	o       WriterOptions
	queue   chan Record
	dropped atomic.Int64
	written atomic.Int64
	failed  atomic.Int64
}

// NewWriter checks o and, for a file, that its directory exists and the file can be opened for appending, so a
// wrong path fails at start with the key to fix.
func NewWriter(o WriterOptions) (*Writer, error) {
	if o.MaxSize <= 0 {
		o.MaxSize = 100 << 20
	}
	if o.Backups <= 0 {
		o.Backups = 5
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Path == "-" {
		o.Path = ""
	}
	if o.Path != "" {
		f, err := os.OpenFile(o.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("call records file %s: %w (check calls.records.file and that its directory exists and is writable)", o.Path, err)
		}
		_ = f.Close()
	}
	return &Writer{o: o, queue: make(chan Record, o.QueueSize)}, nil
}

// Put queues r without blocking.
func (w *Writer) Put(r Record) {
	select {
	case w.queue <- r:
	default:
		if n := w.dropped.Add(1); n&(n-1) == 0 { // log at 1, 2, 4, 8, … drops: visible, not a flood
			w.o.Logger.Warn("call records queue full: record dropped (is the records disk slow or full?)", "call", r.CallID, "dropped_total", n)
		}
	}
}

// Stats returns records written, dropped because the queue was full, and lost to write errors.
func (w *Writer) Stats() (written, dropped, failed int64) {
	return w.written.Load(), w.dropped.Load(), w.failed.Load()
}

// Run writes queued records until ctx ends, then writes what is still queued and closes the file.
func (w *Writer) Run(ctx context.Context) {
	out := &rotating{o: w.o}
	defer out.close()
	for {
		select {
		case r := <-w.queue:
			w.write(out, r)
		case <-ctx.Done():
			for {
				select {
				case r := <-w.queue:
					w.write(out, r)
				default:
					out.flush()
					return
				}
			}
		}
		if len(w.queue) == 0 {
			out.flush()
		}
	}
}

func (w *Writer) write(out *rotating, r Record) {
	line, err := json.Marshal(r)
	if err == nil {
		line = append(line, '\n')
		err = out.write(line)
	}
	if err != nil {
		if n := w.failed.Add(1); n&(n-1) == 0 {
			w.o.Logger.Error("write call record", "call", r.CallID, "failed_total", n, "err", err)
		}
		return
	}
	w.written.Add(1)
}

// rotating is the records file (or stdout), owned by Run's goroutine.
type rotating struct {
	o    WriterOptions
	f    *os.File
	buf  *bufio.Writer
	size int64
}

func (r *rotating) write(line []byte) error {
	if r.o.Path == "" {
		if r.buf == nil {
			r.buf = bufio.NewWriter(r.o.Stdout)
		}
		_, err := r.buf.Write(line)
		return err
	}
	if r.f != nil && r.size > 0 && r.size+int64(len(line)) > r.o.MaxSize {
		if err := r.rotate(); err != nil {
			return err
		}
	}
	if r.f == nil {
		if err := r.open(); err != nil {
			return err
		}
	}
	n, err := r.buf.Write(line)
	r.size += int64(n)
	return err
}

func (r *rotating) open() error {
	f, err := os.OpenFile(r.o.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open call records file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("stat call records file: %w", err)
	}
	r.f, r.buf, r.size = f, bufio.NewWriter(f), st.Size()
	return nil
}

// rotate closes the file and shifts PATH → PATH.1 → … → PATH.Backups (the oldest is removed).
func (r *rotating) rotate() error {
	r.close()
	_ = os.Remove(backupName(r.o.Path, r.o.Backups))
	for i := r.o.Backups - 1; i >= 1; i-- {
		if err := os.Rename(backupName(r.o.Path, i), backupName(r.o.Path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate call records: %w", err)
		}
	}
	if err := os.Rename(r.o.Path, backupName(r.o.Path, 1)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rotate call records: %w", err)
	}
	return nil
}

func backupName(path string, i int) string {
	return filepath.Clean(path) + "." + strconv.Itoa(i)
}

func (r *rotating) flush() {
	if r.buf != nil {
		_ = r.buf.Flush()
	}
}

func (r *rotating) close() {
	r.flush()
	if r.f != nil {
		_ = r.f.Close()
	}
	r.f, r.buf, r.size = nil, nil, 0
}
