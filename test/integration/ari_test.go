//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/patchbay/patchbay/ari"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
)

// ariTestClient builds a client for a with a short backoff cap so reconnects are quick.
func ariTestClient(t *testing.T, url, user, pass, app string) *ari.Client {
	t.Helper()
	c, err := ari.New(ari.Config{
		URL: url, Username: user, Password: pass, Application: app,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		PingInterval: 2 * time.Second, MaxBackoff: time.Second,
	})
	if err != nil {
		t.Fatalf("ari.New: %v", err)
	}
	return c
}

// ariWait reads sub until match accepts an event.
func ariWait(t *testing.T, sub *ari.Subscription, timeout time.Duration, what string, match func(ari.Event) bool) ari.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-sub.Events():
			if !ok {
				t.Fatalf("subscription closed while waiting for %s", what)
			}
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s within %v", what, timeout)
			return nil
		}
	}
}

// ariGoroutines counts goroutines running code of package ari.
func ariGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/patchbay/patchbay/ari.") {
			n++
			leaked = append(leaked, g)
		}
	}
	return n, strings.Join(leaked, "\n\n")
}

// ariRun runs c.Run in a goroutine owned by the test. The returned stop
// cancels it, waits for Run to return and checks that it returned nil; it is
// idempotent and also runs at cleanup.
func ariRun(t *testing.T, c *ari.Client) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil after cancel", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5 s of cancel")
		}
	})
	t.Cleanup(stop)
	return stop
}

// rtpPacket builds an RTP packet: version 2, PT 0 (PCMU).
func rtpPacket(seq uint16, ts, ssrc uint32, marker bool, payload []byte) []byte {
	p := make([]byte, 12+len(payload))
	p[0] = 0x80
	p[1] = 0 // PT 0
	if marker {
		p[1] |= 0x80
	}
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], ts)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	copy(p[12:], payload)
	return p
}

// rtpPayload returns the payload type and payload of an RTP packet.
func rtpPayload(p []byte) (pt byte, payload []byte, err error) {
	if len(p) < 12 || p[0]>>6 != 2 {
		return 0, nil, errors.New("not RTP v2")
	}
	off := 12 + 4*int(p[0]&0x0f)
	if p[0]&0x10 != 0 { // header extension
		if len(p) < off+4 {
			return 0, nil, errors.New("short extension")
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(p[off+2:]))
	}
	end := len(p)
	if p[0]&0x20 != 0 { // padding
		end -= int(p[end-1])
	}
	if off > end {
		return 0, nil, errors.New("short packet")
	}
	return p[1] & 0x7f, p[off:end], nil
}

// toneFrames makes n 20 ms PCMU frames of a 1000 Hz tone. Each frame has its
// own amplitude and phase so no two payloads are alike and an echo can be
// matched frame by frame.
func toneFrames(t *testing.T, n int) [][]byte {
	frames := make([][]byte, n)
	seen := map[string]bool{}
	for i := range frames {
		amp := 4000.0 + 300.0*float64(i)
		phase := 0.37 * float64(i)
		f := make([]byte, 160)
		for s := range f {
			v := amp * math.Sin(2*math.Pi*1000*float64(s)/8000+phase)
			f[s] = audio.MulawEncode(int16(v))
		}
		if seen[string(f)] {
			t.Fatalf("test tone frame %d repeats an earlier one", i)
		}
		seen[string(f)] = true
		frames[i] = f
	}
	return frames
}

func TestARI(t *testing.T) {
	a := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	baseAri, _ := ariGoroutines()

	c := ariTestClient(t, a.ARIURL(), a.ARIUser, a.ARIPassword, a.App)
	sub := c.Subscribe(ari.Filter{Name: "ari-test"})
	defer sub.Close()

	stop := ariRun(t, c)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}

	// Everything created below is deleted at the end, whatever happens.
	var chans, bridges []string
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		for _, id := range chans {
			if err := c.Channel(id).Hangup(cctx, ""); err != nil && !ari.IsNotFound(err) {
				t.Errorf("cleanup: %v", err)
			}
		}
		for _, id := range bridges {
			if err := c.Bridge(id).Delete(cctx); err != nil && !ari.IsNotFound(err) {
				t.Errorf("cleanup: %v", err)
			}
		}
		if out, err := a.CLI(cctx, "core show channels count"); err == nil && !strings.Contains(out, "0 active channels") {
			t.Errorf("channels left in Asterisk after cleanup:\n%s", out)
		}
	}()

	t.Run("app registered", func(t *testing.T) {
		apps, err := c.Applications().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, ap := range apps {
			names = append(names, ap.Name)
		}
		if !slices.Contains(names, a.App) {
			t.Fatalf("GET /applications = %v, want %s listed", names, a.App)
		}
		info, err := c.Asterisk().Info(ctx)
		if err != nil || !strings.HasPrefix(info.System.Version, "22.") {
			t.Fatalf("Asterisk info = %+v, %v", info, err)
		}
		if err := c.Asterisk().SetVariable(ctx, "PATCHBAY_ARI_TEST", "ok"); err != nil {
			t.Fatal(err)
		}
		if v, err := c.Asterisk().Variable(ctx, "PATCHBAY_ARI_TEST"); err != nil || v != "ok" {
			t.Fatalf("global variable = %q, %v", v, err)
		}
		if _, err := c.Channel("no-such-channel").Get(ctx); !ari.IsNotFound(err) {
			t.Fatalf("Get of a missing channel: %v, want not found", err)
		}
	})

	localID := ari.NewID()
	t.Run("originate StasisStart", func(t *testing.T) {
		chSub := c.Subscribe(ari.Filter{Name: "local", IDs: []string{localID}, Types: []string{ari.TypeStasisStart}})
		defer chSub.Close()
		start := time.Now()
		ch, err := c.Channels().Originate(ctx, ari.OriginateRequest{
			Endpoint: "Local/600@internal", App: a.App, AppArgs: "ari-test", Formats: "ulaw", ChannelID: localID,
		})
		if err != nil {
			t.Fatalf("originate: %v", err)
		}
		chans = append(chans, ch.ID)
		ev := ariWait(t, chSub, 5*time.Second, "StasisStart", func(ari.Event) bool { return true }).(*ari.StasisStart)
		t.Logf("MEASURED originate→StasisStart: %v", time.Since(start).Round(10*time.Microsecond))
		if ev.Channel.ID != localID || !slices.Equal(ev.Args, []string{"ari-test"}) {
			t.Fatalf("StasisStart = %+v", ev)
		}
	})

	bridgeID, emID := ari.NewID(), ari.NewID()
	t.Run("externalMedia echo bit-exact", func(t *testing.T) {
		udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer udp.Close()

		t0 := time.Now()
		if _, err := c.Bridges().Create(ctx, ari.BridgeRequest{ID: bridgeID, Type: "mixing", Name: "ari-test"}); err != nil {
			t.Fatal(err)
		}
		bridges = append(bridges, bridgeID)
		t1 := time.Now()
		em, err := c.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{
			App: a.App, ExternalHost: udp.LocalAddr().String(), Format: "ulaw", ChannelID: emID,
		})
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, em.Channel.ID)
		t2 := time.Now()
		if em.Channel.ID != emID || em.LocalAddress != "127.0.0.1" || em.LocalPort == 0 {
			t.Fatalf("externalMedia = %+v", em)
		}
		if err := c.Bridge(bridgeID).AddChannel(ctx, ari.AddChannelOptions{}, localID, emID); err != nil {
			t.Fatal(err)
		}
		t3 := time.Now()
		t.Logf("MEASURED bridge create %v, externalMedia %v, addChannel(2) %v",
			t1.Sub(t0).Round(10*time.Microsecond), t2.Sub(t1).Round(10*time.Microsecond), t3.Sub(t2).Round(10*time.Microsecond))
		br, err := c.Bridge(bridgeID).Get(ctx)
		if err != nil || len(br.Channels) != 2 || br.BridgeClass != "stasis" {
			t.Fatalf("bridge = %+v, %v", br, err)
		}
		t.Logf("bridge as Asterisk reports it: technology=%s class=%s creator=%q type=%s", br.Technology, br.BridgeClass, br.Creator, br.BridgeType)

		dst, err := net.ResolveUDPAddr("udp4", em.LocalAddrPort())
		if err != nil {
			t.Fatal(err)
		}
		frames := toneFrames(t, 50)
		sentAt := make([]time.Time, len(frames))
		type rx struct {
			payload []byte
			at      time.Time
		}
		got := make(chan rx, 256)
		go func() { // owned by this subtest: ends when udp is closed
			defer close(got)
			buf := make([]byte, 1500)
			for {
				n, from, err := udp.ReadFromUDP(buf)
				if err != nil {
					return
				}
				if !from.IP.Equal(dst.IP) || from.Port != dst.Port {
					continue
				}
				pt, pl, err := rtpPayload(buf[:n])
				if err != nil || pt != 0 {
					continue
				}
				got <- rx{bytes.Clone(pl), time.Now()}
			}
		}()
		ssrc := uint32(time.Now().UnixNano())
		tick := time.NewTicker(20 * time.Millisecond)
		for i, f := range frames {
			<-tick.C
			sentAt[i] = time.Now()
			if _, err := udp.WriteToUDP(rtpPacket(uint16(1000+i), uint32(i*160), ssrc, i == 0, f), dst); err != nil {
				t.Fatal(err)
			}
		}
		tick.Stop()
		time.Sleep(500 * time.Millisecond)
		udp.Close()

		// The echo must be the sent sequence itself, bit for bit, possibly
		// missing a few frames at the start while the path settles.
		var rxs []rx
		for r := range got {
			rxs = append(rxs, r)
		}
		if len(rxs) == 0 {
			t.Fatal("nothing came back from Asterisk")
		}
		k := slices.IndexFunc(frames, func(f []byte) bool { return bytes.Equal(f, rxs[0].payload) })
		if k < 0 || k > 5 {
			t.Fatalf("first echoed payload is frame %d of the sent ones (-1: none): transcoded or wrong stream", k)
		}
		if len(rxs) != len(frames)-k {
			t.Errorf("got %d packets back, want %d (frames %d..49)", len(rxs), len(frames)-k, k)
		}
		var lat []time.Duration
		for j, r := range rxs {
			if k+j >= len(frames) || !bytes.Equal(r.payload, frames[k+j]) {
				t.Fatalf("echoed packet %d differs from sent frame %d", j, k+j)
			}
			lat = append(lat, r.at.Sub(sentAt[k+j]))
		}
		matched := len(rxs)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("MEASURED echo: %d/50 frames bit-exact in order (first %d missing), latency p50 %v max %v",
			matched, k, lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
	})

	t.Run("bridge verbs, recordings, websocket media", func(t *testing.T) {
		if p, err := c.Asterisk().Ping(ctx); err != nil || p.Ping != "pong" {
			t.Errorf("ping = %+v, %v", p, err)
		}
		brSub := c.Bridge(bridgeID).Subscribe(ari.TypePlaybackStarted, ari.TypePlaybackFinished,
			ari.TypeRecordingStarted, ari.TypeRecordingFinished, ari.TypeRecordingFailed, ari.TypeChannelLeftBridge, ari.TypeChannelEnteredBridge)
		defer brSub.Close()
		br := c.Bridge(bridgeID)
		pbID := ari.NewID()
		if _, err := br.Play(ctx, ari.PlayOptions{Media: []string{"tone:440"}, PlaybackID: pbID}); err != nil {
			t.Fatal(err)
		}
		ariWait(t, brSub, 5*time.Second, "PlaybackStarted on bridge", func(ev ari.Event) bool { return ev.EventType() == ari.TypePlaybackStarted })
		if err := c.Playbacks().Control(ctx, pbID, "pause"); err != nil {
			t.Errorf("pause playback: %v", err)
		}
		if err := c.Playbacks().Stop(ctx, pbID); err != nil {
			t.Fatal(err)
		}
		ariWait(t, brSub, 5*time.Second, "PlaybackFinished on bridge", func(ev ari.Event) bool { return ev.EventType() == ari.TypePlaybackFinished })

		name := "pb-test-" + ari.NewID()
		if _, err := br.Record(ctx, ari.RecordOptions{Name: name, Format: "wav", MaxDuration: time.Second}); err != nil {
			t.Fatal(err)
		}
		ariWait(t, brSub, 5*time.Second, "RecordingStarted", func(ev ari.Event) bool { return ev.EventType() == ari.TypeRecordingStarted })
		if live, err := c.Recordings().Live(ctx, name); err != nil || live.State != "recording" {
			t.Errorf("live recording = %+v, %v", live, err)
		}
		if err := c.Recordings().Stop(ctx, name); err != nil {
			t.Fatal(err)
		}
		ariWait(t, brSub, 5*time.Second, "RecordingFinished", func(ev ari.Event) bool { return ev.EventType() == ari.TypeRecordingFinished })
		stored, err := c.Recordings().ListStored(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(stored, func(r ari.StoredRecording) bool { return r.Name == name }) {
			t.Errorf("stored recordings %v lack %s", stored, name)
		}
		if r, err := c.Recordings().Stored(ctx, name); err != nil || r.Format != "wav" {
			t.Errorf("stored recording = %+v, %v", r, err)
		}
		if err := c.Recordings().DeleteStored(ctx, name); err != nil {
			t.Errorf("delete recording: %v", err)
		}
		if _, err := c.Recordings().Stored(ctx, name); !ari.IsNotFound(err) {
			t.Errorf("recording after delete: %v", err)
		}

		if err := br.RemoveChannel(ctx, emID); err != nil {
			t.Fatal(err)
		}
		ariWait(t, brSub, 5*time.Second, "ChannelLeftBridge", func(ev ari.Event) bool { return ev.EventType() == ari.TypeChannelLeftBridge })
		if err := br.AddChannel(ctx, ari.AddChannelOptions{}, emID); err != nil {
			t.Fatal(err)
		}

		if app, err := c.Applications().Subscribe(ctx, a.App, "bridge:"+bridgeID); err != nil || !slices.Contains(app.BridgeIDs, bridgeID) {
			t.Errorf("subscribe to bridge = %+v, %v", app, err)
		}

		wsID := ari.NewID()
		wsSub := c.Channel(wsID).Subscribe(ari.TypeStasisStart)
		defer wsSub.Close()
		wsm, err := c.Channels().ExternalMedia(ctx, ari.ExternalMediaRequest{App: a.App, Format: "ulaw", ChannelID: wsID,
			Transport: "websocket", Encapsulation: "none", ConnectionType: "server"})
		if err != nil {
			t.Fatalf("websocket externalMedia: %v", err)
		}
		chans = append(chans, wsm.Channel.ID)
		if wsm.ConnectionID == "" {
			t.Errorf("websocket externalMedia without MEDIA_WEBSOCKET_CONNECTION_ID: %+v", wsm.Channel.ChannelVars)
		}
		// The channel enters Stasis once we connect to /media/<id>.
		mediaURL := strings.Replace(a.ARIURL(), "http://", "ws://", 1) + "/media/" + wsm.ConnectionID
		mconn, resp, err := (&websocket.Dialer{Subprotocols: []string{"media"}}).DialContext(ctx, mediaURL, nil)
		if err != nil {
			t.Fatalf("connect media WebSocket %s: %v (%v)", mediaURL, err, resp)
		}
		defer mconn.Close()
		ariWait(t, wsSub, 5*time.Second, "StasisStart of websocket media channel", func(ari.Event) bool { return true })
		if err := c.Channel(wsm.Channel.ID).Hangup(ctx, ""); err != nil {
			t.Errorf("hang up websocket media channel: %v", err)
		}
	})

	t.Run("channel verbs, DTMF and playback", func(t *testing.T) {
		id := ari.NewID()
		chSub := c.Channel(id).Subscribe(ari.TypeStasisStart, ari.TypePlaybackStarted, ari.TypePlaybackFinished, ari.TypeChannelDestroyed)
		defer chSub.Close()
		if _, err := c.Channels().Originate(ctx, ari.OriginateRequest{Endpoint: "Local/602@internal", App: a.App, Formats: "ulaw", ChannelID: id}); err != nil {
			t.Fatal(err)
		}
		chans = append(chans, id)
		ariWait(t, chSub, 5*time.Second, "StasisStart", func(ev ari.Event) bool { return ev.EventType() == ari.TypeStasisStart })
		h := c.Channel(id)
		for name, call := range map[string]func(context.Context) error{
			"answer": h.Answer, "ring": h.Ring, "ring stop": h.RingStop, "hold": h.Hold, "unhold": h.Unhold,
			"mute":    func(ctx context.Context) error { return h.Mute(ctx, "in") },
			"unmute":  func(ctx context.Context) error { return h.Unmute(ctx, "in") },
			"set var": func(ctx context.Context) error { return h.SetVariable(ctx, "PB_TEST", "42") },
		} {
			if err := call(ctx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		if v, err := h.Variable(ctx, "PB_TEST"); err != nil || v != "42" {
			t.Errorf("channel variable = %q, %v", v, err)
		}
		pbID := ari.NewID()
		pb, err := h.Play(ctx, ari.PlayOptions{Media: []string{"tone:1000"}, PlaybackID: pbID})
		if err != nil || pb.ID != pbID {
			t.Fatalf("play = %+v, %v", pb, err)
		}
		ariWait(t, chSub, 5*time.Second, "PlaybackStarted", func(ev ari.Event) bool { return ev.EventType() == ari.TypePlaybackStarted })
		if got, err := c.Playbacks().Get(ctx, pbID); err != nil || got.State != "playing" {
			t.Errorf("playback = %+v, %v", got, err)
		}
		if err := c.Playbacks().Stop(ctx, pbID); err != nil {
			t.Fatal(err)
		}
		ariWait(t, chSub, 5*time.Second, "PlaybackFinished", func(ev ari.Event) bool { return ev.EventType() == ari.TypePlaybackFinished })

		// Extension 602 reads 4 digits and stores them in the global LAST_DTMF_READ.
		if err := h.SendDTMF(ctx, "4711", ari.DTMFOptions{Duration: 100 * time.Millisecond, Between: 100 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			v, err := c.Asterisk().Variable(ctx, "LAST_DTMF_READ")
			if err == nil && v == "4711" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("LAST_DTMF_READ = %q, %v; want 4711", v, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		d := ariWait(t, chSub, 5*time.Second, "ChannelDestroyed", func(ev ari.Event) bool { return ev.EventType() == ari.TypeChannelDestroyed }).(*ari.ChannelDestroyed)
		t.Logf("602 hung up after the digits: cause %d %q", d.Cause, d.CauseTxt)
		if _, err := h.Get(ctx); !ari.IsNotFound(err) {
			t.Errorf("channel after hangup: %v", err)
		}
	})

	t.Run("orphans", func(t *testing.T) {
		owned, err := c.Owned(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, ch := range owned.Channels {
			ids = append(ids, ch.ID)
		}
		for _, b := range owned.Bridges {
			ids = append(ids, b.ID)
		}
		for _, want := range []string{localID, emID, bridgeID} {
			if !slices.Contains(ids, want) {
				t.Errorf("Owned = %v lacks %s", ids, want)
			}
		}
		orph, err := c.Orphans(ctx)
		if err != nil || len(orph.Channels)+len(orph.Bridges) != 0 {
			t.Errorf("Orphans = %+v, %v; want none (everything is tracked)", orph, err)
		}
	})

	t.Run("socket loss reconciles", func(t *testing.T) {
		// A second client reaches Asterisk through a TCP relay we can cut, like
		// a NAT that drops the flow. While it is cut, a channel is hung up and
		// a bridge deleted: no event can reach the client, so only Reconciled
		// can tell it.
		px := newCuttableProxy(t, strings.TrimPrefix(a.ARIURL(), "http://"))
		app2 := a.App + "-relay"
		c2 := ariTestClient(t, "http://"+px.addr(), a.ARIUser, a.ARIPassword, app2)
		sub2 := c2.Subscribe(ari.Filter{Name: "relay"})
		defer sub2.Close()
		stop2 := ariRun(t, c2)
		defer stop2()
		if err := c2.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		goneID, aliveID, brID := ari.NewID(), ari.NewID(), ari.NewID()
		for _, id := range []string{goneID, aliveID} {
			if _, err := c2.Channels().Originate(ctx, ari.OriginateRequest{Endpoint: "Local/601@internal", App: app2, Formats: "ulaw", ChannelID: id}); err != nil {
				t.Fatal(err)
			}
			chans = append(chans, id)
			ariWait(t, sub2, 5*time.Second, "StasisStart "+id, func(ev ari.Event) bool {
				st, ok := ev.(*ari.StasisStart)
				return ok && st.Channel.ID == id
			})
		}
		if _, err := c2.Bridges().Create(ctx, ari.BridgeRequest{ID: brID}); err != nil {
			t.Fatal(err)
		}
		bridges = append(bridges, brID)

		px.cut()
		ariWait(t, sub2, 5*time.Second, "Disconnected", func(ev ari.Event) bool { return ev.EventType() == ari.TypeDisconnected })
		if err := c.Channel(goneID).Hangup(ctx, "normal"); err != nil {
			t.Fatal(err)
		}
		if err := c.Bridge(brID).Delete(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // let the teardown events fire into the void
		cutEnd := time.Now()
		px.restore()
		rec := ariWait(t, sub2, 10*time.Second, "Reconciled", func(ev ari.Event) bool {
			if e, ok := ev.(*ari.StasisEnd); ok && e.Channel.ID == goneID {
				t.Errorf("StasisEnd of %s delivered although the socket was cut", goneID)
			}
			return ev.EventType() == ari.TypeReconciled
		}).(*ari.Reconciled)
		t.Logf("MEASURED relay restored → Reconciled in %v: %+v", time.Since(cutEnd).Round(time.Millisecond), rec)
		if rec.Err != nil || !slices.Contains(rec.GoneChannels, goneID) || !slices.Contains(rec.GoneBridges, brID) ||
			!slices.Contains(rec.AliveChannels, aliveID) || slices.Contains(rec.AliveChannels, goneID) {
			t.Errorf("Reconciled = %+v; want gone %s and bridge %s, alive %s", rec, goneID, brID, aliveID)
		}
		// Asterisk hangs up a call that arrives for a disconnected app (Stasis
		// fails), so orphans come from a Patchbay restart: a fresh client of
		// the same app finds aliveID in Stasis, untracked and unclaimed, and its
		// first sweep (at connect) hangs it up.
		stop2()
		c3 := ariTestClient(t, a.ARIURL(), a.ARIUser, a.ARIPassword, app2)
		swept := c3.Subscribe(ari.Filter{Name: "swept", Types: []string{ari.TypeSwept}})
		defer swept.Close()
		defer ariRun(t, c3)()
		if err := c3.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		// The orphan entered Stasis moments ago: a sweep spares channels the dialplan handed over until they are
		// ari.DefaultSweepMinAge old (their StasisStart may still be on its way to a call), then takes it.
		deadline := time.After(ari.DefaultSweepMinAge + 3*time.Second)
		for done := false; !done; {
			select {
			case ev := <-swept.Events():
				rep := ev.(*ari.Swept).Report
				t.Logf("MEASURED a restarted client's sweep: %d channels, %d bridges in %v", rep.Channels, rep.Bridges, rep.Took)
				done = rep.Channels == 1
			case <-deadline:
				t.Fatalf("the orphan %s was not swept within %v", aliveID, ari.DefaultSweepMinAge+3*time.Second)
			}
		}
		// A hang-up is queued on the channel: a Local channel may still be listed for a moment after the request.
		gone := time.Now().Add(3 * time.Second)
		for {
			_, err := c3.Channel(aliveID).Get(ctx)
			if ari.IsNotFound(err) {
				break
			}
			if time.Now().After(gone) {
				t.Errorf("orphan %s still there 3 s after the sweep hung it up: %v", aliveID, err)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("restart reconciles", func(t *testing.T) {
		recSub := c.Subscribe(ari.Filter{Name: "restart", Types: []string{ari.TypeReconciled, ari.TypeDisconnected,
			ari.TypeStasisEnd, ari.TypeChannelDestroyed, ari.TypeBridgeDestroyed}})
		defer recSub.Close()
		restartStart := time.Now()
		a.Restart(t)
		up := time.Now()
		var gone []string
		ev := ariWait(t, recSub, 10*time.Second, "Reconciled", func(ev ari.Event) bool {
			switch e := ev.(type) {
			case *ari.StasisEnd, *ari.ChannelDestroyed, *ari.BridgeDestroyed:
				// Asterisk may report some teardown before its socket closes.
				gone = append(gone, append(e.ChannelIDs(), e.BridgeIDs()...)...)
				t.Logf("before disconnect: %s %v%v", e.EventType(), e.ChannelIDs(), e.BridgeIDs())
			}
			return ev.EventType() == ari.TypeReconciled
		}).(*ari.Reconciled)
		t.Logf("MEASURED Asterisk restart took %v; Reconciled %v after ARI was back (%v after restart began)",
			up.Sub(restartStart).Round(time.Millisecond), time.Since(up).Round(time.Millisecond), time.Since(restartStart).Round(time.Millisecond))
		t.Logf("Reconciled: alive %v/%v gone %v/%v unknown %v/%v err %v", ev.AliveChannels, ev.AliveBridges,
			ev.GoneChannels, ev.GoneBridges, ev.UnknownChannels, ev.UnknownBridges, ev.Err)
		if ev.Err != nil {
			t.Fatalf("Reconciled.Err: %v", ev.Err)
		}
		gone = append(gone, ev.GoneChannels...)
		gone = append(gone, ev.GoneBridges...)
		for _, id := range []string{localID, emID, bridgeID} {
			if !slices.Contains(gone, id) {
				t.Errorf("%s not reported gone (Reconciled or teardown events): %v", id, gone)
			}
		}
		if len(ev.AliveChannels)+len(ev.AliveBridges) != 0 {
			t.Errorf("resources reported alive after a restart: %v %v", ev.AliveChannels, ev.AliveBridges)
		}
		if tc, tb := c.Tracked(); len(tc)+len(tb) != 0 {
			t.Errorf("still tracked after restart: %v %v", tc, tb)
		}
		// The app must be registered again on the new Asterisk.
		if _, err := c.Applications().Get(ctx, a.App); err != nil {
			t.Errorf("app not registered after reconnect: %v", err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		const bad = "definitely-wrong-password"
		wc := ariTestClient(t, a.ARIURL(), a.ARIUser, bad, a.App)
		_, err := wc.Asterisk().Info(ctx)
		if !errors.Is(err, ari.ErrUnauthorized) {
			t.Fatalf("Info with wrong password: %v, want ErrUnauthorized", err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		runErr := wc.Run(rctx)
		for _, e := range []error{err, runErr} {
			if e == nil || !errors.Is(e, ari.ErrUnauthorized) {
				t.Errorf("error %v is not ErrUnauthorized", e)
				continue
			}
			msg := e.Error()
			if !strings.Contains(msg, "401") || !strings.Contains(msg, "ari.conf") || strings.Contains(msg, bad) || strings.Contains(msg, a.ARIPassword) {
				t.Errorf("unclear or leaking error: %s", msg)
			}
			t.Logf("wrong password error: %s", msg)
		}
	})

	stop()
	for _, id := range chans { // gone after the restart; a fresh instance must say so
		if _, err := c.Channel(id).Get(ctx); !ari.IsNotFound(err) {
			t.Errorf("channel %s after restart: %v", id, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, stacks := ariGoroutines()
		if n <= baseAri {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines of package ari still running after Run returned:\n%s", n-baseAri, stacks)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestARIUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	url := "http://" + addr
	c := ariTestClient(t, url, "patchbay", "some-secret", "patchbay")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = c.Asterisk().Ping(ctx)
	if !errors.Is(err, ari.ErrUnreachable) {
		t.Fatalf("Ping: %v, want ErrUnreachable", err)
	}
	msg := err.Error()
	for _, want := range []string{"not reachable", url, "http.conf"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "some-secret") {
		t.Errorf("password in error: %s", msg)
	}
	t.Logf("unreachable error: %s", msg)

	// Run keeps retrying (Asterisk may be starting) and stops cleanly with ctx.
	start := time.Now()
	if err := c.Run(ctx); err != nil {
		t.Errorf("Run = %v, want nil when ctx ends", err)
	}
	if time.Since(start) < 2*time.Second {
		t.Errorf("Run gave up after %v instead of retrying until ctx ended", time.Since(start))
	}
	if err := c.WaitConnected(ctx); err == nil {
		t.Error("WaitConnected succeeded with nothing listening")
	}
}

// cuttableProxy relays TCP to target until cut: then it closes every relayed
// connection and refuses new ones until restore.
type cuttableProxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newCuttableProxy(t *testing.T, target string) *cuttableProxy {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttableProxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *cuttableProxy) addr() string { return p.ln.Addr().String() }

func (p *cuttableProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp4", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *cuttableProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

func (p *cuttableProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *cuttableProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
