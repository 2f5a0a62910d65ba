package dialplan

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// MemoryStore is an in-process Store for a single Patchbay instance and for
// tests. Expired entries are dropped lazily, so it needs no goroutine.
type MemoryStore struct {
	mu      sync.Mutex
	entries map[string]Mapping
	now     func() time.Time
	writes  int // Map calls since the last sweep
}

var _ Store = (*MemoryStore)(nil)

// sweepEvery is how many Map calls pass between sweeps of expired entries,
// which bounds memory held by numbers that are never looked up again.
const sweepEvery = 256

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{entries: make(map[string]Mapping), now: time.Now}
}

func (m *MemoryStore) expired(e Mapping, now time.Time) bool {
	return !e.Expires.IsZero() && !now.Before(e.Expires)
}

// Map implements Store.
func (m *MemoryStore) Map(ctx context.Context, number, room string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("map number: %w", err)
	}
	n, err := checkMapArgs(number, room, ttl)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	e := Mapping{Number: n, Room: room}
	if ttl > 0 {
		e.Expires = now.Add(ttl)
	}
	m.entries[n] = e
	if m.writes++; m.writes >= sweepEvery {
		m.writes = 0
		for k, v := range m.entries {
			if m.expired(v, now) {
				delete(m.entries, k)
			}
		}
	}
	return nil
}

// Lookup implements Store.
func (m *MemoryStore) Lookup(ctx context.Context, number string) (Mapping, error) {
	if err := ctx.Err(); err != nil {
		return Mapping{}, fmt.Errorf("look up number: %w", err)
	}
	n, err := NormalizeNumber(number)
	if err != nil {
		return Mapping{}, fmt.Errorf("look up number: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[n]
	if ok && m.expired(e, m.now()) {
		delete(m.entries, n)
		ok = false
	}
	if !ok {
		return Mapping{}, fmt.Errorf("look up %s: %w", n, ErrNotMapped)
	}
	return e, nil
}

// Unmap implements Store.
func (m *MemoryStore) Unmap(ctx context.Context, number string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unmap number: %w", err)
	}
	n, err := NormalizeNumber(number)
	if err != nil {
		return fmt.Errorf("unmap number: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[n]
	delete(m.entries, n)
	if !ok || m.expired(e, m.now()) {
		return fmt.Errorf("unmap %s: %w", n, ErrNotMapped)
	}
	return nil
}

// List implements Store.
func (m *MemoryStore) List(ctx context.Context) ([]Mapping, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list mappings: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := make([]Mapping, 0, len(m.entries))
	for k, e := range m.entries {
		if m.expired(e, now) {
			delete(m.entries, k)
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Mapping) int { return strings.Compare(a.Number, b.Number) })
	return out, nil
}
