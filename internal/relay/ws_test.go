package relay

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"

	"github.com/patchbay/patchbay/webrtc/media"
)

// fakeMedia stands in for chan_websocket's /media endpoint (unit tests only; the integration tests use Asterisk):
// MEDIA_START in the given format, then it records binary frames, answers GET_STATUS with queueLen, and sends
// whatever is put on toClient.
type fakeMedia struct {
	srv      *httptest.Server
	format   string
	mu       sync.Mutex
	frames   [][]byte
	queueLen int
	toClient chan []byte
	closed   chan struct{}
}

func newFakeMedia(t *testing.T, format string) *fakeMedia {
	f := &fakeMedia{format: format, toClient: make(chan []byte, 16), closed: make(chan struct{})}
	up := websocket.Upgrader{Subprotocols: []string{"media"}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/media/") || websocket.Subprotocols(r)[0] != "media" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		defer close(f.closed)
		var wmu sync.Mutex
		write := func(typ int, b []byte) {
			wmu.Lock()
			defer wmu.Unlock()
			_ = c.WriteMessage(typ, b)
		}
		write(websocket.TextMessage, []byte("MEDIA_START connection_id:x channel:WebSocket/INCOMING/0x1 channel_id:em-1 format:"+
			f.format+" optimal_frame_size:0 ptime:20"))
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case b := <-f.toClient:
					write(websocket.BinaryMessage, b)
				case <-stop:
					return
				}
			}
		}()
		for {
			typ, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			f.mu.Lock()
			if typ == websocket.BinaryMessage {
				f.frames = append(f.frames, b)
			} else if string(b) == "GET_STATUS" {
				q := f.queueLen
				f.mu.Unlock()
				write(websocket.TextMessage, []byte("STATUS channel_id:em-1 queue_length:"+strconv.Itoa(q)+" xon_level:800 xoff_level:900 queue_full:false bulk_media:false media_paused:false"))
				continue
			}
			f.mu.Unlock()
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeMedia) url() string { return "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/media/abc" }

func (f *fakeMedia) got() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.frames...)
}

func (f *fakeMedia) setQueue(n int) {
	f.mu.Lock()
	f.queueLen = n
	f.mu.Unlock()
}

func newWSHarness(t *testing.T, mode media.Mode, f *fakeMedia, o WSOptions) (*WS, *fakeBrowser, *rtpSink) {
	t.Helper()
	sink := newRTPSink(t)
	fb := &fakeBrowser{mode: mode, send: listen(t), to: sink.addr, buf: make([]byte, 1500), ssrc: 7}
	if mode == media.ModePion {
		fb.local = &udpTrack{conn: fb.send, to: sink.addr, buf: make([]byte, 1500), ssrc: 7}
		fb.remote = newChanTrack()
	}
	o.URL = f.url()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := dialWS(ctx, fb, media.Opus, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	return r, fb, sink
}

// rtpSink is "the browser": it reads what the relay sends it.
type rtpSink struct {
	addr netip.AddrPort
	pkts chan rtp.Packet
}

func newRTPSink(t *testing.T) *rtpSink {
	c := listen(t)
	s := &rtpSink{addr: addrOf(c), pkts: make(chan rtp.Packet, 64)}
	go func() {
		b := make([]byte, 1500)
		for {
			n, _, err := c.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			var p rtp.Packet
			if p.Unmarshal(append([]byte(nil), b[:n]...)) == nil {
				s.pkts <- p
			}
		}
	}()
	return s
}

// opusFrame is a 20 ms hybrid fullband frame (TOC config 15, one frame) with a marker byte.
func opusFrame(i byte) []byte { return []byte{15 << 3, i, 0xaa, 0xbb} }

func TestWSCarriesFramesBothWays(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			f := newFakeMedia(t, "opus")
			r, fb, sink := newWSHarness(t, mode, f, WSOptions{})
			// Browser → Asterisk: the payload alone, header extensions and all stripped.
			for i := range 3 {
				p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i)}, Payload: opusFrame(byte(i))}
				if err := p.SetExtension(1, []byte{0xAA}); err != nil {
					t.Fatal(err)
				}
				fb.fromBrowser(t, marshal(t, p))
			}
			waitFor(t, func() bool { return len(f.got()) == 3 })
			for i, b := range f.got() {
				if string(b) != string(opusFrame(byte(i))) {
					t.Fatalf("frame %d toward Asterisk = %x", i, b)
				}
			}
			select {
			case <-r.FirstPacket():
			default:
				t.Fatal("FirstPacket not closed")
			}
			// Asterisk → browser: one RTP packet per frame, sequence +1, timestamp +960 (20 ms at 48 kHz).
			for i := range 3 {
				f.toClient <- opusFrame(10 + byte(i))
				time.Sleep(5 * time.Millisecond)
			}
			var prev rtp.Packet
			for i := range 3 {
				var p rtp.Packet
				select {
				case p = <-sink.pkts:
				case <-time.After(3 * time.Second):
					t.Fatal("no RTP toward the browser")
				}
				if p.Payload[1] != 10+byte(i) {
					t.Fatalf("packet %d payload %x", i, p.Payload)
				}
				if i == 0 && !p.Marker {
					t.Fatal("first packet without marker")
				}
				if i > 0 && (p.SequenceNumber != prev.SequenceNumber+1 || p.Timestamp != prev.Timestamp+960 || p.Marker) {
					t.Fatalf("packet %d: seq %d ts %d marker %v after seq %d ts %d", i, p.SequenceNumber, p.Timestamp, p.Marker, prev.SequenceNumber, prev.Timestamp)
				}
				prev = p
			}
			st := r.Stats()
			if st.ToAsterisk.Packets != 3 || st.ToBrowser.Packets != 3 || st.Lean != (mode == media.ModeLean) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestWSTrimsWhenAsteriskQueueGrows(t *testing.T) {
	f := newFakeMedia(t, "opus")
	f.setQueue(8) // 160 ms behind: Asterisk missed ticks
	r, fb, _ := newWSHarness(t, media.ModeLean, f, WSOptions{StatusEvery: 10 * time.Millisecond})
	waitFor(t, func() bool { return r.Stats().AsteriskQueue == 8 })
	f.setQueue(0)
	for i := range 10 {
		fb.fromBrowser(t, marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111}, Payload: opusFrame(byte(i))}))
	}
	waitFor(t, func() bool { return len(f.got()) == 3 })
	st := r.Stats()
	if st.Trimmed != 7 {
		t.Fatalf("trimmed %d frames, want 7 (a queue of 8 brought back to 1)", st.Trimmed)
	}
	if got := f.got(); got[0][1] != 7 {
		t.Fatalf("first frame sent after trimming is %d, want 7", got[0][1])
	}
}

func TestWSRefusesAnotherFormat(t *testing.T) {
	f := newFakeMedia(t, "ulaw")
	fb := &fakeBrowser{mode: media.ModeLean}
	_, err := dialWS(context.Background(), fb, media.Opus, WSOptions{URL: f.url()})
	if !errors.Is(err, ErrMediaStart) {
		t.Fatalf("err = %v, want ErrMediaStart", err)
	}
	if _, err := dialWS(context.Background(), fb, media.Opus, WSOptions{URL: "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/nope"}); err == nil {
		t.Fatal("dial of a missing media path succeeded")
	}
}

func TestWSCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, mode := range modes {
		for range 3 {
			// A subtest, so that its cleanups (the test's own sockets) run before the count.
			t.Run(mode.String(), func(t *testing.T) {
				f := newFakeMedia(t, "opus")
				r, fb, _ := newWSHarness(t, mode, f, WSOptions{})
				fb.fromBrowser(t, marshal(t, &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: opusFrame(1)}))
				waitFor(t, func() bool { return len(f.got()) == 1 })
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
				if err := r.Start(); !errors.Is(err, ErrClosed) {
					t.Fatalf("Start after Close: %v", err)
				}
				select {
				case <-f.closed: // Asterisk saw the socket close: it hangs the channel up
				case <-time.After(3 * time.Second):
					t.Fatal("media WebSocket still open after Close")
				}
				if fb.handler.Load() != nil {
					t.Fatal("RTP handler still set after Close")
				}
				f.srv.Close()
			})
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines left, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestFrameSamples(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    media.Codec
		p    []byte
		want int
	}{
		{"ulaw", media.PCMU, make([]byte, 160), 160},
		{"SILK 20 ms", media.Opus, []byte{1 << 3}, 960},
		{"SILK 60 ms", media.Opus, []byte{3 << 3}, 2880},
		{"hybrid 10 ms", media.Opus, []byte{14 << 3}, 480},
		{"CELT 2.5 ms", media.Opus, []byte{16 << 3}, 120},
		{"two CELT 10 ms frames", media.Opus, []byte{18<<3 | 1}, 960},
		{"code 3, 3 SILK 20 ms frames", media.Opus, []byte{1<<3 | 3, 3}, 2880},
		{"code 3 without count", media.Opus, []byte{1<<3 | 3}, 960},
		{"code 3, 48 frames: over 120 ms", media.Opus, []byte{3<<3 | 3, 48}, 960},
		{"empty", media.Opus, nil, 960},
	} {
		if got := frameSamples(tc.c, tc.p); got != tc.want {
			t.Errorf("%s: %d samples, want %d", tc.name, got, tc.want)
		}
	}
	if field(`{"event":"STATUS","queue_length":12,"xon_level":800}`, "queue_length") != "12" ||
		field("STATUS channel_id:x queue_length:4 xon_level:800", "queue_length") != "4" ||
		field("MEDIA_START connection_id:a format:opus ptime:20", "format") != "opus" {
		t.Fatal("field parsing")
	}
}
