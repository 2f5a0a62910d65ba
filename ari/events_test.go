package ari

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// Channel and bridge JSON shaped like Asterisk 22's.
const (
	evChan = `{"id":"pb-c1","name":"Local/600@internal-00000002;1","state":"Up","protocol_id":"",
	 "caller":{"name":"","number":""},"connected":{"name":"","number":""},"accountcode":"",
	 "dialplan":{"context":"internal","exten":"600","priority":1,"app_name":"Stasis","app_data":"patchbay-test"},
	 "creationtime":"2026-11-21T09:20:01.123+0000","language":"en"}`
	evBridge = `{"id":"pb-b1","technology":"simple_bridge","bridge_type":"mixing","bridge_class":"stasis",
	 "creator":"Stasis","name":"room","channels":["pb-c1"],"creationtime":"2026-11-21T09:20:01.200+0000","video_mode":"talker"}`
	evCommon = `"application":"patchbay-test","timestamp":"2026-11-21T09:20:01.456+0000","asterisk_id":"02:42:ac:11:00:02"`
)

func TestDecodeEvent(t *testing.T) {
	tests := []struct {
		json     string
		wantType string
		chans    []string
		bridges  []string
		check    func(t *testing.T, ev Event)
	}{
		{`{"type":"StasisStart",` + evCommon + `,"args":["x","y"],"channel":` + evChan + `,"replace_channel":{"id":"old-1","name":"x"}}`,
			TypeStasisStart, []string{"pb-c1", "old-1"}, nil, func(t *testing.T, ev Event) {
				e := ev.(*StasisStart)
				if !slices.Equal(e.Args, []string{"x", "y"}) || e.Channel.Dialplan.Exten != "600" || !e.Channel.InStasis("patchbay-test") {
					t.Errorf("StasisStart = %+v", e)
				}
				if e.Channel.CreationTime.UTC().Format(time.RFC3339Nano) != "2026-11-21T09:20:01.123Z" {
					t.Errorf("creationtime = %v", e.Channel.CreationTime)
				}
			}},
		{`{"type":"StasisEnd",` + evCommon + `,"channel":` + evChan + `}`, TypeStasisEnd, []string{"pb-c1"}, nil, nil},
		{`{"type":"ChannelCreated",` + evCommon + `,"channel":` + evChan + `}`, TypeChannelCreated, []string{"pb-c1"}, nil, nil},
		{`{"type":"ChannelDestroyed",` + evCommon + `,"cause":16,"cause_txt":"Normal Clearing","channel":` + evChan + `}`,
			TypeChannelDestroyed, []string{"pb-c1"}, nil, func(t *testing.T, ev Event) {
				if e := ev.(*ChannelDestroyed); e.Cause != 16 || e.CauseTxt != "Normal Clearing" {
					t.Errorf("ChannelDestroyed = %+v", e)
				}
			}},
		{`{"type":"ChannelStateChange",` + evCommon + `,"channel":` + evChan + `}`, TypeChannelStateChange, []string{"pb-c1"}, nil,
			func(t *testing.T, ev Event) {
				if ev.(*ChannelStateChange).Channel.State != "Up" {
					t.Error("state")
				}
			}},
		{`{"type":"ChannelHangupRequest",` + evCommon + `,"cause":16,"soft":true,"channel":` + evChan + `}`,
			TypeChannelHangupRequest, []string{"pb-c1"}, nil, func(t *testing.T, ev Event) {
				if e := ev.(*ChannelHangupRequest); e.Cause != 16 || !e.Soft {
					t.Errorf("%+v", e)
				}
			}},
		{`{"type":"ChannelDtmfReceived",` + evCommon + `,"digit":"#","duration_ms":120,"channel":` + evChan + `}`,
			TypeChannelDtmfReceived, []string{"pb-c1"}, nil, func(t *testing.T, ev Event) {
				if e := ev.(*ChannelDtmfReceived); e.Digit != "#" || e.DurationMs != 120 {
					t.Errorf("%+v", e)
				}
			}},
		{`{"type":"ChannelEnteredBridge",` + evCommon + `,"bridge":` + evBridge + `,"channel":` + evChan + `}`,
			TypeChannelEnteredBridge, []string{"pb-c1"}, []string{"pb-b1"}, func(t *testing.T, ev Event) {
				if e := ev.(*ChannelEnteredBridge); e.Bridge.BridgeClass != "stasis" || e.Bridge.Channels[0] != "pb-c1" {
					t.Errorf("%+v", e)
				}
			}},
		{`{"type":"ChannelLeftBridge",` + evCommon + `,"bridge":` + evBridge + `,"channel":` + evChan + `}`,
			TypeChannelLeftBridge, []string{"pb-c1"}, []string{"pb-b1"}, nil},
		{`{"type":"ChannelVarset",` + evCommon + `,"variable":"LAST_DTMF_READ","value":"1234"}`,
			TypeChannelVarset, nil, nil, func(t *testing.T, ev Event) {
				if e := ev.(*ChannelVarset); e.Variable != "LAST_DTMF_READ" || e.Value != "1234" || e.Channel != nil {
					t.Errorf("%+v", e)
				}
			}},
		{`{"type":"ChannelVarset",` + evCommon + `,"variable":"X","value":"1","channel":` + evChan + `}`,
			TypeChannelVarset, []string{"pb-c1"}, nil, nil},
		{`{"type":"ChannelUserevent",` + evCommon + `,"eventname":"Ping","userevent":{"k":"v"},"channel":` + evChan + `,"bridge":` + evBridge + `}`,
			TypeChannelUserevent, []string{"pb-c1"}, []string{"pb-b1"}, func(t *testing.T, ev Event) {
				if e := ev.(*ChannelUserevent); e.EventName != "Ping" || string(e.Userevent) != `{"k":"v"}` {
					t.Errorf("%+v", e)
				}
			}},
		{`{"type":"ChannelTalkingStarted",` + evCommon + `,"channel":` + evChan + `}`, TypeChannelTalkingStarted, []string{"pb-c1"}, nil, nil},
		{`{"type":"ChannelTalkingFinished",` + evCommon + `,"duration":1500,"channel":` + evChan + `}`,
			TypeChannelTalkingFinished, []string{"pb-c1"}, nil, func(t *testing.T, ev Event) {
				if ev.(*ChannelTalkingFinished).Duration != 1500 {
					t.Error("duration")
				}
			}},
		{`{"type":"Dial",` + evCommon + `,"dialstatus":"ANSWER","dialstring":"alice","peer":{"id":"peer-1","name":"PJSIP/alice-1"},"caller":` + evChan + `}`,
			TypeDial, []string{"pb-c1", "peer-1"}, nil, func(t *testing.T, ev Event) {
				if e := ev.(*Dial); e.Dialstatus != "ANSWER" || e.Peer.Name != "PJSIP/alice-1" {
					t.Errorf("%+v", e)
				}
			}},
		{`{"type":"BridgeCreated",` + evCommon + `,"bridge":` + evBridge + `}`, TypeBridgeCreated, nil, []string{"pb-b1"}, nil},
		{`{"type":"BridgeDestroyed",` + evCommon + `,"bridge":` + evBridge + `}`, TypeBridgeDestroyed, nil, []string{"pb-b1"}, nil},
		{`{"type":"PlaybackStarted",` + evCommon + `,"playback":{"id":"pl-1","media_uri":"tone:440","target_uri":"channel:pb-c1","language":"en","state":"playing"}}`,
			TypePlaybackStarted, []string{"pb-c1"}, nil, nil},
		{`{"type":"PlaybackFinished",` + evCommon + `,"playback":{"id":"pl-1","media_uri":"sound:x","target_uri":"bridge:pb-b1","language":"en","state":"done"}}`,
			TypePlaybackFinished, nil, []string{"pb-b1"}, func(t *testing.T, ev Event) {
				if ev.(*PlaybackFinished).Playback.State != "done" {
					t.Error("state")
				}
			}},
		{`{"type":"RecordingStarted",` + evCommon + `,"recording":{"name":"r1","format":"wav","state":"recording","target_uri":"bridge:pb-b1"}}`,
			TypeRecordingStarted, nil, []string{"pb-b1"}, nil},
		{`{"type":"RecordingFinished",` + evCommon + `,"recording":{"name":"r1","format":"wav","state":"done","target_uri":"channel:pb-c1","duration":3}}`,
			TypeRecordingFinished, []string{"pb-c1"}, nil, func(t *testing.T, ev Event) {
				if ev.(*RecordingFinished).Recording.Duration != 3 {
					t.Error("duration")
				}
			}},
		{`{"type":"RecordingFailed",` + evCommon + `,"recording":{"name":"r1","format":"wav","state":"failed","cause":"disk full","target_uri":"channel:pb-c1"}}`,
			TypeRecordingFailed, []string{"pb-c1"}, nil, nil},
		{`{"type":"EndpointStateChange",` + evCommon + `,"endpoint":{"technology":"PJSIP","resource":"alice","state":"online"}}`,
			"EndpointStateChange", nil, nil, func(t *testing.T, ev Event) {
				u := ev.(*UnknownEvent)
				if !strings.Contains(string(u.Raw), `"resource":"alice"`) || u.DecodeErr != nil {
					t.Errorf("%+v", u)
				}
			}},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%d_%s", i, tt.wantType), func(t *testing.T) {
			ev, err := DecodeEvent([]byte(tt.json))
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			if ev.EventType() != tt.wantType {
				t.Errorf("type = %s", ev.EventType())
			}
			cm := ev.Common()
			if cm.Application != "patchbay-test" || cm.AsteriskID != "02:42:ac:11:00:02" || cm.Timestamp.IsZero() {
				t.Errorf("common = %+v", cm)
			}
			if !slices.Equal(ev.ChannelIDs(), tt.chans) && !(len(ev.ChannelIDs()) == 0 && len(tt.chans) == 0) {
				t.Errorf("ChannelIDs = %v, want %v", ev.ChannelIDs(), tt.chans)
			}
			if !slices.Equal(ev.BridgeIDs(), tt.bridges) && !(len(ev.BridgeIDs()) == 0 && len(tt.bridges) == 0) {
				t.Errorf("BridgeIDs = %v, want %v", ev.BridgeIDs(), tt.bridges)
			}
			if tt.check != nil {
				tt.check(t, ev)
			}
		})
	}
}

func TestDecodeEventBadInput(t *testing.T) {
	for _, in := range []string{``, `[]`, `{"no":"type"}`, `nonsense`} {
		if ev, err := DecodeEvent([]byte(in)); err == nil {
			t.Errorf("DecodeEvent(%q) = %v, want error", in, ev)
		}
	}
	// A known type with a mistyped field keeps the raw JSON and says why.
	ev, err := DecodeEvent([]byte(`{"type":"ChannelDtmfReceived","digit":5,"channel":{"id":"c"}}`))
	u, ok := ev.(*UnknownEvent)
	if err == nil || !ok || u.DecodeErr == nil || len(u.Raw) == 0 {
		t.Fatalf("ev = %#v, err = %v", ev, err)
	}
	// Odd timestamps do not lose the event.
	ev, err = DecodeEvent([]byte(`{"type":"StasisEnd","timestamp":"yesterday","channel":{"id":"c"}}`))
	if err != nil || ev.(*StasisEnd).Channel.ID != "c" {
		t.Fatalf("ev = %#v, err = %v", ev, err)
	}
}
