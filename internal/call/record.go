package call

import (
	"context"
	"errors"
	"fmt"

	"github.com/patchbay/patchbay/internal/recording"
	"github.com/patchbay/patchbay/internal/rooms"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// Recording a two-party call: Asterisk records the call's bridge (both parties) through internal/recording, which
// keeps the file and its sidecar. It starts by policy once the call is answered (recording.mode always), or on
// request: the REST API (POST /calls/{id}/recording) or an agent's "record". Every browser of the call is told
// ("recording" started/stopped), so a customer sees it too. A call without a bridge (an extension the dialplan
// runs itself) is not recorded, and the reason is logged. Deleting the bridge at the call's end finishes the
// recording; internal/recording collects it.

// recordReq is the API asking the call goroutine to start or stop recording.
type recordReq struct {
	start bool
	by    string
	reply chan recordReply
}

type recordReply struct {
	id  string
	err error
}

// ErrNotRecording is returned when stopping a call that is not being recorded.
var ErrNotRecording = errors.New("the call is not being recorded")

// recordable says why the call cannot be recorded, or "".
func (c *Call) recordable() string {
	switch {
	case c.m.o.CTI.Recorder == nil:
		return "recording is off on this server (recording.mode)"
	case c.inDialplan != "":
		return "extension " + c.inDialplan + " runs without a bridge (calls.dialplan_extensions): only one side could be recorded"
	case c.kind == KindRoom:
		if c.member == nil {
			return "you are not in the room yet"
		}
		return ""
	case c.kind == KindPhoneRoom || c.kind == KindSupervise:
		return "rooms are recorded per room (POST /rooms/{room}/recording), not per participant"
	case c.bridge == "" || c.answered.IsZero():
		return "the call is not connected yet"
	}
	return ""
}

// setRecording starts or stops the call's recording and returns its ID.
func (c *Call) setRecording(start bool, by string) (string, error) {
	if !start {
		if c.cti.rec == nil {
			return "", ErrNotRecording
		}
		ctx, cancel := c.setupCtx()
		c.cti.rec.Stop(ctx)
		cancel()
		id := c.cti.rec.ID()
		c.cti.rec = nil
		c.log.Info("recording stopped", "recording", id, "by", by)
		c.publishLive()
		return id, nil
	}
	if c.cti.rec != nil {
		return c.cti.rec.ID(), nil
	}
	if why := c.recordable(); why != "" {
		return "", fmt.Errorf("%w: %s", recording.ErrNotRecordable, why)
	}
	b := c.browser
	notify := func(event string) {
		if b != nil {
			b.sendAsync(signal.Message{Type: signal.TypeRecording, CallID: b.clientID, Event: event})
		}
	}
	target, meta := recording.Target{Bridge: c.bridge}, recording.Meta{CallID: c.id, Parties: c.parties(), StartedBy: by}
	if c.kind == KindRoom { // an agent records the room it is in, until it leaves (ctiClosed)
		bridge, err := c.m.o.Rooms.BridgeOf(c.member.Room())
		if err != nil {
			return "", fmt.Errorf("%w: %w", recording.ErrNotRecordable, err)
		}
		target.Bridge, meta.Room, meta.Parties = bridge, c.member.Room(), c.roomParties()
	}
	sess, err := c.m.o.CTI.Recorder.Start(c.ctx, target, meta, notify)
	if err != nil {
		return "", err
	}
	c.cti.rec = sess
	c.log.Info("recording", "recording", sess.ID(), "by", by)
	c.publishLive()
	return sess.ID(), nil
}

// parties describes the call's two sides for the recording's sidecar.
func (c *Call) parties() []recording.Party {
	r := c.obs.rec
	browser := recording.Party{Kind: "browser", ID: c.browserUser()}
	phone := func(id string) recording.Party {
		k := "phone"
		if r.Trunk != "" {
			k = "trunk"
		}
		return recording.Party{Kind: k, ID: id}
	}
	switch c.kind {
	case KindPhoneIn:
		caller := phone(r.From)
		caller.Role, browser.Role = "caller", "callee"
		return []recording.Party{caller, browser}
	case KindBrowserOut:
		callee := phone(r.To)
		browser.Role, callee.Role = "caller", "callee"
		return []recording.Party{browser, callee}
	}
	from, to := phone(r.From), phone(r.To)
	from.Role, to.Role = "caller", "callee"
	return []recording.Party{from, to}
}

// roomParties describes the room's members for a recording's sidecar.
func (c *Call) roomParties() []recording.Party {
	var out []recording.Party
	for _, p := range c.member.Participants() {
		role := p.Role
		if role == "" {
			role = rooms.RoleParticipant
		}
		out = append(out, recording.Party{Role: role, Kind: p.Kind, ID: p.CallerID, Name: p.Name})
	}
	return out
}

// recordByPolicy starts the recording of a call that recording.mode always records.
func (c *Call) recordByPolicy() {
	if !c.m.o.CTI.RecordAlways || c.cti.rec != nil {
		return
	}
	if _, err := c.setRecording(true, "policy"); err != nil {
		c.log.Info("call not recorded", "reason", err)
	}
}

// recordFromBrowser: an agent (or moderator, or supervisor) asks to record, or to stop.
func (c *Call) recordFromBrowser(start bool) {
	switch c.browserRole() {
	case rooms.RoleAgent, rooms.RoleModerator, RoleSupervisor:
	default:
		c.ctiRefuse(wire.CodeNotAllowed, "only an agent's token may start or stop a recording")
		return
	}
	if _, err := c.setRecording(start, "user:"+c.browserUser()); err != nil && !errors.Is(err, ErrNotRecording) {
		code := wire.CodeUnavailable
		if errors.Is(err, recording.ErrNotRecordable) {
			code = wire.CodeBadMessage
		}
		c.ctiRefuse(code, err.Error())
	}
}

// onRecordRequest serves the API's request on the call goroutine.
func (c *Call) onRecordRequest(r *recordReq) {
	id, err := c.setRecording(r.start, r.by)
	r.reply <- recordReply{id: id, err: err}
}

// RecordCall starts (or stops) recording the live call id for the API; by names who asked ("api:<key>"). It returns
// the recording's ID.
func (m *Manager) RecordCall(ctx context.Context, id string, start bool, by string) (string, error) {
	c := m.callByID(id)
	if c == nil {
		return "", refuse(wire.CodeUnknownCall, "no call %s in progress", clip(id))
	}
	r := &recordReq{start: start, by: by, reply: make(chan recordReply, 1)}
	c.post(inbound{kind: inRecord, record: r})
	select {
	case rep := <-r.reply:
		return rep.id, rep.err
	case <-c.ctx.Done():
		return "", refuse(wire.CodeUnknownCall, "call %s ended", clip(id))
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
