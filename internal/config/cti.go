package config

import (
	"path/filepath"
	"strings"
)

// Recording modes.
const (
	RecordingOff       = "off"        // nothing is recorded; the recording API answers 503
	RecordingOnRequest = "on_request" // calls and rooms are recorded when the API or an agent asks
	RecordingAlways    = "always"     // every answered two-party call and every room is recorded
)

// Recording configures recordings of calls and rooms (internal/recording): Asterisk records the bridge, Patchbay
// fetches the file over ARI into dir with a JSON sidecar, and serves it under /api/v1/recordings.
type Recording struct {
	// Mode is off (default), on_request or always.
	Mode string `mapstructure:"mode" yaml:"mode"`
	// Dir holds the recordings and their sidecars (created 0750). Default /var/lib/patchbay/recordings.
	Dir string `mapstructure:"dir" yaml:"dir"`
	// RetentionDays deletes recordings this many days after they ended; 0 keeps them. Default 30.
	RetentionDays int `mapstructure:"retention_days" yaml:"retention_days"`
	// Announcement is played to the call or room before recording starts (consent), as an ARI media URI such as
	// "sound:conf-now-recording"; empty: none.
	Announcement string `mapstructure:"announcement" yaml:"announcement"`
}

// DefaultRecording returns the recording defaults.
func DefaultRecording() Recording {
	return Recording{Mode: RecordingOff, Dir: "/var/lib/patchbay/recordings", RetentionDays: 30}
}

func (c *Config) validateRecording(bad func(key, format string, args ...any)) {
	r := c.Recording
	switch r.Mode {
	case RecordingOff, RecordingOnRequest, RecordingAlways:
	default:
		bad("recording.mode", "%q must be off, on_request or always", r.Mode)
	}
	if r.Mode != RecordingOff && (r.Dir == "" || !filepath.IsAbs(r.Dir)) {
		bad("recording.dir", "%q must be an absolute directory", r.Dir)
	}
	if r.RetentionDays < 0 || r.RetentionDays > 36500 {
		bad("recording.retention_days", "%d must be 0 (keep) to 36500", r.RetentionDays)
	}
	if a := r.Announcement; a != "" {
		scheme, rest, ok := strings.Cut(a, ":")
		switch {
		case !ok || rest == "" || strings.ContainsAny(a, ",\n\r&"):
			bad("recording.announcement", "%q must be one ARI media URI such as sound:conf-now-recording", a)
		case scheme != "sound" && scheme != "recording" && scheme != "tone" && scheme != "digits" && scheme != "number" && scheme != "characters":
			bad("recording.announcement", "%q: the scheme must be sound, recording, tone, digits, number or characters", a)
		}
	}
	if d := c.Asterisk.MOHDir; d != "" && (!filepath.IsAbs(d) || strings.ContainsAny(d, "; \n")) {
		bad("asterisk.moh_dir", "%q must be an absolute path without spaces", d)
	}
}
