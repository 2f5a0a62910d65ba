package aritest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Behavior is what the far end of an endpoint does once a channel to it is
// dialled (originate, or dial of a created channel): a sequence of steps,
// each after a delay from the previous one. Build one with a constructor and
// chain more steps, e.g. Ring(0).Answer(50*time.Millisecond).Hangup(time.Second, CauseNormalClearing).
//
// Ringing sends ChannelStateChange (Ringing) and Dial RINGING; answering
// sends ChannelStateChange (Up) and Dial ANSWER, and puts an originated
// channel into its Stasis app; a failure sends Dial with its dialstatus and
// hangs the channel up with the matching cause.
type Behavior struct{ steps []step }

type stepKind int

const (
	stepWait stepKind = iota
	stepRing
	stepAnswer
	stepFail
	stepHangup
	stepDTMF
	stepNever
)

type step struct {
	kind   stepKind
	wait   time.Duration
	status string // dialstatus, for stepFail
	cause  int
	digits string
}

func (b Behavior) then(st step) Behavior { return Behavior{steps: append(slices.Clip(b.steps), st)} }

// Answer answers after d.
func Answer(after time.Duration) Behavior { return Behavior{}.Answer(after) }

// Ring starts ringing after d; chain Answer, Busy, ... to end it, or it rings
// until the dial times out or is hung up.
func Ring(after time.Duration) Behavior { return Behavior{}.Ring(after) }

// Busy rejects the call at once: Dial BUSY, cause 17.
func Busy() Behavior { return Behavior{}.Busy() }

// NoAnswer gives up at once as an unanswered call does: Dial NOANSWER, cause 19.
func NoAnswer() Behavior { return Behavior{}.NoAnswer() }

// Congestion fails at once: Dial CONGESTION, cause 34.
func Congestion() Behavior { return Behavior{}.Congestion() }

// Unavailable fails at once as an unreachable endpoint does: Dial
// CHANUNAVAIL, cause 20 (subscriber absent).
func Unavailable() Behavior { return Behavior{}.Unavailable() }

// Never rings forever (until the dial times out or is hung up).
func Never() Behavior { return Behavior{}.Ring(0).Never() }

// Fail fails at once with any dialstatus and cause.
func Fail(dialstatus string, cause int) Behavior { return Behavior{}.Fail(dialstatus, cause) }

// Answer answers after d.
func (b Behavior) Answer(after time.Duration) Behavior {
	return b.then(step{kind: stepAnswer, wait: after})
}

// Ring starts ringing after d.
func (b Behavior) Ring(after time.Duration) Behavior {
	return b.then(step{kind: stepRing, wait: after})
}

// Wait waits d before the next step.
func (b Behavior) Wait(d time.Duration) Behavior { return b.then(step{kind: stepWait, wait: d}) }

// Busy rejects the call: Dial BUSY, cause 17.
func (b Behavior) Busy() Behavior { return b.Fail("BUSY", CauseUserBusy) }

// NoAnswer gives up ringing: Dial NOANSWER, cause 19.
func (b Behavior) NoAnswer() Behavior { return b.Fail("NOANSWER", CauseNoAnswer) }

// Congestion fails: Dial CONGESTION, cause 34.
func (b Behavior) Congestion() Behavior { return b.Fail("CONGESTION", CauseCongestion) }

// Unavailable fails: Dial CHANUNAVAIL, cause 20.
func (b Behavior) Unavailable() Behavior { return b.Fail("CHANUNAVAIL", CauseSubscriberAbsent) }

// Fail fails with dialstatus and cause.
func (b Behavior) Fail(dialstatus string, cause int) Behavior {
	return b.then(step{kind: stepFail, status: dialstatus, cause: cause})
}

// Never ends the script: nothing more happens.
func (b Behavior) Never() Behavior { return b.then(step{kind: stepNever}) }

// Hangup makes the far end hang up after d with cause (0 means 16).
func (b Behavior) Hangup(after time.Duration, cause int) Behavior {
	return b.then(step{kind: stepHangup, wait: after, cause: cause})
}

// DTMF makes the far end send digits after d (ChannelDtmfReceived each).
func (b Behavior) DTMF(after time.Duration, digits string) Behavior {
	return b.then(step{kind: stepDTMF, wait: after, digits: digits})
}

// Endpoint scripts what channels to endpoints starting with prefix do when
// dialled, e.g. "PJSIP/101", "Local/600@from-patchbay", "PJSIP/+44". The
// longest matching prefix wins; unscripted endpoints answer at once.
func (s *Server) Endpoint(prefix string, b Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints[prefix] = b
}

// behavior returns the script for endpoint. Called with s.mu held.
func (s *Server) behavior(endpoint string) Behavior {
	best, found := "", false
	for p := range s.endpoints {
		if strings.HasPrefix(endpoint, p) && (!found || len(p) > len(best)) {
			best, found = p, true
		}
	}
	if !found {
		return Answer(0)
	}
	return s.endpoints[best]
}

// startDial dials ch: Dial with an empty dialstatus, then the endpoint's
// script; timeout > 0 ends an unanswered dial with NOANSWER.
func (s *Server) startDial(ch *channel, callerID string, timeout time.Duration) {
	ch.dialing = true
	ch.dialGen++
	gen := ch.dialGen
	s.dialEvent(ch, "", callerID)
	if timeout > 0 {
		s.after(timeout, func() {
			if s.alive(ch) && ch.dialing && ch.dialGen == gen {
				s.failDial(ch, "NOANSWER", CauseNoAnswer, callerID)
			}
		})
	}
	if strings.HasPrefix(ch.endpoint, "UnicastRTP/") || strings.HasPrefix(ch.endpoint, "AudioSocket/") {
		return // externalMedia answers by itself
	}
	s.runSteps(ch, gen, s.behavior(ch.endpoint).steps, callerID, false)
}

// runSteps runs steps in order; a step with a delay reschedules the rest.
func (s *Server) runSteps(ch *channel, gen int, steps []step, callerID string, waited bool) {
	for i, st := range steps {
		if !s.alive(ch) || ch.dialGen != gen {
			return
		}
		if st.wait > 0 && !waited {
			rest := steps[i:]
			s.after(st.wait, func() { s.runSteps(ch, gen, rest, callerID, true) })
			return
		}
		waited = false
		switch st.kind {
		case stepRing:
			if ch.dialing {
				s.setState(ch, stateRinging)
				s.dialEvent(ch, "RINGING", callerID)
			}
		case stepAnswer:
			if ch.dialing {
				s.answered(ch, callerID)
			}
		case stepFail:
			if ch.dialing {
				s.failDial(ch, st.status, st.cause, callerID)
			}
			return
		case stepHangup:
			s.hangup(ch, st.cause, false)
			return
		case stepDTMF:
			s.dtmf(ch, st.digits)
		case stepNever:
			return
		}
	}
}

// answered: the far end answered ch; an originated channel then goes where
// the originate said.
func (s *Server) answered(ch *channel, callerID string) {
	ch.dialing = false
	s.setState(ch, stateUp)
	s.dialEvent(ch, "ANSWER", callerID)
	o := ch.orig
	ch.orig = nil
	switch {
	case o == nil:
	case o.app != "":
		if !s.enterStasis(ch, o.app, splitArgs(o.appArgs)) {
			s.hangup(ch, CauseNormalClearing, false)
		}
	default:
		s.gotoDialplan(ch, o.context, o.exten, o.priority)
	}
}

// failDial ends a dial with dialstatus and hangs ch up with cause.
func (s *Server) failDial(ch *channel, status string, cause int, callerID string) {
	ch.dialing = false
	s.dialEvent(ch, status, callerID)
	s.hangup(ch, cause, false)
}

// dtmf sends ChannelDtmfReceived for each digit, as if the far end pressed them.
func (s *Server) dtmf(ch *channel, digits string) {
	for _, d := range digits {
		s.chanEvent("ChannelDtmfReceived", ch, event{"digit": string(d), "duration_ms": 100})
	}
}

// DialplanApp is one dialplan application run by a scripted extension after
// a channel continues into it. Each sends ChannelDialplan (to apps still
// subscribed to the channel) with the app's name and data.
type DialplanApp struct {
	name, data string
	kind       dpKind
	wait       time.Duration
	cause      int
	app        string
	args       []string
}

type dpKind int

const (
	dpOther dpKind = iota
	dpAnswer
	dpEcho
	dpWait
	dpHangup
	dpStasis
)

// AppAnswer is Answer(): the channel goes Up.
func AppAnswer() DialplanApp { return DialplanApp{name: "Answer", kind: dpAnswer} }

// AppEcho is Echo(): with WithEchoMedia an externalMedia channel echoes its
// RTP; the extension stays in Echo until the channel is hung up.
func AppEcho() DialplanApp { return DialplanApp{name: "Echo", kind: dpEcho} }

// AnswerEcho is the echo-test extension: Answer() then Echo().
func AnswerEcho() []DialplanApp { return []DialplanApp{AppAnswer(), AppEcho()} }

// AppWait is Wait(d).
func AppWait(d time.Duration) DialplanApp {
	return DialplanApp{name: "Wait", data: strconv.FormatFloat(d.Seconds(), 'f', -1, 64), kind: dpWait, wait: d}
}

// AppHangup is Hangup(cause): the channel is destroyed with cause (0 means 16).
func AppHangup(cause int) DialplanApp {
	data := ""
	if cause != 0 {
		data = strconv.Itoa(cause)
	}
	return DialplanApp{name: "Hangup", data: data, kind: dpHangup, cause: cause}
}

// AppStasis is Stasis(app,args...): the channel (re-)enters app with
// StasisStart, or is hung up if app has no events socket.
func AppStasis(app string, args ...string) DialplanApp {
	return DialplanApp{name: "Stasis", data: strings.Join(append([]string{app}, args...), ","), kind: dpStasis, app: app, args: args}
}

// App is any other application: it only sends its ChannelDialplan event.
func App(name, data string) DialplanApp { return DialplanApp{name: name, data: data} }

// Dialplan scripts what context,exten runs after a continue (or an
// originate to an extension). Unscripted extensions leave the channel
// sitting there until it is hung up.
func (s *Server) Dialplan(context, exten string, apps ...DialplanApp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dialplan[context+","+exten] = slices.Clone(apps)
}

// gotoDialplan moves ch to context,exten,priority and runs its script.
func (s *Server) gotoDialplan(ch *channel, context, exten string, priority int64) {
	ch.dpGen++
	ch.dp.Context, ch.dp.Exten, ch.dp.Priority = context, exten, priority
	ch.dp.AppName, ch.dp.AppData = "", ""
	s.runDialplan(ch, ch.dpGen, s.dialplan[context+","+exten], priority, false)
}

func (s *Server) runDialplan(ch *channel, gen int, apps []DialplanApp, priority int64, waited bool) {
	for i, a := range apps {
		if !s.alive(ch) || ch.dpGen != gen || ch.stasisApp != "" {
			return
		}
		pri := priority + int64(i)
		if !waited {
			ch.dp.Priority, ch.dp.AppName, ch.dp.AppData = pri, a.name, a.data
			s.chanEvent("ChannelDialplan", ch, event{"dialplan_app": a.name, "dialplan_app_data": a.data})
		}
		if a.kind == dpWait && !waited {
			rest := apps[i:]
			s.after(a.wait, func() { s.runDialplan(ch, gen, rest, pri, true) })
			return
		}
		waited = false
		switch a.kind {
		case dpAnswer:
			s.setState(ch, stateUp)
		case dpEcho:
			return
		case dpHangup:
			s.hangup(ch, a.cause, false)
			return
		case dpStasis:
			if !s.enterStasis(ch, a.app, a.args) {
				s.hangup(ch, CauseNormalClearing, false)
			}
			return
		}
	}
}

// Call describes a call arriving from a phone or trunk whose dialplan runs
// Stasis(App,Args...).
type Call struct {
	Endpoint     string // e.g. "PJSIP/101": the channel is named "PJSIP/101-0000000n"
	ID           string // channel ID; empty gives an Asterisk-style "epoch.n"
	CallerNumber string
	CallerName   string
	Context      string            // where the call entered the dialplan (default "from-internal")
	Exten        string            // the dialled extension (default "s")
	App          string            // Stasis application (default the server's)
	Args         []string          // Stasis arguments
	Format       string            // native format, CHANNEL(audionativeformat) (default "ulaw")
	Vars         map[string]string // channel variables, or values of functions to read, e.g. "CHANNEL(rtp,dest)"
	Answered     bool              // the dialplan answered before Stasis: state Up, not Ring
}

// Incoming makes a call arrive: a channel in state Ring (or Up) enters
// Stasis with StasisStart. It returns the channel ID, or "" (failing the
// test) on a bad Call. If the app has no events socket, Stasis() fails and
// the channel is hung up at once, as in Asterisk.
func (s *Server) Incoming(c Call) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tech, resource, okEP := splitEndpoint(c.Endpoint)
	if !okEP {
		s.t.Errorf("aritest: Incoming: endpoint %q is not Tech/resource", c.Endpoint)
		return ""
	}
	if c.ID != "" && s.channels[c.ID] != nil {
		s.t.Errorf("aritest: Incoming: channel %s already exists", c.ID)
		return ""
	}
	if c.ID == "" {
		c.ID = s.newChannelID()
	}
	if c.Context == "" {
		c.Context = "from-internal"
	}
	if c.Exten == "" {
		c.Exten = "s"
	}
	if c.App == "" {
		c.App = s.app
	}
	if c.Format == "" {
		c.Format = "ulaw"
	}
	ch := &channel{id: c.ID, name: s.channelName(tech, resource), state: stateRing, format: c.Format,
		endpoint: c.Endpoint, vars: map[string]string{}}
	if c.Answered {
		ch.state = stateUp
	}
	ch.caller.Number, ch.caller.Name = c.CallerNumber, c.CallerName
	ch.dp.Context, ch.dp.Exten, ch.dp.Priority = c.Context, c.Exten, 1
	for k, v := range c.Vars {
		s.writeVar(ch, k, v, false)
	}
	s.addChannel(ch)
	if !s.enterStasis(ch, c.App, slices.Clone(c.Args)) {
		s.hangup(ch, CauseNormalClearing, false)
	}
	return ch.id
}

// HangupFromFar makes the far end of a channel hang up with cause (0 means
// 16): ChannelHangupRequest, ChannelLeftBridge if bridged, StasisEnd if in
// Stasis, ChannelDestroyed. (Asterisk would run the rest of the dialplan of
// an inbound channel after StasisEnd; nothing observable through ARI.)
func (s *Server) HangupFromFar(id string, cause int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[id]
	if ch == nil {
		return fmt.Errorf("aritest: hang up %s from the far end: no such channel", id)
	}
	s.hangup(ch, cause, false)
	return nil
}

// DTMFFromFar makes the far end of a channel send digits: one
// ChannelDtmfReceived each.
func (s *Server) DTMFFromFar(id, digits string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[id]
	if ch == nil {
		return fmt.Errorf("aritest: send DTMF %q from the far end of %s: no such channel", digits, id)
	}
	s.dtmf(ch, digits)
	return nil
}

// HoldFromFar makes the far end of a channel put it on hold (a phone's re-INVITE with sendonly): ChannelHold, or
// ChannelUnhold when hold is false.
func (s *Server) HoldFromFar(id string, hold bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[id]
	if ch == nil {
		return fmt.Errorf("aritest: hold from the far end of %s: no such channel", id)
	}
	if hold {
		s.chanEvent("ChannelHold", ch, nil)
	} else {
		s.chanEvent("ChannelUnhold", ch, nil)
	}
	return nil
}

// BlindTransferFromFar makes the far end of channel id, which must be in a Stasis bridge, blind-transfer its peers
// to exten (a phone's REFER), as Asterisk 22 does: a Local channel ";1" that dials exten@context enters the
// transferer's Stasis application with no arguments and the transferer as its replace_channel, takes its place in
// the bridge, BridgeBlindTransfer follows, and the transferer hangs up. It returns the Local channel's ID.
func (s *Server) BlindTransferFromFar(id, context, exten string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[id]
	if ch == nil || ch.bridge == "" || ch.stasisApp == "" {
		return "", fmt.Errorf("aritest: blind transfer from %s: no such channel in a Stasis bridge", id)
	}
	b := s.bridges[ch.bridge]
	s.seq++
	local := &channel{id: s.newChannelID(), name: fmt.Sprintf("Local/%s@%s-%08x;1", exten, context, s.seq), state: stateUp,
		format: ch.format, vars: map[string]string{}}
	local.dp.Context, local.dp.Exten, local.dp.Priority = context, exten, 1
	s.addChannel(local)
	local.stasisApp = ch.stasisApp
	local.subs[ch.stasisApp]++
	local.dp.AppName, local.dp.AppData = "Stasis", ch.stasisApp
	s.chanEvent("StasisStart", local, event{"args": []string{}, "replace_channel": ch.snapshot()})
	var transferee *channel
	for _, other := range b.channels {
		if other != ch.id {
			transferee = s.channels[other]
		}
	}
	s.removeFromBridge(ch, b)
	s.addToBridge(local, b)
	ev := s.newEvent("BridgeBlindTransfer")
	ev["channel"] = ch.snapshot()
	ev["replace_channel"] = local.snapshot()
	if transferee != nil {
		ev["transferee"] = transferee.snapshot()
	}
	ev["exten"], ev["context"], ev["result"], ev["is_external"] = exten, context, "Success", true
	ev["bridge"] = b.snapshot()
	s.publish(ev, []*channel{ch, local}, []*bridge{b})
	s.hangup(ch, CauseNormalClearing, false)
	return local.id, nil
}
