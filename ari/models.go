package ari

import (
	"encoding/json"
	"strings"
	"time"
)

// Time is a timestamp as Asterisk writes it ("2026-11-21T09:12:30.123+0000").
// Unparseable values decode to the zero time rather than failing the whole
// event: one odd timestamp must not lose a StasisStart.
type Time struct{ time.Time }

var timeLayouts = []string{
	"2006-01-02T15:04:05.000-0700",
	"2006-01-02T15:04:05-0700",
	time.RFC3339Nano,
}

// UnmarshalJSON implements json.Unmarshaler.
func (t *Time) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil || s == "" {
		t.Time = time.Time{}
		return nil
	}
	for _, l := range timeLayouts {
		if v, err := time.Parse(l, s); err == nil {
			t.Time = v
			return nil
		}
	}
	t.Time = time.Time{}
	return nil
}

// MarshalJSON writes the Asterisk layout back.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte(`""`), nil
	}
	return json.Marshal(t.Format(timeLayouts[0]))
}

// CallerID is a name/number pair.
type CallerID struct {
	Name   string `json:"name"`
	Number string `json:"number"`
}

// DialplanCEP is where a channel is in the dialplan. AppName/AppData show
// "Stasis" and "APP,args" for channels inside a Stasis application.
type DialplanCEP struct {
	Context  string `json:"context"`
	Exten    string `json:"exten"`
	Priority int64  `json:"priority"`
	AppName  string `json:"app_name,omitempty"`
	AppData  string `json:"app_data,omitempty"`
}

// Channel is an ARI channel snapshot.
type Channel struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	State        string            `json:"state"`
	ProtocolID   string            `json:"protocol_id,omitempty"`
	Caller       CallerID          `json:"caller"`
	Connected    CallerID          `json:"connected"`
	AccountCode  string            `json:"accountcode,omitempty"`
	Dialplan     DialplanCEP       `json:"dialplan"`
	CreationTime Time              `json:"creationtime"`
	Language     string            `json:"language,omitempty"`
	ChannelVars  map[string]string `json:"channelvars,omitempty"`
	CallerRDNIS  string            `json:"caller_rdnis,omitempty"`
	TenantID     string            `json:"tenantid,omitempty"`
}

// InStasis reports whether the snapshot shows the channel inside Stasis app.
func (ch *Channel) InStasis(app string) bool {
	if !strings.EqualFold(ch.Dialplan.AppName, "Stasis") {
		return false
	}
	first, _, _ := strings.Cut(ch.Dialplan.AppData, ",")
	return first == app
}

// Bridge is an ARI bridge snapshot.
type Bridge struct {
	ID            string   `json:"id"`
	Technology    string   `json:"technology"`
	BridgeType    string   `json:"bridge_type"`
	BridgeClass   string   `json:"bridge_class"`
	Creator       string   `json:"creator"`
	Name          string   `json:"name"`
	Channels      []string `json:"channels"`
	VideoMode     string   `json:"video_mode,omitempty"`
	VideoSourceID string   `json:"video_source_id,omitempty"`
	CreationTime  Time     `json:"creationtime"`
}

// Playback is a media playback on a channel or bridge.
type Playback struct {
	ID           string `json:"id"`
	MediaURI     string `json:"media_uri"`
	NextMediaURI string `json:"next_media_uri,omitempty"`
	TargetURI    string `json:"target_uri"`
	Language     string `json:"language,omitempty"`
	State        string `json:"state"`
}

// LiveRecording is a recording in progress (or just finished).
type LiveRecording struct {
	Name            string `json:"name"`
	Format          string `json:"format"`
	TargetURI       string `json:"target_uri"`
	State           string `json:"state"`
	Duration        int    `json:"duration,omitempty"`
	TalkingDuration int    `json:"talking_duration,omitempty"`
	SilenceDuration int    `json:"silence_duration,omitempty"`
	Cause           string `json:"cause,omitempty"`
}

// StoredRecording is a finished recording on Asterisk's disk.
type StoredRecording struct {
	Name   string `json:"name"`
	Format string `json:"format"`
}

// Application is a Stasis application and what it is subscribed to.
type Application struct {
	Name             string            `json:"name"`
	ChannelIDs       []string          `json:"channel_ids"`
	BridgeIDs        []string          `json:"bridge_ids"`
	EndpointIDs      []string          `json:"endpoint_ids"`
	DeviceNames      []string          `json:"device_names"`
	EventsAllowed    []json.RawMessage `json:"events_allowed,omitempty"`
	EventsDisallowed []json.RawMessage `json:"events_disallowed,omitempty"`
}

// AsteriskInfo is GET /asterisk/info.
type AsteriskInfo struct {
	Build struct {
		OS      string `json:"os"`
		Kernel  string `json:"kernel"`
		Machine string `json:"machine"`
		Options string `json:"options"`
		Date    string `json:"date"`
		User    string `json:"user"`
	} `json:"build"`
	System struct {
		Version  string `json:"version"`
		EntityID string `json:"entity_id"`
	} `json:"system"`
	Config struct {
		Name            string  `json:"name"`
		DefaultLanguage string  `json:"default_language"`
		MaxChannels     int     `json:"max_channels,omitempty"`
		MaxOpenFiles    int     `json:"max_open_files,omitempty"`
		MaxLoad         float64 `json:"max_load,omitempty"`
	} `json:"config"`
	Status struct {
		StartupTime    Time `json:"startup_time"`
		LastReloadTime Time `json:"last_reload_time"`
	} `json:"status"`
}

// AsteriskPing is GET /asterisk/ping.
type AsteriskPing struct {
	AsteriskID string `json:"asterisk_id"`
	Ping       string `json:"ping"`
	Timestamp  Time   `json:"timestamp"`
}

// targetID splits a target URI such as "channel:ID" or "bridge:ID".
func targetID(uri string) (kind, id string) {
	kind, id, ok := strings.Cut(uri, ":")
	if !ok {
		return "", ""
	}
	return kind, id
}
