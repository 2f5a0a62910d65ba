package ari

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// BridgesAPI is the /bridges area. Get it with Client.Bridges.
type BridgesAPI struct{ c *Client }

// Bridges returns the /bridges accessor.
func (c *Client) Bridges() *BridgesAPI { return &BridgesAPI{c} }

// Bridge returns a handle for the bridge with this ID (no I/O).
func (c *Client) Bridge(id string) *BridgeHandle { return &BridgeHandle{c: c, id: id} }

// BridgeHandle is a bridge ID bound to a client; its methods act on that bridge.
type BridgeHandle struct {
	c  *Client
	id string
}

// ID returns the bridge ID.
func (h *BridgeHandle) ID() string { return h.id }

// BridgeRequest describes POST /bridges.
type BridgeRequest struct {
	// Type is a comma list of "mixing", "holding", "dtmf_events", "proxy_media",
	// "video_sfu", "video_single"; empty means "mixing".
	Type string
	ID   string // client-side ID (see NewID); empty lets Asterisk choose
	Name string
}

// Create creates a bridge. Bridges created here are tracked for Reconciled.
func (a *BridgesAPI) Create(ctx context.Context, r BridgeRequest) (*Bridge, error) {
	q := url.Values{}
	typ := r.Type
	if typ == "" {
		typ = "mixing"
	}
	q.Set("type", typ)
	setIf(q, "bridgeId", r.ID)
	setIf(q, "name", r.Name)
	var out Bridge
	if err := a.c.doCreate(ctx, "POST", "/bridges", q, nil, &out, a.c.undoBridge(&out)); err != nil {
		return nil, fmt.Errorf("create %s bridge: %w", typ, err)
	}
	a.c.track.addBridge(out.ID)
	return &out, nil
}

// List returns all bridges.
func (a *BridgesAPI) List(ctx context.Context) ([]Bridge, error) {
	var out []Bridge
	if err := a.c.do(ctx, "GET", "/bridges", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("list bridges: %w", err)
	}
	return out, nil
}

// Get returns a bridge snapshot.
func (a *BridgesAPI) Get(ctx context.Context, id string) (*Bridge, error) {
	return a.c.Bridge(id).Get(ctx)
}

// Get returns the bridge's snapshot.
func (h *BridgeHandle) Get(ctx context.Context) (*Bridge, error) {
	var out Bridge
	if err := h.c.do(ctx, "GET", "/bridges/"+pathEscape(h.id), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get bridge %s: %w", h.id, err)
	}
	return &out, nil
}

// AddChannelOptions for AddChannel.
type AddChannelOptions struct {
	Role                        string
	AbsorbDTMF                  bool
	Mute                        bool
	InhibitConnectedLineUpdates bool
}

// AddChannel adds channels (which must be in our Stasis app) to the bridge.
func (h *BridgeHandle) AddChannel(ctx context.Context, o AddChannelOptions, channelIDs ...string) error {
	if len(channelIDs) == 0 {
		return errors.New("ari: add channel to bridge: no channel IDs given")
	}
	q := url.Values{}
	q.Set("channel", strings.Join(channelIDs, ","))
	setIf(q, "role", o.Role)
	if o.AbsorbDTMF {
		q.Set("absorbDTMF", "true")
	}
	if o.Mute {
		q.Set("mute", "true")
	}
	if o.InhibitConnectedLineUpdates {
		q.Set("inhibitConnectedLineUpdates", "true")
	}
	if err := h.c.do(ctx, "POST", "/bridges/"+pathEscape(h.id)+"/addChannel", q, nil, nil); err != nil {
		return fmt.Errorf("add channels %s to bridge %s: %w", strings.Join(channelIDs, ","), h.id, err)
	}
	return nil
}

// RemoveChannel removes channels from the bridge.
func (h *BridgeHandle) RemoveChannel(ctx context.Context, channelIDs ...string) error {
	if len(channelIDs) == 0 {
		return errors.New("ari: remove channel from bridge: no channel IDs given")
	}
	q := url.Values{}
	q.Set("channel", strings.Join(channelIDs, ","))
	if err := h.c.do(ctx, "POST", "/bridges/"+pathEscape(h.id)+"/removeChannel", q, nil, nil); err != nil {
		return fmt.Errorf("remove channels %s from bridge %s: %w", strings.Join(channelIDs, ","), h.id, err)
	}
	return nil
}

// Delete destroys the bridge; channels in it stay up (in Stasis).
func (h *BridgeHandle) Delete(ctx context.Context) error {
	err := h.c.do(ctx, "DELETE", "/bridges/"+pathEscape(h.id), nil, nil, nil)
	if err == nil || IsNotFound(err) {
		h.c.track.removeBridge(h.id)
	}
	if err != nil {
		return fmt.Errorf("delete bridge %s: %w", h.id, err)
	}
	return nil
}

// Play starts media on the bridge (heard by every member).
func (h *BridgeHandle) Play(ctx context.Context, o PlayOptions) (*Playback, error) {
	return h.c.play(ctx, "/bridges/"+pathEscape(h.id), "bridge "+h.id, o)
}

// Record records the bridge's mix.
func (h *BridgeHandle) Record(ctx context.Context, o RecordOptions) (*LiveRecording, error) {
	return h.c.record(ctx, "/bridges/"+pathEscape(h.id), "bridge "+h.id, o)
}

// SetVideoSource makes channelID the bridge's single video source.
func (h *BridgeHandle) SetVideoSource(ctx context.Context, channelID string) error {
	if err := h.c.do(ctx, "POST", "/bridges/"+pathEscape(h.id)+"/videoSource/"+pathEscape(channelID), nil, nil, nil); err != nil {
		return fmt.Errorf("set video source of bridge %s to %s: %w", h.id, channelID, err)
	}
	return nil
}

// ClearVideoSource returns the bridge to talker-based video.
func (h *BridgeHandle) ClearVideoSource(ctx context.Context) error {
	if err := h.c.do(ctx, "DELETE", "/bridges/"+pathEscape(h.id)+"/videoSource", nil, nil, nil); err != nil {
		return fmt.Errorf("clear video source of bridge %s: %w", h.id, err)
	}
	return nil
}
