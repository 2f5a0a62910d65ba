package ari

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// PlaybacksAPI is the /playbacks area.
type PlaybacksAPI struct{ c *Client }

// Playbacks returns the /playbacks accessor.
func (c *Client) Playbacks() *PlaybacksAPI { return &PlaybacksAPI{c} }

// Get returns a playback.
func (a *PlaybacksAPI) Get(ctx context.Context, id string) (*Playback, error) {
	var out Playback
	if err := a.c.do(ctx, "GET", "/playbacks/"+pathEscape(id), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get playback %s: %w", id, err)
	}
	return &out, nil
}

// Stop stops a playback.
func (a *PlaybacksAPI) Stop(ctx context.Context, id string) error {
	if err := a.c.do(ctx, "DELETE", "/playbacks/"+pathEscape(id), nil, nil, nil); err != nil {
		return fmt.Errorf("stop playback %s: %w", id, err)
	}
	return nil
}

// Control sends "restart", "pause", "unpause", "reverse" or "forward" to a playback.
func (a *PlaybacksAPI) Control(ctx context.Context, id, operation string) error {
	q := url.Values{}
	q.Set("operation", operation)
	if err := a.c.do(ctx, "POST", "/playbacks/"+pathEscape(id)+"/control", q, nil, nil); err != nil {
		return fmt.Errorf("%s playback %s: %w", operation, id, err)
	}
	return nil
}

// RecordingsAPI is the /recordings area.
type RecordingsAPI struct{ c *Client }

// Recordings returns the /recordings accessor.
func (c *Client) Recordings() *RecordingsAPI { return &RecordingsAPI{c} }

// Live returns a live recording.
func (a *RecordingsAPI) Live(ctx context.Context, name string) (*LiveRecording, error) {
	var out LiveRecording
	if err := a.c.do(ctx, "GET", "/recordings/live/"+pathEscape(name), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get live recording %s: %w", name, err)
	}
	return &out, nil
}

// Stop stops a live recording and keeps the file.
func (a *RecordingsAPI) Stop(ctx context.Context, name string) error {
	if err := a.c.do(ctx, "POST", "/recordings/live/"+pathEscape(name)+"/stop", nil, nil, nil); err != nil {
		return fmt.Errorf("stop recording %s: %w", name, err)
	}
	return nil
}

// Cancel stops a live recording and discards the file.
func (a *RecordingsAPI) Cancel(ctx context.Context, name string) error {
	if err := a.c.do(ctx, "DELETE", "/recordings/live/"+pathEscape(name), nil, nil, nil); err != nil {
		return fmt.Errorf("cancel recording %s: %w", name, err)
	}
	return nil
}

// ListStored lists finished recordings.
func (a *RecordingsAPI) ListStored(ctx context.Context) ([]StoredRecording, error) {
	var out []StoredRecording
	if err := a.c.do(ctx, "GET", "/recordings/stored", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("list stored recordings: %w", err)
	}
	return out, nil
}

// Stored returns one finished recording.
func (a *RecordingsAPI) Stored(ctx context.Context, name string) (*StoredRecording, error) {
	var out StoredRecording
	if err := a.c.do(ctx, "GET", "/recordings/stored/"+pathEscape(name), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get stored recording %s: %w", name, err)
	}
	return &out, nil
}

// DeleteStored deletes a finished recording.
func (a *RecordingsAPI) DeleteStored(ctx context.Context, name string) error {
	if err := a.c.do(ctx, "DELETE", "/recordings/stored/"+pathEscape(name), nil, nil, nil); err != nil {
		return fmt.Errorf("delete stored recording %s: %w", name, err)
	}
	return nil
}

// ApplicationsAPI is the /applications area.
type ApplicationsAPI struct{ c *Client }

// Applications returns the /applications accessor.
func (c *Client) Applications() *ApplicationsAPI { return &ApplicationsAPI{c} }

// List returns the registered Stasis applications.
func (a *ApplicationsAPI) List(ctx context.Context) ([]Application, error) {
	var out []Application
	if err := a.c.do(ctx, "GET", "/applications", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	return out, nil
}

// Get returns one application with what it is subscribed to.
func (a *ApplicationsAPI) Get(ctx context.Context, name string) (*Application, error) {
	var out Application
	if err := a.c.do(ctx, "GET", "/applications/"+pathEscape(name), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get application %s: %w", name, err)
	}
	return &out, nil
}

// Subscribe subscribes app to event sources such as "channel:ID", "bridge:ID",
// "endpoint:PJSIP/alice" or "deviceState:NAME".
func (a *ApplicationsAPI) Subscribe(ctx context.Context, app string, sources ...string) (*Application, error) {
	return a.subscription(ctx, "POST", "subscribe", app, sources)
}

// Unsubscribe undoes Subscribe.
func (a *ApplicationsAPI) Unsubscribe(ctx context.Context, app string, sources ...string) (*Application, error) {
	return a.subscription(ctx, "DELETE", "unsubscribe", app, sources)
}

func (a *ApplicationsAPI) subscription(ctx context.Context, method, verb, app string, sources []string) (*Application, error) {
	if len(sources) == 0 {
		return nil, errors.New("ari: " + verb + ": no event sources given")
	}
	q := url.Values{}
	q.Set("eventSource", strings.Join(sources, ","))
	var out Application
	if err := a.c.do(ctx, method, "/applications/"+pathEscape(app)+"/subscription", q, nil, &out); err != nil {
		return nil, fmt.Errorf("%s %s to %s: %w", verb, app, strings.Join(sources, ","), err)
	}
	return &out, nil
}

// AsteriskAPI is the /asterisk area.
type AsteriskAPI struct{ c *Client }

// Asterisk returns the /asterisk accessor.
func (c *Client) Asterisk() *AsteriskAPI { return &AsteriskAPI{c} }

// Info returns build, system, config and status information.
func (a *AsteriskAPI) Info(ctx context.Context) (*AsteriskInfo, error) {
	var out AsteriskInfo
	if err := a.c.do(ctx, "GET", "/asterisk/info", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get Asterisk info: %w", err)
	}
	return &out, nil
}

// Ping checks that Asterisk answers ARI.
func (a *AsteriskAPI) Ping(ctx context.Context) (*AsteriskPing, error) {
	var out AsteriskPing
	if err := a.c.do(ctx, "GET", "/asterisk/ping", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("ping Asterisk: %w", err)
	}
	return &out, nil
}

// Variable reads a global variable.
func (a *AsteriskAPI) Variable(ctx context.Context, name string) (string, error) {
	q := url.Values{}
	q.Set("variable", name)
	var out struct {
		Value string `json:"value"`
	}
	if err := a.c.do(ctx, "GET", "/asterisk/variable", q, nil, &out); err != nil {
		return "", fmt.Errorf("get global variable %s: %w", name, err)
	}
	return out.Value, nil
}

// SetVariable sets a global variable.
func (a *AsteriskAPI) SetVariable(ctx context.Context, name, value string) error {
	q := url.Values{}
	q.Set("variable", name)
	q.Set("value", value)
	if err := a.c.do(ctx, "POST", "/asterisk/variable", q, nil, nil); err != nil {
		return fmt.Errorf("set global variable %s: %w", name, err)
	}
	return nil
}
