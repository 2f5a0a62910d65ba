package aritest

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/patchbay/patchbay/ari"
)

// maxBody bounds a request body; ARI bodies are small JSON objects.
const maxBody = 1 << 20

// maxUniqueID is AST_MAX_PUBLIC_UNIQUEID.
const maxUniqueID = 128

// req is one parsed REST request.
type req struct {
	method string
	segs   []string          // path segments below /ari, unescaped
	q      url.Values        // query merged with the JSON body's scalar fields
	vars   map[string]string // the body's "variables" object
}

func (r *req) str(k string) string { return r.q.Get(k) }

// list returns a comma-separated or repeated parameter as one list.
func (r *req) list(k string) []string {
	var out []string
	for _, v := range r.q[k] {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// num parses an integer parameter; absent gives def.
func (r *req) num(k string, def int) (int, *reply) {
	v := r.q.Get(k)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		rp := fail(http.StatusBadRequest, "Invalid value for parameter %s: %q is not an integer", k, v)
		return 0, &rp
	}
	return n, nil
}

// reply is a handler's answer.
type reply struct {
	status   int
	body     any
	location string
	// raw, when set, is sent as is with contentType instead of body as JSON (a stored recording's file).
	raw         []byte
	contentType string
}

func ok(v any) reply { return reply{status: http.StatusOK, body: v} }

func created(loc string, v any) reply {
	return reply{status: http.StatusCreated, body: v, location: loc}
}

func noContent() reply { return reply{status: http.StatusNoContent} }

func fail(status int, format string, a ...any) reply {
	return reply{status: status, body: errBody{fmt.Sprintf(format, a...)}}
}

// serveHTTP is the fake's whole HTTP surface.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.waitThawed(r) {
		return
	}
	if r.URL.Path != "/ari" && !strings.HasPrefix(r.URL.Path, "/ari/") {
		writeJSON(w, http.StatusNotFound, errBody{"Not found: ARI lives under /ari"})
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/ari")
	user, pass, _ := r.BasicAuth()
	if subtle.ConstantTimeCompare([]byte(user), []byte(s.user)) != 1 || subtle.ConstantTimeCompare([]byte(pass), []byte(s.pass)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="Asterisk REST Interface"`)
		writeJSON(w, http.StatusUnauthorized, errBody{"Authentication required"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errBody{"Error reading request body: " + err.Error()})
		return
	}

	s.mu.Lock()
	idx := len(s.reqs)
	s.reqs = append(s.reqs, Request{Method: r.Method, Path: p, Query: r.URL.Query(), Body: string(body)})
	delay, failStatus := s.takeFaults(r.Method, p)
	s.mu.Unlock()
	status := 0
	defer func() {
		s.mu.Lock()
		s.reqs[idx].Status = status
		s.mu.Unlock()
	}()

	if delay > 0 {
		// A client that hangs up meanwhile does not stop the request: Asterisk carries out what it was sent.
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			return
		}
		if !s.waitThawed(r) {
			return
		}
	}
	if failStatus != 0 {
		status = failStatus
		writeJSON(w, failStatus, errBody{fmt.Sprintf("aritest: injected failure of %s %s", r.Method, p)})
		return
	}
	if p == "/events" && r.Method == http.MethodGet {
		status = s.serveEvents(w, r)
		return
	}

	rq, bad := parseReq(r, body)
	var rp reply
	if bad != nil {
		rp = *bad
	} else {
		s.mu.Lock()
		if s.closed {
			rp = fail(http.StatusServiceUnavailable, "aritest: server closed")
		} else {
			rp = s.route(rq)
		}
		s.mu.Unlock()
	}
	status = rp.status
	if rp.location != "" {
		w.Header().Set("Location", rp.location)
	}
	if rp.status == http.StatusNoContent {
		w.WriteHeader(rp.status)
		return
	}
	if rp.raw != nil {
		w.Header().Set("Content-Type", rp.contentType)
		w.WriteHeader(rp.status)
		_, _ = w.Write(rp.raw)
		return
	}
	writeJSON(w, rp.status, rp.body)
}

// waitThawed blocks while the server is frozen; false means give up (the
// client went away or the server closed).
func (s *Server) waitThawed(r *http.Request) bool {
	for {
		s.mu.Lock()
		frozen, thaw := s.frozen, s.thaw
		s.mu.Unlock()
		if !frozen {
			return true
		}
		select {
		case <-thaw:
		case <-r.Context().Done():
			return false
		case <-s.done:
			return false
		}
	}
}

// parseReq splits the path and merges parameters as Asterisk does: query
// parameters first, then scalar fields of a JSON object body; the body's
// "variables" object holds channel variables.
func parseReq(r *http.Request, body []byte) (*req, *reply) {
	if len(body) > maxBody {
		rp := fail(http.StatusRequestEntityTooLarge, "Request body too large")
		return nil, &rp
	}
	raw := strings.TrimPrefix(r.URL.EscapedPath(), "/ari")
	var segs []string
	for _, seg := range strings.Split(strings.Trim(raw, "/"), "/") {
		if seg == "" {
			continue
		}
		u, err := url.PathUnescape(seg)
		if err != nil {
			rp := fail(http.StatusBadRequest, "Malformed path segment %q", seg)
			return nil, &rp
		}
		segs = append(segs, u)
	}
	rq := &req{method: r.Method, segs: segs, q: r.URL.Query()}
	if b := strings.TrimSpace(string(body)); b != "" && b != "null" {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(b), &obj); err != nil {
			rp := fail(http.StatusBadRequest, "Error parsing request body: %v", err)
			return nil, &rp
		}
		for k, v := range obj {
			if k == "variables" {
				if err := json.Unmarshal(v, &rq.vars); err != nil {
					rp := fail(http.StatusBadRequest, "Only string values in the 'variables' object allowed")
					return nil, &rp
				}
				continue
			}
			if rq.q.Has(k) {
				continue
			}
			var sv any
			if json.Unmarshal(v, &sv) != nil {
				continue
			}
			switch x := sv.(type) {
			case string:
				rq.q.Set(k, x)
			case float64:
				rq.q.Set(k, strconv.FormatFloat(x, 'f', -1, 64))
			case bool:
				rq.q.Set(k, strconv.FormatBool(x))
			}
		}
	}
	return rq, nil
}

var notFound = fail(http.StatusNotFound, "Resource not found")

// route dispatches a request. Called with s.mu held.
func (s *Server) route(r *req) reply {
	if len(r.segs) == 0 {
		return notFound
	}
	switch r.segs[0] {
	case "channels":
		return s.routeChannels(r)
	case "bridges":
		return s.routeBridges(r)
	case "applications":
		return s.routeApplications(r)
	case "asterisk":
		return s.routeAsterisk(r)
	case "playbacks":
		return s.routePlaybacks(r)
	case "recordings":
		return s.routeRecordings(r)
	case "events":
		return s.routeEvents(r)
	}
	return notFound
}

// routeEvents serves POST /events/user/{name}: a ChannelUserevent to one application, as Asterisk sends it
// (no channel or bridge when no source is given).
func (s *Server) routeEvents(r *req) reply {
	segs := r.segs[1:]
	if r.method != http.MethodPost || len(segs) != 2 || segs[0] != "user" {
		return notFound
	}
	app := r.str("application")
	if app == "" {
		return fail(http.StatusBadRequest, "Missing parameter application")
	}
	if s.apps[app] == nil {
		return fail(http.StatusNotFound, "Application not found")
	}
	ev := s.newEvent("ChannelUserevent")
	ev["eventname"] = segs[1]
	uv := map[string]string{}
	maps.Copy(uv, r.vars)
	ev["userevent"] = uv
	s.publishTo([]string{app}, ev)
	return noContent()
}

func (s *Server) routeChannels(r *req) reply {
	segs, m := r.segs[1:], r.method
	switch {
	case len(segs) == 0 && m == http.MethodGet:
		out := make([]any, 0, len(s.channels))
		for _, id := range sortedKeys(s.channels) {
			out = append(out, s.channels[id].snapshot())
		}
		return ok(out)
	case len(segs) == 0 && m == http.MethodPost:
		return s.originate(r, r.str("channelId"))
	case len(segs) == 1 && segs[0] == "create" && m == http.MethodPost:
		return s.create(r)
	case len(segs) == 1 && segs[0] == "externalMedia" && m == http.MethodPost:
		return s.externalMedia(r)
	case len(segs) == 1 && m == http.MethodPost:
		return s.originate(r, segs[0])
	case len(segs) == 0:
		return notFound
	}
	id := segs[0]
	ch := s.channels[id]
	if len(segs) == 1 {
		switch m {
		case http.MethodGet:
			if ch == nil {
				return fail(http.StatusNotFound, "Channel not found")
			}
			return ok(ch.snapshot())
		case http.MethodDelete:
			return s.hangupReq(r, s.findChannel(id))
		}
		return notFound
	}
	op := segs[1]
	switch {
	case op == "variable" && m == http.MethodGet:
		return s.getVariable(r, s.findChannel(id))
	case op == "snoop" && m == http.MethodPost && len(segs) <= 3:
		snoopID := r.str("snoopId")
		if len(segs) == 3 {
			snoopID = segs[2]
		}
		return s.snoop(r, s.findChannel(id), snoopID)
	case op == "record" && m == http.MethodPost && len(segs) == 2:
		return s.record(r, "channel", id, func() *reply { return s.control(ch) })
	case len(segs) > 2 && op != "play":
		return notFound
	}
	// Everything else acts through the channel's Stasis control.
	if rp := s.control(ch); rp != nil {
		return *rp
	}
	switch {
	case op == "play" && m == http.MethodPost && len(segs) <= 3:
		pbID := r.str("playbackId")
		if len(segs) == 3 {
			pbID = segs[2]
		}
		if rp := s.stateValid(ch); rp != nil {
			return *rp
		}
		return s.play(r, "channel", id, pbID)
	case op == "dial" && m == http.MethodPost:
		return s.dialReq(r, ch)
	case op == "variable" && m == http.MethodPost:
		return s.setVariable(r, ch)
	case op == "continue" && m == http.MethodPost:
		if rp := s.stateValid(ch); rp != nil {
			return *rp
		}
		return s.continueReq(r, ch)
	case op == "move" && m == http.MethodPost:
		return s.move(r, ch)
	}
	// The rest change media state only; they need a channel past dialling.
	if rp := s.stateValid(ch); rp != nil {
		return *rp
	}
	switch {
	case op == "answer" && m == http.MethodPost:
		s.setState(ch, stateUp)
		return noContent()
	case op == "ring" && (m == http.MethodPost || m == http.MethodDelete),
		op == "progress" && m == http.MethodPost,
		op == "moh" && (m == http.MethodPost || m == http.MethodDelete),
		op == "silence" && (m == http.MethodPost || m == http.MethodDelete):
		return noContent()
	case op == "hold" && (m == http.MethodPost || m == http.MethodDelete):
		ch.held = m == http.MethodPost
		return noContent()
	case op == "mute" && (m == http.MethodPost || m == http.MethodDelete):
		switch r.str("direction") {
		case "", "both", "in", "out":
		default:
			return fail(http.StatusBadRequest, "Invalid direction specified")
		}
		ch.muted = m == http.MethodPost
		return noContent()
	case op == "dtmf" && m == http.MethodPost:
		if r.str("dtmf") == "" {
			return fail(http.StatusBadRequest, "DTMF is required")
		}
		for _, k := range []string{"before", "between", "duration", "after"} {
			if _, rp := r.num(k, 0); rp != nil {
				return *rp
			}
		}
		return noContent()
	}
	return notFound
}

// findChannel looks a channel up by ID or name, as ast_channel_get_by_name does.
func (s *Server) findChannel(idOrName string) *channel {
	if ch := s.channels[idOrName]; ch != nil {
		return ch
	}
	for _, id := range sortedKeys(s.channels) {
		if s.channels[id].name == idOrName {
			return s.channels[id]
		}
	}
	return nil
}

// control is find_control: 404 for no channel, 409 for one outside Stasis.
func (s *Server) control(ch *channel) *reply {
	if ch == nil {
		rp := fail(http.StatusNotFound, "Channel not found")
		return &rp
	}
	if ch.stasisApp == "" {
		rp := fail(http.StatusConflict, "Channel not in Stasis application")
		return &rp
	}
	return nil
}

// stateValid is channel_state_invalid: an outbound channel that is not
// answered yet cannot be answered, played to or continued (412).
func (s *Server) stateValid(ch *channel) *reply {
	if ch.state == stateDown || ch.state == stateRinging {
		rp := fail(http.StatusPreconditionFailed, "Channel in invalid state")
		return &rp
	}
	return nil
}

// splitEndpoint splits "Tech/resource".
func splitEndpoint(ep string) (tech, resource string, ok bool) {
	tech, resource, found := strings.Cut(ep, "/")
	return tech, resource, found && tech != "" && resource != ""
}

// splitArgs splits Stasis application arguments as Stasis() does.
func splitArgs(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// parseCallerID parses `"Name" <number>` or a bare number.
func parseCallerID(s string) (name, num string) {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "<"); i >= 0 && strings.HasSuffix(s, ">") {
		return strings.Trim(strings.TrimSpace(s[:i]), `"`), s[i+1 : len(s)-1]
	}
	return "", s
}

// checkIDs validates client-chosen channel IDs (length and uniqueness).
func (s *Server) checkIDs(ids ...string) *reply {
	for _, id := range ids {
		if len(id) > maxUniqueID {
			rp := fail(http.StatusBadRequest, "Uniqueid length exceeds maximum of %d", maxUniqueID)
			return &rp
		}
	}
	for _, id := range ids {
		if id != "" && s.channels[id] != nil {
			rp := fail(http.StatusConflict, "Channel with given unique ID already exists")
			return &rp
		}
	}
	return nil
}

// checkFormats validates a comma list of format names.
func checkFormats(formats string) *reply {
	if formats == "" {
		return nil
	}
	for _, f := range strings.Split(formats, ",") {
		if f = strings.TrimSpace(f); !knownFormats[f] {
			rp := fail(http.StatusBadRequest, "Provided format (%s) was not found", f)
			return &rp
		}
	}
	return nil
}

// newOutbound builds a channel to endpoint, applying variables and caller ID.
func (s *Server) newOutbound(id, endpoint, tech, resource, formats, callerID string, vars map[string]string) *channel {
	if id == "" {
		id = s.newChannelID()
	}
	format, _, _ := strings.Cut(formats, ",")
	if format == "" {
		format = "ulaw"
	}
	ch := &channel{
		id: id, name: s.channelName(tech, resource), state: stateDown, format: strings.TrimSpace(format),
		dp: dpStart(), vars: map[string]string{}, endpoint: endpoint,
	}
	if callerID != "" {
		ch.caller.Name, ch.caller.Number = parseCallerID(callerID)
		ch.connected = ch.caller
	}
	for k, v := range vars {
		s.writeVar(ch, k, v, false)
	}
	return ch
}

// dpStart is where a channel Asterisk made itself starts in the dialplan.
func dpStart() ari.DialplanCEP { return ari.DialplanCEP{Context: "default", Exten: "s", Priority: 1} }

// originate is POST /channels and POST /channels/{id}.
func (s *Server) originate(r *req, id string) reply {
	other := r.str("otherChannelId")
	if rp := s.checkIDs(id, other); rp != nil {
		return *rp
	}
	endpoint, originator, formats := r.str("endpoint"), r.str("originator"), r.str("formats")
	if endpoint == "" {
		return fail(http.StatusBadRequest, "Endpoint must be specified")
	}
	if originator != "" && formats != "" {
		return fail(http.StatusBadRequest, "Originator and formats can't both be specified")
	}
	tech, resource, okEP := splitEndpoint(endpoint)
	if !okEP {
		return fail(http.StatusBadRequest, "Invalid endpoint specified")
	}
	app, exten := r.str("app"), r.str("extension")
	if app == "" && exten == "" {
		return fail(http.StatusBadRequest, "Application or extension must be specified")
	}
	priority, rp := r.num("priority", 0)
	if rp != nil {
		return *rp
	}
	timeout, rp := r.num("timeout", 30)
	if rp != nil {
		return *rp
	}
	if originator != "" && s.findChannel(originator) == nil {
		return fail(http.StatusBadRequest, "Provided originator channel was not found")
	}
	if rp := checkFormats(formats); rp != nil {
		return *rp
	}
	ch := s.newOutbound(id, endpoint, tech, resource, formats, r.str("callerId"), r.vars)
	ch.orig = &origination{app: app, appArgs: r.str("appArgs"), context: r.str("context"), exten: exten, priority: int64(priority)}
	if app == "" {
		if ch.orig.context == "" {
			ch.orig.context = "default"
		}
		if ch.orig.priority <= 0 {
			ch.orig.priority = 1
		}
	}
	s.addChannel(ch)
	s.subscribe(app, ch)
	snap := ch.snapshot()
	if timeout == 0 {
		timeout = 30
	}
	// ari_originate_dial runs in its own thread: dial just after the reply.
	s.after(0, func() {
		if s.alive(ch) {
			s.startDial(ch, "", time.Duration(max(timeout, 0))*time.Second)
		}
	})
	return ok(snap)
}

// create is POST /channels/create: a channel in Stasis, not dialled.
func (s *Server) create(r *req) reply {
	endpoint, originator, formats, app := r.str("endpoint"), r.str("originator"), r.str("formats"), r.str("app")
	if originator != "" && formats != "" {
		return fail(http.StatusBadRequest, "Originator and formats can't both be specified")
	}
	if endpoint == "" {
		return fail(http.StatusBadRequest, "Endpoint must be specified")
	}
	if app == "" {
		return fail(http.StatusBadRequest, "Missing required parameter app")
	}
	tech, resource, okEP := splitEndpoint(endpoint)
	if !okEP {
		return fail(http.StatusBadRequest, "Invalid endpoint specified")
	}
	if rp := checkFormats(formats); rp != nil {
		return *rp
	}
	if rp := s.checkIDs(r.str("channelId"), r.str("otherChannelId")); rp != nil {
		return *rp
	}
	ch := s.newOutbound(r.str("channelId"), endpoint, tech, resource, formats, "", r.vars)
	ch.dialstring = resource
	s.addChannel(ch)
	s.subscribe(app, ch)
	if o := s.findChannel(originator); o != nil {
		s.subscribe(app, o)
	}
	snap := ch.snapshot()
	if !s.enterStasis(ch, app, splitArgs(r.str("appArgs"))) {
		// Stasis() fails for an app without a socket and the channel is hung up.
		s.hangup(ch, CauseNormalClearing, false)
	}
	return ok(snap)
}

// externalMedia is POST /channels/externalMedia (RTP/UDP and AudioSocket/TCP).
func (s *Server) externalMedia(r *req) reply {
	app, ext, format := r.str("app"), r.str("external_host"), r.str("format")
	encap, transport := strings.ToLower(r.str("encapsulation")), strings.ToLower(r.str("transport"))
	if encap == "" {
		encap = "rtp"
	}
	if transport == "" {
		transport = "udp"
	}
	if app == "" {
		return fail(http.StatusBadRequest, "app cannot be empty")
	}
	if transport == "websocket" {
		return fail(http.StatusNotImplemented, "aritest does not model the websocket transport")
	}
	if ext == "" {
		return fail(http.StatusBadRequest, "external_host cannot be empty")
	}
	if _, _, okHP := hostPort(ext); !okHP {
		return fail(http.StatusBadRequest, "external_host must be <host>:<port>")
	}
	if format == "" {
		return fail(http.StatusBadRequest, "format cannot be empty")
	}
	switch r.str("direction") {
	case "", "both", "in", "out":
	default:
		return fail(http.StatusBadRequest, "Invalid direction %q", r.str("direction"))
	}
	var tech, resource string
	switch {
	case encap == "rtp" && transport == "udp":
		tech, resource = "UnicastRTP", ext
	case encap == "audiosocket" && transport == "tcp":
		if r.str("data") == "" {
			return fail(http.StatusBadRequest, "data can not be empty")
		}
		tech, resource = "AudioSocket", ext+"/"+r.str("data")
	default:
		return fail(http.StatusNotImplemented, "The encapsulation and/or transport is not supported")
	}
	if rp := checkFormats(format); rp != nil {
		return *rp
	}
	if rp := s.checkIDs(r.str("channelId")); rp != nil {
		return *rp
	}
	ch := s.newOutbound(r.str("channelId"), tech+"/"+resource, tech, resource, format, "", r.vars)
	ch.externalHost = ext
	if tech == "UnicastRTP" {
		addr, port, err := s.bindMedia(ch)
		if err != nil {
			return fail(http.StatusInternalServerError, "Allocation failed: %v", err)
		}
		ch.channelvars = map[string]string{"UNICASTRTP_LOCAL_ADDRESS": addr, "UNICASTRTP_LOCAL_PORT": strconv.Itoa(port)}
		maps.Copy(ch.vars, ch.channelvars)
	}
	ch.orig = &origination{app: app, appArgs: r.str("data")}
	s.addChannel(ch)
	s.subscribe(app, ch)
	snap := ch.snapshot()
	// chan_rtp answers the moment it is dialled; then Stasis runs.
	s.startDial(ch, "", 0)
	s.answered(ch, "")
	return ok(snap)
}

// snoop is POST /channels/{id}/snoop[/{snoopId}].
func (s *Server) snoop(r *req, target *channel, snoopID string) reply {
	dirs := map[string]bool{"": true, "none": true, "both": true, "in": true, "out": true}
	spy, whisper, app := r.str("spy"), r.str("whisper"), r.str("app")
	if !dirs[spy] {
		return fail(http.StatusBadRequest, "Invalid direction specified for spy")
	}
	if !dirs[whisper] {
		return fail(http.StatusBadRequest, "Invalid direction specified for whisper")
	}
	if (spy == "" || spy == "none") && (whisper == "" || whisper == "none") {
		return fail(http.StatusBadRequest, "Direction must be specified for at least spy or whisper")
	}
	if app == "" {
		return fail(http.StatusBadRequest, "Application name is required")
	}
	if target == nil {
		return fail(http.StatusNotFound, "Provided channel was not found")
	}
	if rp := s.checkIDs(snoopID); rp != nil {
		return *rp
	}
	if snoopID == "" {
		snoopID = s.newChannelID()
	}
	s.seq++
	ch := &channel{id: snoopID, name: fmt.Sprintf("Snoop/%s-%08x", target.id, s.seq), state: stateUp,
		format: target.format, dp: dpStart(), snoopOf: target.id}
	s.addChannel(ch)
	snap := ch.snapshot()
	if !s.enterStasis(ch, app, splitArgs(r.str("appArgs"))) {
		s.hangup(ch, CauseNormalClearing, false)
	}
	return ok(snap)
}

// hangupReq is DELETE /channels/{id}.
func (s *Server) hangupReq(r *req, ch *channel) reply {
	if ch == nil {
		return fail(http.StatusNotFound, "Channel not found")
	}
	reason, code := r.str("reason"), r.str("reason_code")
	cause := CauseNormalClearing
	switch {
	case reason != "" && code != "":
		return fail(http.StatusBadRequest, "The reason and reason_code can't both be specified")
	case code != "":
		n, err := strconv.Atoi(code)
		if err != nil {
			return fail(http.StatusBadRequest, "Invalid reason for hangup reason code provided")
		}
		cause = n
	case reason != "":
		n, found := hangupReasons[reason]
		if !found {
			return fail(http.StatusBadRequest, "Invalid reason for hangup reason provided")
		}
		cause = n
	}
	s.hangup(ch, cause, true)
	return noContent()
}

// dialReq is POST /channels/{id}/dial.
func (s *Server) dialReq(r *req, ch *channel) reply {
	if ch.state != stateDown || ch.dialing {
		return fail(http.StatusConflict, "Channel is not in the 'Down' state")
	}
	if ch.dialstring == "" {
		return fail(http.StatusConflict, "Dialing a channel not created by ARI")
	}
	timeout, rp := r.num("timeout", 0)
	if rp != nil {
		return *rp
	}
	caller := ""
	if c := s.findChannel(r.str("caller")); c != nil {
		caller = c.id
	}
	s.startDial(ch, caller, time.Duration(max(timeout, 0))*time.Second)
	return noContent()
}

// continueReq is POST /channels/{id}/continue.
func (s *Server) continueReq(r *req, ch *channel) reply {
	ctx, exten := r.str("context"), r.str("extension")
	priority, rp := r.num("priority", 0)
	if rp != nil {
		return *rp
	}
	if label := r.str("label"); label != "" {
		n, err := strconv.Atoi(label)
		if err != nil {
			return fail(http.StatusNotFound, "Requested label can not be found")
		}
		if n == 0 {
			return fail(http.StatusBadRequest, "Requested priority is illegal")
		}
		priority = n
	}
	pri := int64(priority)
	if ctx == "" {
		ctx = ch.dp.Context
		if exten == "" {
			exten = ch.dp.Exten
		}
	} else if exten == "" {
		exten = "s"
	}
	if pri <= 0 {
		if r.str("context") == "" && r.str("extension") == "" {
			pri = ch.dp.Priority + 1
		} else {
			pri = 1
		}
	}
	s.leaveStasis(ch)
	s.gotoDialplan(ch, ctx, exten, pri)
	return noContent()
}

// move is POST /channels/{id}/move: leave one Stasis app for another.
func (s *Server) move(r *req, ch *channel) reply {
	app := r.str("app")
	if app == "" {
		return fail(http.StatusBadRequest, "Missing required parameter app")
	}
	s.leaveStasis(ch)
	if !s.enterStasis(ch, app, splitArgs(r.str("appArgs"))) {
		s.hangup(ch, CauseNormalClearing, false)
	}
	return noContent()
}

// getVariable is GET /channels/{id}/variable.
func (s *Server) getVariable(r *req, ch *channel) reply {
	name := r.str("variable")
	if name == "" {
		return fail(http.StatusBadRequest, "Variable name is required")
	}
	if ch == nil {
		return fail(http.StatusNotFound, "Provided channel was not found")
	}
	if strings.HasSuffix(name, ")") {
		v, found := s.readFunction(ch, name)
		if !found {
			return fail(http.StatusInternalServerError, "Unable to read provided function")
		}
		return ok(map[string]string{"value": v})
	}
	v, found := ch.vars[name]
	if !found {
		return fail(http.StatusNotFound, "Provided variable was not found")
	}
	return ok(map[string]string{"value": v})
}

// readFunction evaluates the dialplan functions call control reads; a test
// can seed any other function's value as a variable of that exact name.
func (s *Server) readFunction(ch *channel, name string) (string, bool) {
	if v, found := ch.vars[name]; found {
		return v, true
	}
	switch strings.ToUpper(name) {
	case "CHANNEL(AUDIONATIVEFORMAT)":
		return ch.format, true
	case "CHANNEL(NAME)":
		return ch.name, true
	case "CHANNEL(STATE)":
		return ch.state, true
	case "CALLERID(NUM)":
		return ch.caller.Number, true
	case "CALLERID(NAME)":
		return ch.caller.Name, true
	case "CALLERID(ALL)":
		if ch.caller.Name == "" {
			return ch.caller.Number, true
		}
		return fmt.Sprintf("%q <%s>", ch.caller.Name, ch.caller.Number), true
	case "CONNECTEDLINE(NUM)":
		return ch.connected.Number, true
	case "CONNECTEDLINE(NAME)":
		return ch.connected.Name, true
	}
	return "", false
}

// setVariable is POST /channels/{id}/variable.
func (s *Server) setVariable(r *req, ch *channel) reply {
	name := r.str("variable")
	if name == "" {
		return fail(http.StatusBadRequest, "Variable name is required")
	}
	s.writeVar(ch, name, r.str("value"), true)
	return noContent()
}

// writeVar sets a variable or writes a function. Plain variables announce
// themselves with ChannelVarset, as pbx_builtin_setvar_helper does.
func (s *Server) writeVar(ch *channel, name, value string, announce bool) {
	switch strings.ToUpper(name) {
	case "CALLERID(NUM)":
		ch.caller.Number = value
	case "CALLERID(NAME)":
		ch.caller.Name = value
	case "CALLERID(ALL)":
		ch.caller.Name, ch.caller.Number = parseCallerID(value)
	case "CONNECTEDLINE(NUM)":
		ch.connected.Number = value
	case "CONNECTEDLINE(NAME)":
		ch.connected.Name = value
	}
	ch.vars[name] = value
	if announce && !strings.HasSuffix(name, ")") {
		s.chanEvent("ChannelVarset", ch, event{"variable": name, "value": value})
	}
}

// play is POST .../play for a channel or bridge (the caller checked the target).
func (s *Server) play(r *req, kind, target, id string) reply {
	media := r.list("media")
	if len(media) == 0 {
		return fail(http.StatusBadRequest, "Missing required parameter media")
	}
	for _, k := range []string{"skipms", "offsetms"} {
		n, rp := r.num(k, 0)
		if rp != nil {
			return *rp
		}
		if n < 0 {
			return fail(http.StatusBadRequest, "%s cannot be negative", k)
		}
	}
	if id == "" {
		id = newUUID()
	}
	if s.playbacks[id] != nil {
		return fail(http.StatusConflict, "Playback with ID %s already exists", id)
	}
	lang := r.str("lang")
	if lang == "" {
		lang = "en"
	}
	p := &playback{target: target}
	p.ID, p.MediaURI, p.TargetURI, p.Language, p.State = id, media[0], kind+":"+target, lang, "queued"
	if len(media) > 1 {
		p.NextMediaURI = media[1]
	}
	s.playbacks[id] = p
	reply := created("/playbacks/"+id, p.Playback)
	s.after(0, func() {
		if s.playbacks[id] != p {
			return
		}
		p.State = "playing"
		ev := s.newEvent("PlaybackStarted")
		ev["playback"] = p.Playback
		s.publish(ev, []*channel{s.channels[target]}, []*bridge{s.bridges[target]})
		s.after(s.playDur, func() { s.finishPlayback(p) })
	})
	return reply
}

// record is POST .../record for a channel or bridge; find checks the target.
func (s *Server) record(r *req, kind, target string, find func() *reply) reply {
	maxDur, rp := r.num("maxDurationSeconds", 0)
	if rp != nil {
		return *rp
	}
	maxSil, rp := r.num("maxSilenceSeconds", 0)
	if rp != nil {
		return *rp
	}
	if maxDur < 0 {
		return fail(http.StatusBadRequest, "max_duration_seconds cannot be negative")
	}
	if maxSil < 0 {
		return fail(http.StatusBadRequest, "max_silence_seconds cannot be negative")
	}
	if rp := find(); rp != nil {
		return *rp
	}
	name, format, ifExists := r.str("name"), r.str("format"), r.str("ifExists")
	switch r.str("terminateOn") {
	case "", "none", "any", "*", "#":
	default:
		return fail(http.StatusBadRequest, "terminateOn invalid")
	}
	switch ifExists {
	case "", "fail", "overwrite", "append":
	default:
		return fail(http.StatusBadRequest, "ifExists invalid")
	}
	if name == "" || strings.Contains(name, "..") {
		return fail(http.StatusBadRequest, "Recording name invalid")
	}
	if !recordingFormats[format] {
		return fail(http.StatusUnprocessableEntity, "specified format is unknown on this system")
	}
	_, isStored := s.stored[name]
	if s.recordings[name] != nil || (isStored && (ifExists == "" || ifExists == "fail")) {
		return fail(http.StatusConflict, "Recording '%s' already exists and can not be overwritten", name)
	}
	rec := &recording{target: target}
	rec.Name, rec.Format, rec.TargetURI, rec.State = name, format, kind+":"+target, "queued"
	s.recordings[name] = rec
	reply := created("/recordings/live/"+url.PathEscape(name), rec.LiveRecording)
	s.after(0, func() {
		if s.recordings[name] != rec {
			return
		}
		rec.State = "recording"
		ev := s.newEvent("RecordingStarted")
		ev["recording"] = rec.LiveRecording
		s.publish(ev, []*channel{s.channels[target]}, []*bridge{s.bridges[target]})
		if maxDur > 0 {
			s.after(time.Duration(maxDur)*time.Second, func() { s.finishRecording(rec, "done", true) })
		}
	})
	return reply
}
