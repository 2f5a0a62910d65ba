package ari

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// Contact-center operations: music on hold, snoop channels (listen, whisper, barge) and fetching finished
// recordings. They sit beside the channel and bridge handles they extend.

// StartMOH plays music on hold to the channel (class "" is Asterisk's default). On a channel in a bridge the
// music replaces what the bridge sends it until StopMOH.
func (h *ChannelHandle) StartMOH(ctx context.Context, class string) error {
	q := url.Values{}
	setIf(q, "mohClass", class)
	return h.simple(ctx, "POST", "start music on hold on", "/moh", q)
}

// StopMOH stops the music StartMOH started.
func (h *ChannelHandle) StopMOH(ctx context.Context) error {
	return h.simple(ctx, "DELETE", "stop music on hold on", "/moh", nil)
}

// StartMOH plays music on hold into the bridge, heard by every channel in it (through an announcer channel
// Asterisk adds and removes itself).
func (h *BridgeHandle) StartMOH(ctx context.Context, class string) error {
	q := url.Values{}
	setIf(q, "mohClass", class)
	if err := h.c.do(ctx, "POST", "/bridges/"+pathEscape(h.id)+"/moh", q, nil, nil); err != nil {
		return fmt.Errorf("start music on hold in bridge %s: %w", h.id, err)
	}
	return nil
}

// StopMOH stops the bridge's music on hold.
func (h *BridgeHandle) StopMOH(ctx context.Context) error {
	if err := h.c.do(ctx, "DELETE", "/bridges/"+pathEscape(h.id)+"/moh", nil, nil, nil); err != nil {
		return fmt.Errorf("stop music on hold in bridge %s: %w", h.id, err)
	}
	return nil
}

// Snoop directions: spy is what the snoop channel hears of the snooped channel ("in": what the channel sends
// into Asterisk, "out": what Asterisk sends it, "both"); whisper is where the snoop channel's own audio goes
// ("out": heard by the snooped channel's party only; "both": also mixed into what it sends, so its peers hear it).
const (
	SnoopNone = "none"
	SnoopIn   = "in"
	SnoopOut  = "out"
	SnoopBoth = "both"
)

// SnoopRequest describes POST /channels/{id}/snoop.
type SnoopRequest struct {
	Spy, Whisper string // Snoop* directions; at least one must not be none
	App          string // required: the Stasis application the snoop channel enters
	AppArgs      string
	SnoopID      string // client-side ID of the snoop channel; claim it before the request
}

// Snoop creates a snoop channel on the channel; it enters App's Stasis application like any other channel.
func (h *ChannelHandle) Snoop(ctx context.Context, r SnoopRequest) (*Channel, error) {
	if r.App == "" {
		return nil, errors.New("ari: snoop: App is required")
	}
	spy, whisper := r.Spy, r.Whisper
	if spy == "" {
		spy = SnoopNone
	}
	if whisper == "" {
		whisper = SnoopNone
	}
	if spy == SnoopNone && whisper == SnoopNone {
		return nil, errors.New("ari: snoop: set Spy or Whisper")
	}
	q := url.Values{}
	q.Set("spy", spy)
	q.Set("whisper", whisper)
	q.Set("app", r.App)
	setIf(q, "appArgs", r.AppArgs)
	setIf(q, "snoopId", r.SnoopID)
	var out Channel
	if err := h.c.doCreate(ctx, "POST", "/channels/"+pathEscape(h.id)+"/snoop", q, nil, &out, h.c.undoChannel(&out)); err != nil {
		return nil, fmt.Errorf("snoop on channel %s (spy %s, whisper %s): %w", h.id, spy, whisper, err)
	}
	if r.App == h.c.cfg.Application {
		h.c.track.addChannel(out.ID)
	}
	return &out, nil
}

// Redirect sends a channel that is not answered yet elsewhere ("PJSIP/101", or a SIP URI for PJSIP's 302).
func (h *ChannelHandle) Redirect(ctx context.Context, endpoint string) error {
	q := url.Values{}
	q.Set("endpoint", endpoint)
	return h.simple(ctx, "POST", "redirect", "/redirect", q)
}

// MaxStoredFile bounds a recording fetched by StoredFile (a day of 8 kHz 16-bit audio is 1.4 GB; no call
// Patchbay records comes near this).
const MaxStoredFile = 2 << 30

// StoredFile opens a finished recording's file (GET /recordings/stored/{name}/file). The caller closes it. Asterisk
// may run on another host or in a chroot: this reaches the file wherever Asterisk keeps it.
func (a *RecordingsAPI) StoredFile(ctx context.Context, name string) (io.ReadCloser, error) {
	path := "/recordings/stored/" + pathEscape(name) + "/file"
	req, err := http.NewRequestWithContext(ctx, "GET", a.c.restURL(path, nil), nil)
	if err != nil {
		return nil, fmt.Errorf("ari: build request GET %s: %w", path, err)
	}
	req.SetBasicAuth(a.c.cfg.Username, a.c.cfg.Password)
	resp, err := a.c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch recording %s: %w", name, a.c.transportError(ctx, "GET", path, err))
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		msg := string(raw)
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return nil, fmt.Errorf("fetch recording %s: %w", name, &Error{Status: resp.StatusCode, Method: "GET", Path: path, Message: msg, User: a.c.cfg.Username})
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, MaxStoredFile), resp.Body}, nil
}

// BridgeBlindTransfer: a channel in a bridge blind-transferred its peer (a phone's REFER). In a Stasis bridge the
// transferer is replaced by ReplaceChannel, a Local channel that dials Exten@Context and enters the application
// with a StasisStart naming the transferer as its replace_channel.
type BridgeBlindTransfer struct {
	EventBase
	Channel        Channel  `json:"channel"` // the transferer
	ReplaceChannel *Channel `json:"replace_channel,omitempty"`
	Transferee     *Channel `json:"transferee,omitempty"`
	Exten          string   `json:"exten"`
	Context        string   `json:"context"`
	Result         string   `json:"result"` // "Success", "Fail", "Invalid", "Not Permitted"
	IsExternal     bool     `json:"is_external"`
	Bridge         *Bridge  `json:"bridge,omitempty"`
}

// ChannelIDs implements Event.
func (e *BridgeBlindTransfer) ChannelIDs() []string {
	return ids(e.Channel.ID, chID(e.ReplaceChannel), chID(e.Transferee))
}

// BridgeIDs implements Event.
func (e *BridgeBlindTransfer) BridgeIDs() []string { return ids(brID(e.Bridge)) }

// BridgeAttendedTransfer: a channel completed an attended transfer between two of its calls (a phone's REFER
// with Replaces). DestinationType says how the two sides were joined: "bridge" (one bridge absorbed the other's
// channels), "link" (a Local pair links them), "threeway", "application" or "fail".
type BridgeAttendedTransfer struct {
	EventBase
	TransfererFirstLeg        Channel  `json:"transferer_first_leg"`
	TransfererSecondLeg       Channel  `json:"transferer_second_leg"`
	ReplaceChannel            *Channel `json:"replace_channel,omitempty"`
	Transferee                *Channel `json:"transferee,omitempty"`
	TransferTarget            *Channel `json:"transfer_target,omitempty"`
	Result                    string   `json:"result"`
	IsExternal                bool     `json:"is_external"`
	TransfererFirstLegBridge  *Bridge  `json:"transferer_first_leg_bridge,omitempty"`
	TransfererSecondLegBridge *Bridge  `json:"transferer_second_leg_bridge,omitempty"`
	DestinationType           string   `json:"destination_type"`
	DestinationBridge         string   `json:"destination_bridge,omitempty"`
	DestinationApplication    string   `json:"destination_application,omitempty"`
	DestinationLinkFirstLeg   *Channel `json:"destination_link_first_leg,omitempty"`
	DestinationLinkSecondLeg  *Channel `json:"destination_link_second_leg,omitempty"`
	DestinationThreewayChan   *Channel `json:"destination_threeway_channel,omitempty"`
	DestinationThreewayBridge *Bridge  `json:"destination_threeway_bridge,omitempty"`
}

// ChannelIDs implements Event.
func (e *BridgeAttendedTransfer) ChannelIDs() []string {
	return ids(e.TransfererFirstLeg.ID, e.TransfererSecondLeg.ID, chID(e.ReplaceChannel), chID(e.Transferee),
		chID(e.TransferTarget), chID(e.DestinationLinkFirstLeg), chID(e.DestinationLinkSecondLeg), chID(e.DestinationThreewayChan))
}

// BridgeIDs implements Event.
func (e *BridgeAttendedTransfer) BridgeIDs() []string {
	return ids(brID(e.TransfererFirstLegBridge), brID(e.TransfererSecondLegBridge), e.DestinationBridge, brID(e.DestinationThreewayBridge))
}
