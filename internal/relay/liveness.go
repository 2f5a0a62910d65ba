package relay

import (
	"sync/atomic"
	"time"
)

// Liveness is when media last came from Asterisk, on any call. When the ARI events socket goes silent, a frozen or
// dead Asterisk sends no media either, while one that is only starved of CPU still does, late: the call manager
// asks this before it ends every call with asterisk_lost. The zero value is ready; a nil one records nothing.
type Liveness struct{ ns atomic.Int64 }

// Mark records media from Asterisk at now.
func (l *Liveness) Mark(now time.Time) {
	if l != nil {
		l.ns.Store(now.UnixNano())
	}
}

// Last is when media last came from Asterisk; zero if never.
func (l *Liveness) Last() time.Time {
	if l == nil {
		return time.Time{}
	}
	if ns := l.ns.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}
