package aritest

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/patchbay/patchbay/ari"
)

// Channel states as ARI names them.
const (
	stateDown    = "Down"
	stateRing    = "Ring"    // inbound, not answered
	stateRinging = "Ringing" // outbound, far end alerting
	stateUp      = "Up"
)

// channel is one Asterisk channel.
type channel struct {
	id, name     string
	state        string
	caller       ari.CallerID
	connected    ari.CallerID
	dp           ari.DialplanCEP
	created      time.Time
	vars         map[string]string // channel variables (and seeded function values)
	channelvars  map[string]string // shown in snapshots (externalMedia's UNICASTRTP_*)
	format       string            // native format, for CHANNEL(audionativeformat)
	stasisApp    string            // "" when not in Stasis
	subs         map[string]int    // app → subscription references (originate, Stasis, applications API)
	bridge       string            // bridge ID, "" when not bridged
	dialstring   string            // set for /channels/create channels: they may be dialled once
	dialing      bool              // dialled, not yet answered or failed
	dialGen      int               // bumped when dialling ends: stale behaviour steps stop
	dpGen        int               // bumped on each dialplan jump: stale dialplan steps stop
	orig         *origination      // what an originated channel does once answered
	snoopOf      string            // target channel of a Snoop channel
	endpoint     string            // what was dialled, e.g. "PJSIP/101"
	held, muted  bool
	media        *echoMedia
	externalHost string
}

// origination is where an originated channel goes when answered.
type origination struct {
	app, appArgs   string
	context, exten string
	priority       int64
}

func (ch *channel) snapshot() ari.Channel {
	c := ari.Channel{
		ID: ch.id, Name: ch.name, State: ch.state, Caller: ch.caller, Connected: ch.connected,
		Dialplan: ch.dp, CreationTime: ari.Time{Time: ch.created}, Language: "en", ProtocolID: "",
	}
	if len(ch.channelvars) > 0 {
		c.ChannelVars = maps.Clone(ch.channelvars)
	}
	return c
}

func (ch *channel) stopMedia() {
	if ch.media != nil {
		ch.media.close()
	}
}

// bridge is one ARI bridge.
type bridge struct {
	id, name, types string
	channels        []string
	created         time.Time
	subs            map[string]int // explicit applications-API subscriptions
}

func (b *bridge) technology() string {
	switch {
	case strings.Contains(b.types, "holding"):
		return "holding_bridge"
	case strings.Contains(b.types, "video_sfu") || len(b.channels) > 2:
		return "softmix"
	default:
		return "simple_bridge"
	}
}

func (b *bridge) bridgeType() string {
	if strings.Contains(b.types, "holding") {
		return "holding"
	}
	return "mixing"
}

func (b *bridge) snapshot() ari.Bridge {
	return ari.Bridge{
		ID: b.id, Technology: b.technology(), BridgeType: b.bridgeType(), BridgeClass: "stasis",
		Creator: "Stasis", Name: b.name, Channels: append([]string{}, b.channels...),
		VideoMode: "talker", CreationTime: ari.Time{Time: b.created},
	}
}

// playback is a playback on a channel or bridge.
type playback struct {
	ari.Playback
	target string // channel or bridge ID
}

// recording is a live recording.
type recording struct {
	ari.LiveRecording
	target string
}

// event is one ARI event before the application field is filled in.
type event map[string]any

func (s *Server) newEvent(typ string) event {
	return event{"type": typ, "timestamp": timestamp(time.Now()), "asterisk_id": s.astID}
}

// interested reports whether app receives events about ch.
func (s *Server) chanInterest(app string, ch *channel) bool {
	return ch != nil && ch.subs[app] > 0
}

// bridgeInterest: Asterisk subscribes an app to a bridge while one of its
// Stasis channels is in it, and on request through the applications API.
func (s *Server) bridgeInterest(app string, b *bridge) bool {
	if b == nil {
		return false
	}
	if b.subs[app] > 0 {
		return true
	}
	for _, id := range b.channels {
		if ch := s.channels[id]; ch != nil && ch.stasisApp == app {
			return true
		}
	}
	return false
}

// recipients lists the registered apps that receive an event about chans and brs.
func (s *Server) recipients(chans []*channel, brs []*bridge) []string {
	var out []string
	for app, c := range s.apps {
		if c.all {
			out = append(out, app)
			continue
		}
		hit := false
		for _, ch := range chans {
			hit = hit || s.chanInterest(app, ch)
		}
		for _, b := range brs {
			hit = hit || s.bridgeInterest(app, b)
		}
		if hit {
			out = append(out, app)
		}
	}
	slices.Sort(out)
	return out
}

// publish sends ev to every app interested in chans or brs right now.
func (s *Server) publish(ev event, chans []*channel, brs []*bridge) {
	s.publishTo(s.recipients(chans, brs), ev)
}

// publishTo sends ev to apps (those still registered).
func (s *Server) publishTo(apps []string, ev event) {
	for _, app := range apps {
		c := s.apps[app]
		if c == nil {
			continue
		}
		ev["application"] = app
		b, err := json.Marshal(ev)
		if err != nil {
			s.t.Errorf("aritest: encode %v event: %v", ev["type"], err)
			return
		}
		c.send(b)
	}
}

// chanEvent publishes a one-channel event with extra fields.
func (s *Server) chanEvent(typ string, ch *channel, extra event) {
	ev := s.newEvent(typ)
	ev["channel"] = ch.snapshot()
	maps.Copy(ev, extra)
	s.publish(ev, []*channel{ch}, nil)
}

// newChannelID returns an ID in Asterisk's "epoch.sequence" form.
func (s *Server) newChannelID() string {
	s.seq++
	return fmt.Sprintf("%d.%d", s.started.Unix(), s.seq)
}

// channelName builds Asterisk's name for a channel to endpoint tech/resource.
func (s *Server) channelName(tech, resource string) string {
	s.seq++
	switch strings.ToLower(tech) {
	case "local":
		return fmt.Sprintf("Local/%s-%08x;1", resource, s.seq)
	case "unicastrtp":
		return fmt.Sprintf("UnicastRTP/%s-%08x", resource, rand.Uint32())
	case "pjsip", "sip":
		// PJSIP/number@endpoint is named after the endpoint.
		if _, ep, ok := strings.Cut(resource, "@"); ok {
			resource = ep
		}
	}
	return fmt.Sprintf("%s/%s-%08x", tech, resource, s.seq)
}

// addChannel stores a new channel and announces it (ChannelCreated reaches
// only subscribeAll apps: nobody is subscribed to it yet).
func (s *Server) addChannel(ch *channel) {
	if ch.subs == nil {
		ch.subs = map[string]int{}
	}
	if ch.vars == nil {
		ch.vars = map[string]string{}
	}
	ch.created = time.Now()
	s.channels[ch.id] = ch
	s.chanEvent("ChannelCreated", ch, nil)
}

// alive reports whether ch is still the live channel of its ID.
func (s *Server) alive(ch *channel) bool { return s.channels[ch.id] == ch }

// subscribe adds an originate-style subscription of app to ch; like
// stasis_app_subscribe_channel it does nothing for an unregistered app.
func (s *Server) subscribe(app string, ch *channel) {
	if app != "" && s.apps[app] != nil {
		ch.subs[app]++
	}
}

// setState changes a channel's state and announces it.
func (s *Server) setState(ch *channel, state string) {
	if ch.state == state {
		return
	}
	ch.state = state
	s.chanEvent("ChannelStateChange", ch, nil)
}

// enterStasis puts ch into app with args. It fails, as Stasis() does, when
// the app has no events socket.
func (s *Server) enterStasis(ch *channel, app string, args []string) bool {
	if s.apps[app] == nil {
		return false
	}
	ch.stasisApp = app
	ch.subs[app]++
	ch.dp.AppName = "Stasis"
	ch.dp.AppData = strings.Join(append([]string{app}, args...), ",")
	if args == nil {
		args = []string{}
	}
	s.chanEvent("StasisStart", ch, event{"args": args})
	return true
}

// leaveStasis takes ch out of Stasis (continue): it leaves its bridge first.
func (s *Server) leaveStasis(ch *channel) {
	if ch.bridge != "" {
		s.removeFromBridge(ch, s.bridges[ch.bridge])
	}
	s.chanEvent("StasisEnd", ch, nil)
	if ch.subs[ch.stasisApp]--; ch.subs[ch.stasisApp] <= 0 {
		delete(ch.subs, ch.stasisApp)
	}
	ch.stasisApp = ""
	ch.dp.AppName, ch.dp.AppData = "", ""
}

// addToBridge puts ch into b, moving it out of its current bridge as
// Asterisk does for a Stasis channel.
func (s *Server) addToBridge(ch *channel, b *bridge) {
	if ch.bridge == b.id {
		return
	}
	if ch.bridge != "" {
		s.removeFromBridge(ch, s.bridges[ch.bridge])
	}
	ch.bridge = b.id
	b.channels = append(b.channels, ch.id)
	ev := s.newEvent("ChannelEnteredBridge")
	ev["bridge"] = b.snapshot()
	ev["channel"] = ch.snapshot()
	s.publish(ev, []*channel{ch}, []*bridge{b})
}

// removeFromBridge takes ch out of b and announces it to everyone who
// watched either (computed before the channel's own interest goes).
func (s *Server) removeFromBridge(ch *channel, b *bridge) {
	if b == nil {
		ch.bridge = ""
		return
	}
	apps := s.recipients([]*channel{ch}, []*bridge{b})
	b.channels = slices.DeleteFunc(b.channels, func(id string) bool { return id == ch.id })
	ch.bridge = ""
	ev := s.newEvent("ChannelLeftBridge")
	ev["bridge"] = b.snapshot()
	ev["channel"] = ch.snapshot()
	s.publishTo(apps, ev)
}

// hangup ends ch with cause: ChannelHangupRequest, Dial CANCEL for a
// channel still being dialled by ARI, ChannelLeftBridge, StasisEnd and
// ChannelDestroyed, all to the apps that watched it when the hangup began.
// soft marks a hangup requested through ARI.
func (s *Server) hangup(ch *channel, cause int, soft bool) {
	if !s.alive(ch) {
		return
	}
	if cause == 0 {
		cause = CauseNormalClearing
	}
	apps := s.recipients([]*channel{ch}, nil)
	req := s.newEvent("ChannelHangupRequest")
	req["channel"] = ch.snapshot()
	req["cause"] = cause
	if soft {
		req["soft"] = true
	}
	s.publishTo(apps, req)
	if ch.dialing && soft {
		s.dialEvent(ch, "CANCEL", "")
	}
	ch.dialing = false
	ch.dialGen++
	if ch.bridge != "" {
		s.removeFromBridge(ch, s.bridges[ch.bridge])
	}
	if ch.stasisApp != "" {
		end := s.newEvent("StasisEnd")
		end["channel"] = ch.snapshot()
		s.publishTo(apps, end)
		ch.stasisApp = ""
	}
	s.destroy(ch, cause, apps)
}

// destroy removes ch and what hangs off it, then sends ChannelDestroyed to apps.
func (s *Server) destroy(ch *channel, cause int, apps []string) {
	delete(s.channels, ch.id)
	ch.stopMedia()
	for _, id := range sortedKeys(s.playbacks) {
		if p := s.playbacks[id]; p.target == ch.id {
			s.finishPlayback(p)
		}
	}
	for _, name := range sortedKeys(s.recordings) {
		if r := s.recordings[name]; r.target == ch.id {
			s.finishRecording(r, "done", true)
		}
	}
	ev := s.newEvent("ChannelDestroyed")
	ev["channel"] = ch.snapshot()
	ev["cause"] = cause
	ev["cause_txt"] = CauseText(cause)
	s.publishTo(apps, ev)
	// A Snoop channel goes with the channel it spies on.
	for _, id := range sortedKeys(s.channels) {
		if sn := s.channels[id]; sn != nil && sn.snoopOf == ch.id {
			s.hangup(sn, CauseNormalClearing, false)
		}
	}
}

// dialEvent publishes Dial for peer ch (caller may be empty).
func (s *Server) dialEvent(ch *channel, status, callerID string) {
	ev := s.newEvent("Dial")
	ev["peer"] = ch.snapshot()
	ev["dialstatus"] = status
	if ch.dialstring != "" {
		ev["dialstring"] = ch.dialstring
	}
	chans := []*channel{ch}
	if c := s.channels[callerID]; c != nil && callerID != "" {
		ev["caller"] = c.snapshot()
		chans = append(chans, c)
	}
	s.publish(ev, chans, nil)
}

// finishPlayback ends a playback with PlaybackFinished.
func (s *Server) finishPlayback(p *playback) {
	if s.playbacks[p.ID] != p {
		return
	}
	delete(s.playbacks, p.ID)
	p.State = "done"
	ev := s.newEvent("PlaybackFinished")
	ev["playback"] = p.Playback
	s.publish(ev, []*channel{s.channels[p.target]}, []*bridge{s.bridges[p.target]})
}

// finishRecording ends a live recording; keep stores it.
func (s *Server) finishRecording(r *recording, state string, keep bool) {
	if s.recordings[r.Name] != r {
		return
	}
	delete(s.recordings, r.Name)
	r.State = state
	if keep {
		s.stored[r.Name] = ari.StoredRecording{Name: r.Name, Format: r.Format}
	}
	ev := s.newEvent("RecordingFinished")
	ev["recording"] = r.LiveRecording
	s.publish(ev, []*channel{s.channels[r.target]}, []*bridge{s.bridges[r.target]})
}
