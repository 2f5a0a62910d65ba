package media

import (
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Lip sync for room browsers with video (issue 16). A member's sound reaches the others through Asterisk's mix, a
// stream with Asterisk's SSRC, clock and timestamps, which has spent longer on the way than the camera the SFU
// forwards at once. Measured in Chromium without anything here, the sound played about 200 ms after the picture:
// the browser had no way to line the two up, since nothing told it how their RTP clocks relate and they were not
// in one MediaStream. Two things fix that:
//   - avSync sends RTCP sender reports for every stream Patchbay sends a video peer (the room's mix and each
//     forwarded camera) on one clock, the time the media entered Patchbay: a camera frame enters as it is
//     forwarded, the mix's sound MixDelay before Asterisk sent it back (its trip through the relay and the mix);
//   - syncMsid puts each forwarded camera in the room audio's MediaStream as well (browsers synchronise the audio
//     and video of one stream: Chrome takes a track's first stream id as its sync group), beside the stream named
//     for its participant that pages map to a tile.
//
// The browser then delays the picture until the sound catches up, as it does for any call with both.

// srInterval is how often sender reports go out (RFC 3550 allows 5 s; browsers line streams up sooner with 1 s).
const srInterval = time.Second

// MixDelay is how long a sound has been on its way from Patchbay into Asterisk's mix and back when Patchbay
// receives it in the mix (the relay's queue into chan_websocket, softmix's 20 ms mixing, the way back): the
// audio's sender reports date it that much earlier than it is sent on. Set from TestRoomQualityLipSync: with
// 60 ms the browser settled with the sound 15–40 ms behind the picture, with 80 ms within −15…+40 ms
// (docs/benchmarks.md).
const MixDelay = 80 * time.Millisecond

// avSync is a video peer's interceptor: sender reports for what Patchbay sends the browser.
type avSync struct {
	interceptor.NoOp

	mu      sync.Mutex
	streams map[uint32]*srStream
	writer  interceptor.RTCPWriter

	start     sync.Once
	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
	now       func() time.Time
	mixDelay  time.Duration
}

func newAVSync(mixDelay time.Duration) *avSync {
	return &avSync{streams: map[uint32]*srStream{}, done: make(chan struct{}), now: time.Now, mixDelay: mixDelay}
}

// avSyncFactory hands pion the one interceptor made for a peer.
type avSyncFactory struct{ s *avSync }

func (f avSyncFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.s, nil }

// srStream is one stream Patchbay sends and the relation of its RTP clock to the wall clock: when its packets
// typically go out for their timestamps, followed smoothly (time constant srSmooth) so that one packet held up by
// a busy scheduler moves nothing, while a source whose clock drifts from the wall clock (Asterisk's mix counts
// samples) is still followed.
type srStream struct {
	ssrc    uint32
	rate    uint32
	audio   bool // the room's mix: dated MixDelay earlier
	have    bool
	firstTS uint32
	lastTS  uint32
	ext     int64   // lastTS − firstTS, extended over wraps
	off     float64 // ns: wall time of firstTS
	offAt   time.Time
	packets uint32
	octets  uint32
}

const (
	srSmooth  = time.Second             // the time constant of the send-time estimate
	srOutlier = 80 * time.Millisecond   // a packet later than this against the estimate counts for no more
	srJump    = 1500 * time.Millisecond // further off than this: a new source behind the SSRC; start over
)

// note records a packet with timestamp ts sent at now (only the first of a frame counts: the others share its
// timestamp and were sent after it).
func (st *srStream) note(ts uint32, now time.Time) {
	if st.have && ts == st.lastTS {
		return
	}
	if !st.have {
		st.have, st.firstTS, st.lastTS, st.ext = true, ts, ts, 0
	} else {
		st.ext += int64(int32(ts - st.lastTS))
		st.lastTS = ts
	}
	o := float64(now.UnixNano() - ticksToNs(st.ext, st.rate))
	d := o - st.off
	switch {
	case st.offAt.IsZero() || d > float64(srJump) || d < -float64(srJump):
		st.off = o
	default:
		d = max(-float64(srOutlier), min(float64(srOutlier), d))
		st.off += d * min(1, float64(now.Sub(st.offAt))/float64(srSmooth))
	}
	st.offAt = now
}

// rtpAt is the stream's RTP timestamp at wall time t.
func (st *srStream) rtpAt(t time.Time) uint32 {
	d := t.UnixNano() - int64(st.off)
	ticks := d/int64(time.Second)*int64(st.rate) + d%int64(time.Second)*int64(st.rate)/int64(time.Second)
	return st.firstTS + uint32(ticks)
}

// ticksToNs converts RTP ticks at rate to nanoseconds without overflowing for days of media.
func ticksToNs(ticks int64, rate uint32) int64 {
	r := int64(rate)
	return ticks/r*int64(time.Second) + ticks%r*int64(time.Second)/r
}

func (s *avSync) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	s.mu.Lock()
	s.writer = w
	s.mu.Unlock()
	s.start.Do(func() {
		s.wg.Add(1)
		go s.loop()
	})
	return w
}

func (s *avSync) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	st := &srStream{ssrc: info.SSRC, rate: info.ClockRate, audio: strings.HasPrefix(strings.ToLower(info.MimeType), "audio/")}
	if st.rate == 0 {
		st.rate = 90000
	}
	s.mu.Lock()
	s.streams[info.SSRC] = st
	s.mu.Unlock()
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		now := s.now()
		s.mu.Lock()
		st.note(h.Timestamp, now)
		st.packets++
		st.octets += uint32(len(payload))
		s.mu.Unlock()
		return w.Write(h, payload, a)
	})
}

func (s *avSync) UnbindLocalStream(info *interceptor.StreamInfo) {
	s.mu.Lock()
	delete(s.streams, info.SSRC)
	s.mu.Unlock()
}

func (s *avSync) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	s.wg.Wait()
	return nil
}

// loop sends the reports: the first soon after media starts, then one a second. It ends with Close (pion closes
// a peer's interceptors when the peer closes).
func (s *avSync) loop() {
	defer s.wg.Done()
	t := time.NewTicker(srInterval / 4)
	defer t.Stop()
	var next time.Time
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			if now.Before(next) {
				continue
			}
			if s.sendReports(now) {
				next = now.Add(srInterval)
			}
		}
	}
}

// reports builds a sender report for each stream that has sent something.
func (s *avSync) reports(now time.Time) []rtcp.Packet {
	s.mu.Lock()
	defer s.mu.Unlock()
	pkts := make([]rtcp.Packet, 0, len(s.streams))
	for _, st := range s.streams {
		if !st.have {
			continue
		}
		// The RTP clock now; its media entered Patchbay now for a forwarded camera, MixDelay earlier for the mix.
		wall := now
		if st.audio {
			wall = now.Add(-s.mixDelay)
		}
		sec, frac := ntpTime(wall)
		pkts = append(pkts, &rtcp.SenderReport{SSRC: st.ssrc, NTPTime: uint64(sec)<<32 | uint64(frac), RTPTime: st.rtpAt(now),
			PacketCount: st.packets, OctetCount: st.octets})
	}
	return pkts
}

// sendReports sends the reports; false if there were none to send.
func (s *avSync) sendReports(now time.Time) bool {
	pkts := s.reports(now)
	s.mu.Lock()
	w := s.writer
	s.mu.Unlock()
	if len(pkts) == 0 || w == nil {
		return false
	}
	_, _ = w.Write(pkts, interceptor.Attributes{}) // a lost report is replaced by the next
	return true
}

// syncMsid puts every forwarded camera of an offer to a video peer into the stream of the peer's room audio too,
// as its first a=msid line (the sync group browsers use), keeping its own stream (the participant id) second for
// the page's tile. Screen shares have no sound to wait for and stay as they are.
func syncMsid(sdp, audioStream string) string {
	lines := strings.SplitAfter(sdp, "\n")
	out := make([]string, 0, len(lines)+4)
	video, synced := false, false // in a video section; its track is in the audio's stream already
	for _, l := range lines {
		if strings.HasPrefix(l, "m=") {
			video, synced = strings.HasPrefix(l, "m=video"), false
		}
		if rest, ok := strings.CutPrefix(l, "a=msid:"); ok && video {
			stream, track, _ := strings.Cut(strings.TrimRight(rest, "\r\n"), " ")
			switch {
			case stream == audioStream:
				synced = true
			case !synced && stream != "-" && !strings.HasPrefix(stream, ScreenStreamPrefix) && track != "":
				out = append(out, "a=msid:"+audioStream+" "+track+"\r\n")
				synced = true
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}
