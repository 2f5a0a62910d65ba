package aritest

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/patchbay/patchbay/ari"
)

// newUUID returns a random UUID, as Asterisk uses for bridge and playback IDs.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

var bridgeTypes = map[string]bool{
	"mixing": true, "holding": true, "dtmf_events": true, "proxy_media": true,
	"video_sfu": true, "video_single": true, "sdp_label": true,
}

func (s *Server) routeBridges(r *req) reply {
	segs, m := r.segs[1:], r.method
	switch {
	case len(segs) == 0 && m == http.MethodGet:
		out := make([]ari.Bridge, 0, len(s.bridges))
		for _, id := range sortedKeys(s.bridges) {
			out = append(out, s.bridges[id].snapshot())
		}
		return ok(out)
	case len(segs) == 0 && m == http.MethodPost:
		id := r.str("bridgeId")
		if id != "" && s.bridges[id] != nil {
			return fail(http.StatusConflict, "Bridge with id '%s' already exists", id)
		}
		return s.createBridge(r, id)
	case len(segs) == 0:
		return notFound
	}
	id := segs[0]
	b := s.bridges[id]
	if len(segs) == 1 {
		switch m {
		case http.MethodPost: // create with ID, or "update" an existing one
			if b == nil {
				return s.createBridge(r, id)
			}
			if r.str("type") != "" {
				return fail(http.StatusInternalServerError, "Supplying a bridge type when updating a bridge is not allowed.")
			}
			return ok(b.snapshot())
		case http.MethodGet:
			if b == nil {
				return fail(http.StatusNotFound, "Bridge not found")
			}
			return ok(b.snapshot())
		case http.MethodDelete:
			if b == nil {
				return fail(http.StatusNotFound, "Bridge not found")
			}
			s.destroyBridge(b)
			return noContent()
		}
		return notFound
	}
	op := segs[1]
	if m != http.MethodPost && !(m == http.MethodDelete && (op == "moh" || op == "videoSource")) {
		return notFound
	}
	findBridge := func() *reply {
		if b == nil {
			rp := fail(http.StatusNotFound, "Bridge not found")
			return &rp
		}
		return nil
	}
	if op == "record" && len(segs) == 2 {
		return s.record(r, "bridge", id, findBridge)
	}
	if rp := findBridge(); rp != nil {
		return *rp
	}
	switch {
	case op == "addChannel" && len(segs) == 2:
		chans, rp := s.stasisChannels(r)
		if rp != nil {
			return *rp
		}
		for _, ch := range chans {
			s.addToBridge(ch, b)
		}
		return noContent()
	case op == "removeChannel" && len(segs) == 2:
		chans, rp := s.stasisChannels(r)
		if rp != nil {
			return *rp
		}
		for _, ch := range chans {
			if ch.bridge != b.id {
				return fail(http.StatusUnprocessableEntity, "Channel not in this bridge")
			}
		}
		for _, ch := range chans {
			s.removeFromBridge(ch, b)
		}
		return noContent()
	case op == "play" && len(segs) <= 3:
		pbID := r.str("playbackId")
		if len(segs) == 3 {
			pbID = segs[2]
		}
		return s.play(r, "bridge", id, pbID)
	case op == "moh", op == "videoSource":
		return noContent()
	}
	return notFound
}

// stasisChannels resolves the channel parameter of addChannel and
// removeChannel with Asterisk's statuses: 400 for a channel that does not
// exist, 422 for one outside Stasis.
func (s *Server) stasisChannels(r *req) ([]*channel, *reply) {
	ids := r.list("channel")
	if len(ids) == 0 {
		rp := fail(http.StatusBadRequest, "Missing parameter channel")
		return nil, &rp
	}
	var out []*channel
	for _, id := range ids {
		ch := s.channels[id]
		if ch == nil {
			rp := fail(http.StatusBadRequest, "Channel not found")
			return nil, &rp
		}
		if ch.stasisApp == "" {
			rp := fail(http.StatusUnprocessableEntity, "Channel not in Stasis application")
			return nil, &rp
		}
		out = append(out, ch)
	}
	return out, nil
}

func (s *Server) createBridge(r *req, id string) reply {
	if len(id) > maxUniqueID {
		return fail(http.StatusBadRequest, "Bridge ID length exceeds maximum of %d", maxUniqueID)
	}
	types := r.list("type")
	if len(types) == 0 {
		types = []string{"mixing"}
	}
	for _, t := range types {
		if !bridgeTypes[t] {
			return fail(http.StatusBadRequest, "Invalid bridge type %q", t)
		}
	}
	if slices.Contains(types, "mixing") && slices.Contains(types, "holding") {
		return fail(http.StatusInternalServerError, "Unable to create bridge")
	}
	if id == "" {
		id = newUUID()
	}
	b := &bridge{id: id, name: r.str("name"), types: strings.Join(types, ","), created: time.Now(), subs: map[string]int{}}
	s.bridges[id] = b
	ev := s.newEvent("BridgeCreated")
	ev["bridge"] = b.snapshot()
	s.publish(ev, nil, []*bridge{b}) // nobody watches it yet: subscribeAll apps only
	return ok(b.snapshot())
}

// destroyBridge empties and removes b; its channels stay in Stasis.
func (s *Server) destroyBridge(b *bridge) {
	apps := s.recipients(nil, []*bridge{b})
	for _, id := range slices.Clone(b.channels) {
		if ch := s.channels[id]; ch != nil {
			s.removeFromBridge(ch, b)
		}
	}
	for _, id := range sortedKeys(s.playbacks) {
		if p := s.playbacks[id]; p.target == b.id {
			s.finishPlayback(p)
		}
	}
	for _, name := range sortedKeys(s.recordings) {
		if rec := s.recordings[name]; rec.target == b.id {
			s.finishRecording(rec, "done", true)
		}
	}
	delete(s.bridges, b.id)
	ev := s.newEvent("BridgeDestroyed")
	ev["bridge"] = b.snapshot()
	s.publishTo(apps, ev)
}

func (s *Server) routeApplications(r *req) reply {
	segs, m := r.segs[1:], r.method
	switch {
	case len(segs) == 0 && m == http.MethodGet:
		out := []ari.Application{}
		for _, app := range sortedKeys(s.apps) {
			out = append(out, s.application(app))
		}
		return ok(out)
	case len(segs) == 1 && m == http.MethodGet:
		if s.apps[segs[0]] == nil {
			return fail(http.StatusNotFound, "Application not found")
		}
		return ok(s.application(segs[0]))
	case len(segs) == 2 && segs[1] == "subscription" && (m == http.MethodPost || m == http.MethodDelete):
		return s.subscription(r, segs[0], m == http.MethodPost)
	}
	return notFound
}

// application is the Application model: what app receives events about.
func (s *Server) application(app string) ari.Application {
	a := ari.Application{Name: app, ChannelIDs: []string{}, BridgeIDs: []string{}, EndpointIDs: []string{}, DeviceNames: []string{}}
	for _, id := range sortedKeys(s.channels) {
		if s.chanInterest(app, s.channels[id]) {
			a.ChannelIDs = append(a.ChannelIDs, id)
		}
	}
	for _, id := range sortedKeys(s.bridges) {
		if s.bridgeInterest(app, s.bridges[id]) {
			a.BridgeIDs = append(a.BridgeIDs, id)
		}
	}
	if c := s.apps[app]; c != nil {
		a.EndpointIDs = append(a.EndpointIDs, sortedKeys(c.endpoints)...)
		a.DeviceNames = append(a.DeviceNames, sortedKeys(c.devices)...)
	}
	return a
}

// subscription is POST/DELETE /applications/{app}/subscription.
func (s *Server) subscription(r *req, app string, add bool) reply {
	c := s.apps[app]
	if c == nil {
		return fail(http.StatusNotFound, "Application not found")
	}
	sources := r.list("eventSource")
	if len(sources) == 0 {
		return fail(http.StatusBadRequest, "Missing parameter eventSource")
	}
	type target struct {
		ch   *channel
		b    *bridge
		set  map[string]bool
		name string
	}
	var targets []target
	for _, src := range sources {
		scheme, name, _ := strings.Cut(src, ":")
		switch scheme {
		case "channel":
			ch := s.channels[name]
			if ch == nil {
				return fail(http.StatusUnprocessableEntity, "Event source does not exist")
			}
			targets = append(targets, target{ch: ch})
		case "bridge":
			b := s.bridges[name]
			if b == nil {
				return fail(http.StatusUnprocessableEntity, "Event source does not exist")
			}
			targets = append(targets, target{b: b})
		case "endpoint":
			targets = append(targets, target{set: c.endpoints, name: name})
		case "deviceState":
			targets = append(targets, target{set: c.devices, name: name})
		default:
			return fail(http.StatusBadRequest, "Invalid event source URI scheme")
		}
	}
	delta := 1
	if !add {
		delta = -1
	}
	for _, t := range targets {
		switch {
		case t.ch != nil:
			if t.ch.subs[app] += delta; t.ch.subs[app] <= 0 {
				delete(t.ch.subs, app)
			}
		case t.b != nil:
			if t.b.subs[app] += delta; t.b.subs[app] <= 0 {
				delete(t.b.subs, app)
			}
		case add:
			t.set[t.name] = true
		default:
			delete(t.set, t.name)
		}
	}
	return ok(s.application(app))
}

func (s *Server) routeAsterisk(r *req) reply {
	segs, m := r.segs[1:], r.method
	if len(segs) != 1 {
		return notFound
	}
	switch {
	case segs[0] == "info" && m == http.MethodGet:
		var info ari.AsteriskInfo
		info.Build.OS, info.Build.Kernel, info.Build.Machine = "Linux", "6.1.0", "x86_64"
		info.Build.User, info.Build.Date = "aritest", "2025-01-01 00:00:00 UTC"
		info.System.Version, info.System.EntityID = "22.0.0-aritest", s.astID
		info.Config.DefaultLanguage = "en"
		info.Status.StartupTime = ari.Time{Time: s.started}
		info.Status.LastReloadTime = ari.Time{Time: s.started}
		return ok(info)
	case segs[0] == "ping" && m == http.MethodGet:
		return ok(ari.AsteriskPing{AsteriskID: s.astID, Ping: "pong", Timestamp: ari.Time{Time: time.Now()}})
	case segs[0] == "variable" && m == http.MethodGet:
		if r.str("variable") == "" {
			return fail(http.StatusBadRequest, "Variable name is required")
		}
		return ok(map[string]string{"value": s.globals[r.str("variable")]})
	case segs[0] == "variable" && m == http.MethodPost:
		if r.str("variable") == "" {
			return fail(http.StatusBadRequest, "Variable name is required")
		}
		s.globals[r.str("variable")] = r.str("value")
		return noContent()
	}
	return notFound
}

func (s *Server) routePlaybacks(r *req) reply {
	segs, m := r.segs[1:], r.method
	if len(segs) == 0 {
		return notFound
	}
	p := s.playbacks[segs[0]]
	switch {
	case len(segs) == 1 && (m == http.MethodGet || m == http.MethodDelete),
		len(segs) == 2 && segs[1] == "control" && m == http.MethodPost:
	default:
		return notFound
	}
	if p == nil {
		return fail(http.StatusNotFound, "Playback not found")
	}
	switch {
	case m == http.MethodGet:
		return ok(p.Playback)
	case m == http.MethodDelete:
		s.finishPlayback(p)
		return noContent()
	}
	switch r.str("operation") {
	case "restart", "pause", "unpause", "reverse", "forward":
		return noContent()
	case "":
		return fail(http.StatusBadRequest, "Missing required parameter operation")
	}
	return fail(http.StatusBadRequest, "Invalid operation %s", r.str("operation"))
}

func (s *Server) routeRecordings(r *req) reply {
	segs, m := r.segs[1:], r.method
	if len(segs) == 0 {
		return notFound
	}
	switch segs[0] {
	case "live":
		if len(segs) < 2 {
			return notFound
		}
		rec := s.recordings[segs[1]]
		switch {
		case len(segs) == 2 && (m == http.MethodGet || m == http.MethodDelete),
			len(segs) == 3 && segs[2] == "stop" && m == http.MethodPost:
		default:
			return notFound
		}
		if rec == nil {
			return fail(http.StatusNotFound, "Recording not found")
		}
		switch {
		case m == http.MethodGet:
			return ok(rec.LiveRecording)
		case m == http.MethodDelete:
			s.finishRecording(rec, "canceled", false)
		default:
			s.finishRecording(rec, "done", true)
		}
		return noContent()
	case "stored":
		switch {
		case len(segs) == 1 && m == http.MethodGet:
			out := []ari.StoredRecording{}
			for _, name := range sortedKeys(s.stored) {
				out = append(out, s.stored[name])
			}
			return ok(out)
		case len(segs) == 3 && segs[2] == "file" && m == http.MethodGet:
			rec, found := s.stored[segs[1]]
			if !found {
				return fail(http.StatusNotFound, "Recording not found")
			}
			return reply{status: http.StatusOK, raw: storedFile(rec.Format), contentType: "audio/" + rec.Format}
		case len(segs) == 2 && (m == http.MethodGet || m == http.MethodDelete):
			rec, found := s.stored[segs[1]]
			if !found {
				return fail(http.StatusNotFound, "Recording not found")
			}
			if m == http.MethodDelete {
				delete(s.stored, segs[1])
				return noContent()
			}
			return ok(rec)
		}
	}
	return notFound
}

// storedFile is the content the fake serves for a stored recording: a WAV header and a second of 8 kHz silence for
// "wav", a second of silence for raw formats. Recording content is not modelled.
func storedFile(format string) []byte {
	const n = 8000 * 2
	if format != "wav" {
		return make([]byte, n)
	}
	b := make([]byte, 44+n)
	copy(b, "RIFF")
	putLE32(b[4:], 36+n)
	copy(b[8:], "WAVEfmt ")
	putLE32(b[16:], 16)
	b[20], b[22] = 1, 1 // PCM, mono
	putLE32(b[24:], 8000)
	putLE32(b[28:], 16000)
	b[32], b[34] = 2, 16
	copy(b[36:], "data")
	putLE32(b[40:], n)
	return b
}

func putLE32(b []byte, v int) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}
