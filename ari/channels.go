package ari

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ChannelsAPI is the /channels area. Get it with Client.Channels.
type ChannelsAPI struct{ c *Client }

// Channels returns the /channels accessor.
func (c *Client) Channels() *ChannelsAPI { return &ChannelsAPI{c} }

// Channel returns a handle for the channel with this ID (no I/O).
func (c *Client) Channel(id string) *ChannelHandle { return &ChannelHandle{c: c, id: id} }

// ChannelHandle is a channel ID bound to a client; its methods act on that channel.
type ChannelHandle struct {
	c  *Client
	id string
}

// ID returns the channel ID.
func (h *ChannelHandle) ID() string { return h.id }

// List returns all channels Asterisk knows (not only ours).
func (a *ChannelsAPI) List(ctx context.Context) ([]Channel, error) {
	var out []Channel
	if err := a.c.do(ctx, "GET", "/channels", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("list channels: %w", err)
	}
	return out, nil
}

// Get returns a channel snapshot.
func (a *ChannelsAPI) Get(ctx context.Context, id string) (*Channel, error) {
	return a.c.Channel(id).Get(ctx)
}

// OriginateRequest describes POST /channels. Set either Extension/Context/Priority
// (dialplan) or App/AppArgs (Stasis); App defaults to nothing, so set it to
// Client.Application() to receive the channel's StasisStart.
type OriginateRequest struct {
	Endpoint  string // required, e.g. "PJSIP/alice" or "Local/600@internal"
	Extension string
	Context   string
	Priority  int64
	Label     string
	App       string
	AppArgs   string
	CallerID  string
	// Timeout before giving up on an unanswered call; rounded up to whole seconds; 0 = Asterisk's 30 s.
	Timeout        time.Duration
	Variables      map[string]string
	ChannelID      string // client-side ID (see NewID); empty lets Asterisk choose
	OtherChannelID string // ID of the second half of a Local channel
	Originator     string // channel ID that causes this originate (for linkedid)
	Formats        string // e.g. "ulaw": keeps G.711 end to end (no slin transcoding)
}

func (r *OriginateRequest) query() (url.Values, error) {
	if r.Endpoint == "" {
		return nil, errors.New("originate: Endpoint is required")
	}
	if r.App == "" && r.Extension == "" {
		return nil, errors.New("originate: set App (Stasis) or Extension (dialplan)")
	}
	q := url.Values{}
	q.Set("endpoint", r.Endpoint)
	setIf(q, "extension", r.Extension)
	setIf(q, "context", r.Context)
	if r.Priority != 0 {
		q.Set("priority", strconv.FormatInt(r.Priority, 10))
	}
	setIf(q, "label", r.Label)
	setIf(q, "app", r.App)
	setIf(q, "appArgs", r.AppArgs)
	setIf(q, "callerId", r.CallerID)
	if r.Timeout > 0 {
		q.Set("timeout", strconv.Itoa(ceilSeconds(r.Timeout)))
	}
	setIf(q, "channelId", r.ChannelID)
	setIf(q, "otherChannelId", r.OtherChannelID)
	setIf(q, "originator", r.Originator)
	setIf(q, "formats", r.Formats)
	return q, nil
}

func ceilSeconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}

// variablesBody is the JSON body ARI expects for channel variables.
func variablesBody(v map[string]string) any {
	if len(v) == 0 {
		return nil
	}
	return map[string]any{"variables": v}
}

// Originate creates an outgoing channel.
func (a *ChannelsAPI) Originate(ctx context.Context, r OriginateRequest) (*Channel, error) {
	q, err := r.query()
	if err != nil {
		return nil, fmt.Errorf("ari: %w", err)
	}
	var out Channel
	if err := a.c.doCreate(ctx, "POST", "/channels", q, variablesBody(r.Variables), &out, a.c.undoChannel(&out)); err != nil {
		return nil, fmt.Errorf("originate %s: %w", r.Endpoint, err)
	}
	if r.App == a.c.cfg.Application {
		a.c.track.addChannel(out.ID)
	}
	return &out, nil
}

// CreateRequest describes POST /channels/create: a channel that is not dialled
// until Dial is called on it.
type CreateRequest struct {
	Endpoint       string // required
	App            string // required
	AppArgs        string
	ChannelID      string
	OtherChannelID string
	Originator     string
	Formats        string
	Variables      map[string]string
}

// Create creates a channel in Stasis without dialling it.
func (a *ChannelsAPI) Create(ctx context.Context, r CreateRequest) (*Channel, error) {
	if r.Endpoint == "" || r.App == "" {
		return nil, errors.New("ari: create channel: Endpoint and App are required")
	}
	q := url.Values{}
	q.Set("endpoint", r.Endpoint)
	q.Set("app", r.App)
	setIf(q, "appArgs", r.AppArgs)
	setIf(q, "channelId", r.ChannelID)
	setIf(q, "otherChannelId", r.OtherChannelID)
	setIf(q, "originator", r.Originator)
	setIf(q, "formats", r.Formats)
	var out Channel
	if err := a.c.doCreate(ctx, "POST", "/channels/create", q, variablesBody(r.Variables), &out, a.c.undoChannel(&out)); err != nil {
		return nil, fmt.Errorf("create channel %s: %w", r.Endpoint, err)
	}
	if r.App == a.c.cfg.Application {
		a.c.track.addChannel(out.ID)
	}
	return &out, nil
}

// ExternalMediaRequest describes POST /channels/externalMedia.
type ExternalMediaRequest struct {
	App          string // required; use Client.Application()
	ExternalHost string // "127.0.0.1:40000" for RTP; required unless ConnectionType is "server"
	Format       string // required, e.g. "ulaw"
	// Encapsulation "rtp" (default), "audiosocket" or "none"; Transport "udp" (default), "tcp" or "websocket".
	Encapsulation string
	Transport     string
	// ConnectionType "client" (default) or "server" (websocket: Asterisk waits for us to connect).
	ConnectionType string
	Direction      string // "both" (default), "in" or "out"
	Data           string // transport-specific data (e.g. AudioSocket UUID)
	TransportData  string // extra transport parameters (websocket), if any
	ChannelID      string
	Variables      map[string]string
}

// ExternalMedia is the reply of an externalMedia request with its channel
// variables parsed.
type ExternalMedia struct {
	Channel Channel
	// LocalAddress/LocalPort: where Asterisk sends RTP from (UNICASTRTP_LOCAL_*);
	// send back to this address from the socket named in ExternalHost.
	LocalAddress string
	LocalPort    int
	// ConnectionID for websocket transport (MEDIA_WEBSOCKET_CONNECTION_ID):
	// connect to /media/<ConnectionID>.
	ConnectionID string
}

// LocalAddrPort returns "LocalAddress:LocalPort", or "" when there is none.
func (m *ExternalMedia) LocalAddrPort() string {
	if m.LocalAddress == "" || m.LocalPort == 0 {
		return ""
	}
	return m.LocalAddress + ":" + strconv.Itoa(m.LocalPort)
}

func (r *ExternalMediaRequest) query() (url.Values, error) {
	if r.App == "" || r.Format == "" {
		return nil, errors.New("externalMedia: App and Format are required")
	}
	if r.ExternalHost == "" && r.ConnectionType != "server" {
		return nil, errors.New("externalMedia: ExternalHost is required unless ConnectionType is server")
	}
	q := url.Values{}
	q.Set("app", r.App)
	setIf(q, "external_host", r.ExternalHost)
	q.Set("format", r.Format)
	setIf(q, "encapsulation", r.Encapsulation)
	setIf(q, "transport", r.Transport)
	setIf(q, "connection_type", r.ConnectionType)
	setIf(q, "direction", r.Direction)
	setIf(q, "data", r.Data)
	setIf(q, "transport_data", r.TransportData)
	setIf(q, "channelId", r.ChannelID)
	return q, nil
}

// stasisWait bounds how long ExternalMedia waits for the channel's StasisStart.
const stasisWait = 10 * time.Second

// ExternalMedia creates an externalMedia channel (chan_rtp / chan_websocket).
// Asterisk answers before the channel has entered Stasis, and addChannel on it
// fails with 422 until it has; so when App is ours and the events socket is
// up, ExternalMedia returns only after the channel's StasisStart, and the
// channel can be bridged at once (except with ConnectionType "server", where
// StasisStart follows the media WebSocket's connection). An empty ChannelID
// is filled with NewID.
func (a *ChannelsAPI) ExternalMedia(ctx context.Context, r ExternalMediaRequest) (*ExternalMedia, error) {
	if r.ChannelID == "" {
		r.ChannelID = NewID()
	}
	q, err := r.query()
	if err != nil {
		return nil, fmt.Errorf("ari: %w", err)
	}
	var sub *Subscription
	// In websocket server mode the channel enters Stasis only once the media
	// WebSocket connects, so there is nothing to wait for here.
	if r.App == a.c.cfg.Application && r.ConnectionType != "server" && a.c.Connected() {
		// Subscribe before creating, so the StasisStart cannot slip past.
		sub = a.c.Subscribe(Filter{
			Name:      "externalMedia " + r.ChannelID,
			IDs:       []string{r.ChannelID},
			Types:     []string{TypeStasisStart, TypeChannelDestroyed, TypeDisconnected},
			QueueSize: 8,
		})
		defer sub.Close()
	}
	var ch Channel
	if err := a.c.doCreate(ctx, "POST", "/channels/externalMedia", q, variablesBody(r.Variables), &ch, a.c.undoChannel(&ch)); err != nil {
		return nil, fmt.Errorf("create externalMedia channel to %s: %w", r.ExternalHost, err)
	}
	if r.App == a.c.cfg.Application {
		a.c.track.addChannel(ch.ID)
	}
	m, err := parseExternalMedia(ch)
	if err != nil || sub == nil {
		return m, err
	}
	if err := WaitStasisStart(ctx, sub, ch.ID); err != nil {
		return m, fmt.Errorf("externalMedia: %w", err)
	}
	return m, nil
}

// WaitStasisStart waits on sub (which must include channel id) until channel id enters the Stasis application.
// It is the one way to wait for that: a channel created with CreateRequest or ExternalMedia may reach the app
// after the REST reply, and bridging it earlier fails with 422. Other events on sub are consumed and let go, so
// subscribe to the channel alone or only wait before anything else can happen to it. The wait ends with an
// error when the channel is destroyed first, the events socket drops (the StasisStart may be lost for good), the
// subscription closes, ctx ends, or no StasisStart arrives within 10 s (is the app's events socket open?).
func WaitStasisStart(ctx context.Context, sub *Subscription, id string) error {
	t := time.NewTimer(stasisWait)
	defer t.Stop()
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				return fmt.Errorf("channel %s: subscription closed while waiting for StasisStart", id)
			}
			switch e := ev.(type) {
			case *StasisStart:
				if e.Channel.ID == id {
					return nil
				}
			case *ChannelDestroyed:
				if e.Channel.ID == id {
					return fmt.Errorf("channel %s was destroyed before entering Stasis (cause %d %s)", id, e.Cause, e.CauseTxt)
				}
			case *Disconnected:
				return fmt.Errorf("channel %s: events socket lost before StasisStart; check the channel after reconnect", id)
			}
		case <-t.C:
			return fmt.Errorf("channel %s: no StasisStart within %v: is the Stasis app registered (events socket open)?", id, stasisWait)
		case <-ctx.Done():
			return fmt.Errorf("channel %s: wait for StasisStart: %w", id, context.Cause(ctx))
		}
	}
}

func parseExternalMedia(ch Channel) (*ExternalMedia, error) {
	m := &ExternalMedia{
		Channel:      ch,
		LocalAddress: ch.ChannelVars["UNICASTRTP_LOCAL_ADDRESS"],
		ConnectionID: ch.ChannelVars["MEDIA_WEBSOCKET_CONNECTION_ID"],
	}
	if p := ch.ChannelVars["UNICASTRTP_LOCAL_PORT"]; p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return m, fmt.Errorf("ari: externalMedia channel %s: bad UNICASTRTP_LOCAL_PORT %q", ch.ID, p)
		}
		m.LocalPort = n
	}
	return m, nil
}

// Get returns the channel's snapshot.
func (h *ChannelHandle) Get(ctx context.Context) (*Channel, error) {
	var out Channel
	if err := h.c.do(ctx, "GET", "/channels/"+pathEscape(h.id), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get channel %s: %w", h.id, err)
	}
	return &out, nil
}

func (h *ChannelHandle) simple(ctx context.Context, method, verb, sub string, q url.Values) error {
	if err := h.c.do(ctx, method, "/channels/"+pathEscape(h.id)+sub, q, nil, nil); err != nil {
		return fmt.Errorf("%s channel %s: %w", verb, h.id, err)
	}
	return nil
}

// Answer answers the channel.
func (h *ChannelHandle) Answer(ctx context.Context) error {
	return h.simple(ctx, "POST", "answer", "/answer", nil)
}

// Ring indicates ringing to the channel.
func (h *ChannelHandle) Ring(ctx context.Context) error {
	return h.simple(ctx, "POST", "ring", "/ring", nil)
}

// RingStop stops ringing indication.
func (h *ChannelHandle) RingStop(ctx context.Context) error {
	return h.simple(ctx, "DELETE", "stop ringing", "/ring", nil)
}

// Hangup hangs the channel up. reason is one of Asterisk's reasons ("normal",
// "busy", "congestion", "no_answer", ...) or empty for normal.
func (h *ChannelHandle) Hangup(ctx context.Context, reason string) error {
	q := url.Values{}
	setIf(q, "reason", reason)
	err := h.simple(ctx, "DELETE", "hang up", "", q)
	if err == nil || IsNotFound(err) {
		h.c.track.removeChannel(h.id)
	}
	return err
}

// DTMFOptions for SendDTMF. Zero durations use Asterisk's defaults.
type DTMFOptions struct {
	Before, Between, Duration, After time.Duration
}

// SendDTMF sends digits (0-9 * # A-D, ',' for a pause).
func (h *ChannelHandle) SendDTMF(ctx context.Context, digits string, o DTMFOptions) error {
	q := url.Values{}
	q.Set("dtmf", digits)
	for k, d := range map[string]time.Duration{"before": o.Before, "between": o.Between, "duration": o.Duration, "after": o.After} {
		if d > 0 {
			q.Set(k, strconv.FormatInt(d.Milliseconds(), 10))
		}
	}
	return h.simple(ctx, "POST", "send DTMF to", "/dtmf", q)
}

// ContinueOptions says where Continue sends the channel; empty fields continue
// after the Stasis() call that brought it in.
type ContinueOptions struct {
	Context   string
	Extension string
	Priority  int64
	Label     string
}

// Continue returns the channel to the dialplan.
func (h *ChannelHandle) Continue(ctx context.Context, o ContinueOptions) error {
	q := url.Values{}
	setIf(q, "context", o.Context)
	setIf(q, "extension", o.Extension)
	if o.Priority != 0 {
		q.Set("priority", strconv.FormatInt(o.Priority, 10))
	}
	setIf(q, "label", o.Label)
	err := h.simple(ctx, "POST", "continue", "/continue", q)
	if err == nil {
		h.c.track.removeChannel(h.id)
	}
	return err
}

// Variable reads a channel variable or function, e.g. "CHANNEL(rtp,dest)".
func (h *ChannelHandle) Variable(ctx context.Context, name string) (string, error) {
	q := url.Values{}
	q.Set("variable", name)
	var out struct {
		Value string `json:"value"`
	}
	if err := h.c.do(ctx, "GET", "/channels/"+pathEscape(h.id)+"/variable", q, nil, &out); err != nil {
		return "", fmt.Errorf("get variable %s of channel %s: %w", name, h.id, err)
	}
	return out.Value, nil
}

// SetVariable sets a channel variable.
func (h *ChannelHandle) SetVariable(ctx context.Context, name, value string) error {
	q := url.Values{}
	q.Set("variable", name)
	q.Set("value", value)
	return h.simple(ctx, "POST", "set variable "+name+" on", "/variable", q)
}

// PlayOptions for Play on a channel or bridge.
type PlayOptions struct {
	Media      []string // required, e.g. "sound:hello-world", "tone:440"
	Lang       string
	OffsetMs   int
	SkipMs     int
	PlaybackID string // client-side ID; subscribe to its events first
}

func (o *PlayOptions) query() (url.Values, error) {
	if len(o.Media) == 0 {
		return nil, errors.New("play: Media is required")
	}
	q := url.Values{}
	q.Set("media", strings.Join(o.Media, ","))
	setIf(q, "lang", o.Lang)
	if o.OffsetMs > 0 {
		q.Set("offsetms", strconv.Itoa(o.OffsetMs))
	}
	if o.SkipMs > 0 {
		q.Set("skipms", strconv.Itoa(o.SkipMs))
	}
	setIf(q, "playbackId", o.PlaybackID)
	return q, nil
}

// Play starts media on the channel.
func (h *ChannelHandle) Play(ctx context.Context, o PlayOptions) (*Playback, error) {
	return h.c.play(ctx, "/channels/"+pathEscape(h.id), "channel "+h.id, o)
}

func (c *Client) play(ctx context.Context, base, what string, o PlayOptions) (*Playback, error) {
	q, err := o.query()
	if err != nil {
		return nil, fmt.Errorf("ari: %w", err)
	}
	var out Playback
	if err := c.do(ctx, "POST", base+"/play", q, nil, &out); err != nil {
		return nil, fmt.Errorf("play %s on %s: %w", strings.Join(o.Media, ","), what, err)
	}
	return &out, nil
}

// RecordOptions for Record on a channel or bridge.
type RecordOptions struct {
	Name        string // required, recording name (file name without extension)
	Format      string // required, e.g. "wav"
	MaxDuration time.Duration
	MaxSilence  time.Duration
	IfExists    string // "fail" (default), "overwrite", "append"
	Beep        bool
	TerminateOn string // "none" (default), "any", "*", "#"
}

func (o *RecordOptions) query() (url.Values, error) {
	if o.Name == "" || o.Format == "" {
		return nil, errors.New("record: Name and Format are required")
	}
	q := url.Values{}
	q.Set("name", o.Name)
	q.Set("format", o.Format)
	if o.MaxDuration > 0 {
		q.Set("maxDurationSeconds", strconv.Itoa(ceilSeconds(o.MaxDuration)))
	}
	if o.MaxSilence > 0 {
		q.Set("maxSilenceSeconds", strconv.Itoa(ceilSeconds(o.MaxSilence)))
	}
	setIf(q, "ifExists", o.IfExists)
	if o.Beep {
		q.Set("beep", "true")
	}
	setIf(q, "terminateOn", o.TerminateOn)
	return q, nil
}

// Record starts recording the channel.
func (h *ChannelHandle) Record(ctx context.Context, o RecordOptions) (*LiveRecording, error) {
	return h.c.record(ctx, "/channels/"+pathEscape(h.id), "channel "+h.id, o)
}

func (c *Client) record(ctx context.Context, base, what string, o RecordOptions) (*LiveRecording, error) {
	q, err := o.query()
	if err != nil {
		return nil, fmt.Errorf("ari: %w", err)
	}
	var out LiveRecording
	if err := c.do(ctx, "POST", base+"/record", q, nil, &out); err != nil {
		return nil, fmt.Errorf("record %s as %s: %w", what, o.Name, err)
	}
	return &out, nil
}

// Dial dials a channel made with Create. caller is the optional channel ID of
// the caller; timeout 0 means no timeout.
func (h *ChannelHandle) Dial(ctx context.Context, caller string, timeout time.Duration) error {
	q := url.Values{}
	setIf(q, "caller", caller)
	if timeout > 0 {
		q.Set("timeout", strconv.Itoa(ceilSeconds(timeout)))
	}
	return h.simple(ctx, "POST", "dial", "/dial", q)
}

// Hold puts the channel on hold.
func (h *ChannelHandle) Hold(ctx context.Context) error {
	return h.simple(ctx, "POST", "hold", "/hold", nil)
}

// Unhold takes the channel off hold.
func (h *ChannelHandle) Unhold(ctx context.Context) error {
	return h.simple(ctx, "DELETE", "unhold", "/hold", nil)
}

// Mute mutes the channel; direction is "both" (default when empty), "in" or "out".
func (h *ChannelHandle) Mute(ctx context.Context, direction string) error {
	q := url.Values{}
	setIf(q, "direction", direction)
	return h.simple(ctx, "POST", "mute", "/mute", q)
}

// Unmute unmutes the channel; direction as for Mute.
func (h *ChannelHandle) Unmute(ctx context.Context, direction string) error {
	q := url.Values{}
	setIf(q, "direction", direction)
	return h.simple(ctx, "DELETE", "unmute", "/mute", q)
}

// MediaURL is where to open the media WebSocket of an externalMedia channel made with transport websocket and
// connection type server: ws://HOST:PORT/media/<MEDIA_WEBSOCKET_CONNECTION_ID> (wss:// when ARI is https), on
// Asterisk's HTTP server like ARI itself. Open it with the subprotocol "media".
func (c *Client) MediaURL(connectionID string) string {
	base := c.baseURL
	switch {
	case strings.HasPrefix(base, "https://"):
		base = "wss://" + strings.TrimPrefix(base, "https://")
	case strings.HasPrefix(base, "http://"):
		base = "ws://" + strings.TrimPrefix(base, "http://")
	}
	return base + "/media/" + url.PathEscape(connectionID)
}
