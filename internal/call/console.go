package call

import (
	"context"
	"slices"
	"time"

	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// The agent console's view ("console"): the customers waiting in rooms mapped to numbers (nobody with the agent role
// has joined yet), oldest first, for agents, supervisors and moderators; and, for supervisors, every live call an
// agent or moderator is on, which they may supervise. The console asks again to refresh.

// console answers a browser's "console" on a goroutine of the manager's (the number store may be Redis).
func (m *Manager) console(s *signal.Session) {
	role := browserClaims(s).Role
	switch role {
	case rooms.RoleAgent, rooms.RoleModerator, RoleSupervisor:
	default:
		m.log.Warn("security: console refused", "session", s.ID(), "user", s.User(), "role", role)
		_ = s.Send(s.Context(), signal.ErrorMessage("", wire.CodeNotAllowed, "the console is for tokens with role agent, moderator or supervisor"))
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(s.Context(), 3*time.Second)
		defer cancel()
		msg := signal.Message{Type: signal.TypeConsole, Queue: m.Queue(ctx)}
		if role == RoleSupervisor {
			for _, c := range m.LiveCalls() {
				if supervisable(c) { // not a plain user's call, nor a supervision
					msg.Calls = append(msg.Calls, c)
				}
			}
		}
		_ = s.Send(s.Context(), msg)
	}()
}

// Queue lists the customers waiting in rooms mapped to numbers: rooms with someone in them and no agent yet.
func (m *Manager) Queue(ctx context.Context) []signal.QueueEntry {
	if m.o.Rooms == nil || m.o.Numbers == nil {
		return nil
	}
	maps, err := m.o.Numbers.List(ctx)
	if err != nil {
		m.log.Warn("console: number store unavailable", "err", err)
		return nil
	}
	now := time.Now()
	seen := map[string]bool{}
	var out []signal.QueueEntry
	for _, mp := range maps {
		if seen[mp.Room] {
			continue
		}
		seen[mp.Room] = true
		ps, err := m.o.Rooms.Participants(mp.Room)
		if err != nil || len(ps) == 0 {
			continue
		}
		if slices.ContainsFunc(ps, func(p rooms.Participant) bool { return p.Role == rooms.RoleAgent }) {
			continue // an agent is with them
		}
		first := ps[0] // participants come in join order
		out = append(out, signal.QueueEntry{Room: mp.Room, Number: mp.Number, CallerID: first.CallerID, Name: first.Name,
			Kind: first.Kind, Since: first.Joined, WaitS: now.Sub(first.Joined).Round(time.Second).Seconds()})
	}
	slices.SortFunc(out, func(a, b signal.QueueEntry) int { return a.Since.Compare(b.Since) })
	return out
}
