package ari

import (
	"encoding/json"
	"fmt"
)

// Event type names as Asterisk sends them, plus the client's synthetic ones.
const (
	TypeStasisStart            = "StasisStart"
	TypeStasisEnd              = "StasisEnd"
	TypeChannelCreated         = "ChannelCreated"
	TypeChannelDestroyed       = "ChannelDestroyed"
	TypeChannelStateChange     = "ChannelStateChange"
	TypeChannelHangupRequest   = "ChannelHangupRequest"
	TypeChannelDtmfReceived    = "ChannelDtmfReceived"
	TypeChannelEnteredBridge   = "ChannelEnteredBridge"
	TypeChannelLeftBridge      = "ChannelLeftBridge"
	TypeChannelVarset          = "ChannelVarset"
	TypeChannelDialplan        = "ChannelDialplan"
	TypeChannelHold            = "ChannelHold"
	TypeChannelUnhold          = "ChannelUnhold"
	TypeChannelUserevent       = "ChannelUserevent"
	TypeChannelTalkingStarted  = "ChannelTalkingStarted"
	TypeChannelTalkingFinished = "ChannelTalkingFinished"
	TypeDial                   = "Dial"
	TypeBridgeCreated          = "BridgeCreated"
	TypeBridgeDestroyed        = "BridgeDestroyed"
	TypePlaybackStarted        = "PlaybackStarted"
	TypePlaybackFinished       = "PlaybackFinished"
	TypeRecordingStarted       = "RecordingStarted"
	TypeRecordingFinished      = "RecordingFinished"
	TypeRecordingFailed        = "RecordingFailed"
	TypeBridgeBlindTransfer    = "BridgeBlindTransfer"
	TypeBridgeAttendedTransfer = "BridgeAttendedTransfer"

	// Synthetic events published by the client itself.
	TypeConnected    = "Connected"
	TypeDisconnected = "Disconnected"
	TypeReconciled   = "Reconciled"
	TypeSwept        = "Swept"
)

// Event is one event on the bus: decoded from Asterisk or synthetic.
type Event interface {
	// EventType is the "type" field (or a synthetic Type* constant).
	EventType() string
	// Common returns the fields every Asterisk event carries.
	Common() EventBase
	// ChannelIDs and BridgeIDs name the resources the event concerns.
	ChannelIDs() []string
	BridgeIDs() []string
}

// EventBase holds the fields common to all ARI events.
type EventBase struct {
	Type        string `json:"type"`
	Application string `json:"application"`
	Timestamp   Time   `json:"timestamp"`
	AsteriskID  string `json:"asterisk_id,omitempty"`
}

// EventType implements Event.
func (b EventBase) EventType() string { return b.Type }

// Common implements Event.
func (b EventBase) Common() EventBase { return b }

// ChannelIDs is nil unless the concrete event overrides it.
func (b EventBase) ChannelIDs() []string { return nil }

// BridgeIDs is nil unless the concrete event overrides it.
func (b EventBase) BridgeIDs() []string { return nil }

func ids(s ...string) []string {
	out := s[:0:0]
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func chID(c *Channel) string {
	if c == nil {
		return ""
	}
	return c.ID
}

func brID(b *Bridge) string {
	if b == nil {
		return ""
	}
	return b.ID
}

// channelEvent is embedded by events about exactly one channel.
type channelEvent struct {
	EventBase
	Channel Channel `json:"channel"`
}

func (e channelEvent) ChannelIDs() []string { return ids(e.Channel.ID) }

// StasisStart: a channel entered our application.
type StasisStart struct {
	EventBase
	Args           []string `json:"args"`
	Channel        Channel  `json:"channel"`
	ReplaceChannel *Channel `json:"replace_channel,omitempty"`
}

// ChannelIDs implements Event.
func (e *StasisStart) ChannelIDs() []string { return ids(e.Channel.ID, chID(e.ReplaceChannel)) }

// StasisEnd: a channel left our application.
type StasisEnd struct{ channelEvent }

// ChannelCreated: a channel was created.
type ChannelCreated struct{ channelEvent }

// ChannelDestroyed: a channel was hung up and destroyed.
type ChannelDestroyed struct {
	channelEvent
	Cause    int    `json:"cause"`
	CauseTxt string `json:"cause_txt"`
	// TechCause is the channel driver's own cause: for PJSIP, the SIP final response (503); 0 if none.
	TechCause int `json:"tech_cause"`
}

// ChannelStateChange: a channel's state changed (e.g. Ring → Up).
type ChannelStateChange struct{ channelEvent }

// ChannelHangupRequest: hangup was requested on a channel.
type ChannelHangupRequest struct {
	channelEvent
	Cause int  `json:"cause"`
	Soft  bool `json:"soft"`
}

// ChannelDtmfReceived: a DTMF digit ended on a channel.
type ChannelDtmfReceived struct {
	channelEvent
	Digit      string `json:"digit"`
	DurationMs int    `json:"duration_ms"`
}

// ChannelTalkingStarted: talk detection (TALK_DETECT) saw speech start.
type ChannelTalkingStarted struct{ channelEvent }

// ChannelTalkingFinished: speech stopped; Duration in ms.
type ChannelTalkingFinished struct {
	channelEvent
	Duration int `json:"duration"`
}

// bridgeChannelEvent is embedded by events about a channel in a bridge.
type bridgeChannelEvent struct {
	EventBase
	Bridge  Bridge   `json:"bridge"`
	Channel *Channel `json:"channel,omitempty"`
}

func (e bridgeChannelEvent) ChannelIDs() []string { return ids(chID(e.Channel)) }
func (e bridgeChannelEvent) BridgeIDs() []string  { return ids(e.Bridge.ID) }

// ChannelEnteredBridge: a channel joined a bridge.
type ChannelEnteredBridge struct{ bridgeChannelEvent }

// ChannelLeftBridge: a channel left a bridge.
type ChannelLeftBridge struct{ bridgeChannelEvent }

// ChannelDialplan: a channel moved in the dialplan (after continue): the application it now runs.
type ChannelDialplan struct {
	channelEvent
	DialplanApp     string `json:"dialplan_app"`
	DialplanAppData string `json:"dialplan_app_data"`
}

// ChannelHold: the channel's far end put it on hold (a phone's re-INVITE with sendonly/inactive).
type ChannelHold struct {
	channelEvent
	MusicClass string `json:"musicclass,omitempty"`
}

// ChannelUnhold: the channel was taken off hold.
type ChannelUnhold struct{ channelEvent }

// ChannelVarset: a variable changed; Channel is nil for global variables.
type ChannelVarset struct {
	EventBase
	Variable string   `json:"variable"`
	Value    string   `json:"value"`
	Channel  *Channel `json:"channel,omitempty"`
}

// ChannelIDs implements Event.
func (e *ChannelVarset) ChannelIDs() []string { return ids(chID(e.Channel)) }

// ChannelUserevent: UserEvent() from the dialplan or ARI.
type ChannelUserevent struct {
	EventBase
	EventName string          `json:"eventname"`
	Channel   *Channel        `json:"channel,omitempty"`
	Bridge    *Bridge         `json:"bridge,omitempty"`
	Endpoint  json.RawMessage `json:"endpoint,omitempty"`
	Userevent json.RawMessage `json:"userevent,omitempty"`
}

// ChannelIDs implements Event.
func (e *ChannelUserevent) ChannelIDs() []string { return ids(chID(e.Channel)) }

// BridgeIDs implements Event.
func (e *ChannelUserevent) BridgeIDs() []string { return ids(brID(e.Bridge)) }

// Dial: dialling state changed between Caller (may be nil) and Peer.
type Dial struct {
	EventBase
	Caller     *Channel `json:"caller,omitempty"`
	Peer       Channel  `json:"peer"`
	Forward    string   `json:"forward,omitempty"`
	Forwarded  *Channel `json:"forwarded,omitempty"`
	Dialstring string   `json:"dialstring,omitempty"`
	Dialstatus string   `json:"dialstatus"`
}

// ChannelIDs implements Event.
func (e *Dial) ChannelIDs() []string {
	return ids(chID(e.Caller), e.Peer.ID, chID(e.Forwarded))
}

// bridgeEvent is embedded by events about one bridge.
type bridgeEvent struct {
	EventBase
	Bridge Bridge `json:"bridge"`
}

func (e bridgeEvent) BridgeIDs() []string { return ids(e.Bridge.ID) }

// BridgeCreated: a bridge was created.
type BridgeCreated struct{ bridgeEvent }

// BridgeDestroyed: a bridge was destroyed.
type BridgeDestroyed struct{ bridgeEvent }

// playbackEvent is embedded by playback events; the target URI says which
// channel or bridge plays.
type playbackEvent struct {
	EventBase
	Playback Playback `json:"playback"`
}

func (e playbackEvent) ChannelIDs() []string { return targetIDs(e.Playback.TargetURI, "channel") }
func (e playbackEvent) BridgeIDs() []string  { return targetIDs(e.Playback.TargetURI, "bridge") }

func targetIDs(uri, want string) []string {
	if kind, id := targetID(uri); kind == want && id != "" {
		return []string{id}
	}
	return nil
}

// PlaybackStarted: a playback began.
type PlaybackStarted struct{ playbackEvent }

// PlaybackFinished: a playback ended (done, stopped or failed).
type PlaybackFinished struct{ playbackEvent }

// recordingEvent is embedded by recording events.
type recordingEvent struct {
	EventBase
	Recording LiveRecording `json:"recording"`
}

func (e recordingEvent) ChannelIDs() []string { return targetIDs(e.Recording.TargetURI, "channel") }
func (e recordingEvent) BridgeIDs() []string  { return targetIDs(e.Recording.TargetURI, "bridge") }

// RecordingStarted: a recording began.
type RecordingStarted struct{ recordingEvent }

// RecordingFinished: a recording ended and was stored.
type RecordingFinished struct{ recordingEvent }

// RecordingFailed: a recording failed; Recording.Cause says why.
type RecordingFailed struct{ recordingEvent }

// UnknownEvent is any event type this package does not model (or one that
// failed to decode); Raw holds the full JSON so nothing is lost.
type UnknownEvent struct {
	EventBase
	Raw json.RawMessage
	// DecodeErr is set when the type is known but its JSON did not decode.
	DecodeErr error
}

// Connected is published each time the events socket is (re)opened and the
// Stasis app registered.
type Connected struct {
	EventBase
	Reconnect bool // true after the first connection of this Run
}

// Disconnected is published when the events socket is lost or closed.
type Disconnected struct {
	EventBase
	Err error // why; nil on a clean close at shutdown
}

// Reconciled is published after a reconnect once the client has compared what
// it tracked against what Asterisk still has. Events that happened while the
// socket was down are lost for good (Asterisk does not queue them), so an
// owner should tear down calls whose resources are in Gone*.
type Reconciled struct {
	EventBase
	AliveChannels, AliveBridges []string // tracked and still present
	GoneChannels, GoneBridges   []string // tracked but vanished
	// UnknownChannels/UnknownBridges belong to our app on Asterisk but were not
	// tracked (e.g. entered Stasis while we were disconnected): orphans to adopt or clean up.
	UnknownChannels, UnknownBridges []string
	Err                             error // set when listing failed; the lists are then incomplete
}

// ChannelIDs implements Event: the channels whose fate changed.
func (e *Reconciled) ChannelIDs() []string {
	return append(append([]string(nil), e.GoneChannels...), e.UnknownChannels...)
}

// BridgeIDs implements Event.
func (e *Reconciled) BridgeIDs() []string {
	return append(append([]string(nil), e.GoneBridges...), e.UnknownBridges...)
}

// Swept is published after each sweep of resources no live call claimed (see Client.Sweep).
type Swept struct {
	EventBase
	Report SweepReport
}

func isSynthetic(t string) bool {
	return t == TypeConnected || t == TypeDisconnected || t == TypeReconciled
}

// DecodeEvent decodes one ARI event message. Unknown types give an
// *UnknownEvent; a known type whose body does not decode gives an
// *UnknownEvent with DecodeErr set, plus that error.
func DecodeEvent(data []byte) (Event, error) {
	var base EventBase
	if err := json.Unmarshal(data, &base); err != nil {
		return nil, fmt.Errorf("ari: event is not a JSON object: %w", err)
	}
	if base.Type == "" {
		return nil, fmt.Errorf("ari: event has no type")
	}
	var ev Event
	switch base.Type {
	case TypeStasisStart:
		ev = &StasisStart{}
	case TypeStasisEnd:
		ev = &StasisEnd{}
	case TypeChannelCreated:
		ev = &ChannelCreated{}
	case TypeChannelDestroyed:
		ev = &ChannelDestroyed{}
	case TypeChannelStateChange:
		ev = &ChannelStateChange{}
	case TypeChannelHangupRequest:
		ev = &ChannelHangupRequest{}
	case TypeChannelDtmfReceived:
		ev = &ChannelDtmfReceived{}
	case TypeChannelEnteredBridge:
		ev = &ChannelEnteredBridge{}
	case TypeChannelLeftBridge:
		ev = &ChannelLeftBridge{}
	case TypeChannelVarset:
		ev = &ChannelVarset{}
	case TypeChannelDialplan:
		ev = &ChannelDialplan{}
	case TypeChannelHold:
		ev = &ChannelHold{}
	case TypeChannelUnhold:
		ev = &ChannelUnhold{}
	case TypeChannelUserevent:
		ev = &ChannelUserevent{}
	case TypeChannelTalkingStarted:
		ev = &ChannelTalkingStarted{}
	case TypeChannelTalkingFinished:
		ev = &ChannelTalkingFinished{}
	case TypeDial:
		ev = &Dial{}
	case TypeBridgeCreated:
		ev = &BridgeCreated{}
	case TypeBridgeDestroyed:
		ev = &BridgeDestroyed{}
	case TypePlaybackStarted:
		ev = &PlaybackStarted{}
	case TypePlaybackFinished:
		ev = &PlaybackFinished{}
	case TypeRecordingStarted:
		ev = &RecordingStarted{}
	case TypeRecordingFinished:
		ev = &RecordingFinished{}
	case TypeRecordingFailed:
		ev = &RecordingFailed{}
	case TypeBridgeBlindTransfer:
		ev = &BridgeBlindTransfer{}
	case TypeBridgeAttendedTransfer:
		ev = &BridgeAttendedTransfer{}
	default:
		return &UnknownEvent{EventBase: base, Raw: append(json.RawMessage(nil), data...)}, nil
	}
	if err := json.Unmarshal(data, ev); err != nil {
		err = fmt.Errorf("ari: decode %s event: %w", base.Type, err)
		return &UnknownEvent{EventBase: base, Raw: append(json.RawMessage(nil), data...), DecodeErr: err}, err
	}
	return ev, nil
}
