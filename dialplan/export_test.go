package dialplan

import "time"

// SetMemoryClock replaces the clock of a MemoryStore in tests.
func SetMemoryClock(s *MemoryStore, now func() time.Time) { s.now = now }
