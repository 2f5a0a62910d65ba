package rooms

import (
	"fmt"
)

// Recording a room: its bridge backend's mixing bridge is what Asterisk records. OnBridge tells the owner when that
// bridge is made (the first join), so a room can be recorded from its start; BridgeOf names it for a recording
// started later.

// ErrNotRecordable: the room has no bridge Patchbay owns to record (ConfBridge rooms, or nobody joined yet).
var ErrNotRecordable = fmt.Errorf("%w: the room has no bridge to record", ErrInvalid)

// BridgeOf returns the ID of the bridge that mixes room id.
func (r *Registry) BridgeOf(id string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rm := r.rooms[id]
	if rm == nil || rm.ended {
		return "", fmt.Errorf("room %s: %w", id, ErrNotFound)
	}
	b, ok := rm.backend.(*bridgeBackend)
	if !ok {
		return "", fmt.Errorf("room %s (backend %s, mixed inside ConfBridge): %w", id, rm.backend.Kind(), ErrNotRecordable)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.created {
		return "", fmt.Errorf("room %s (nobody has joined yet): %w", id, ErrNotRecordable)
	}
	return b.id, nil
}
