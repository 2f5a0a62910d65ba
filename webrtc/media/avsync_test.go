package media

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TestSRStreamFollowsSendTimes: the RTP↔wall mapping is where packets typically go out, unmoved by one packet held
// up and by jittered sending, following a jump to a new source.
func TestSRStreamFollowsSendTimes(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name   string
		rate   uint32
		step   uint32        // ticks per packet
		every  time.Duration // between packets
		jitter time.Duration // each packet sent up to this late
		late   int           // this packet held up by 300 ms (0: none)
		within time.Duration
	}{
		{"steady Opus", 48000, 960, 20 * time.Millisecond, 0, 0, time.Millisecond},
		{"jittered Opus", 48000, 960, 20 * time.Millisecond, 15 * time.Millisecond, 0, 4 * time.Millisecond},
		{"one held packet", 48000, 960, 20 * time.Millisecond, 0, 200, 3 * time.Millisecond},
		{"video frames", 90000, 3000, time.Second / 30, 5 * time.Millisecond, 0, 2 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			st := &srStream{rate: tc.rate}
			ts := uint32(4_294_000_000) // wraps during the run
			var at time.Time
			for i := range 400 {
				at = t0.Add(time.Duration(i) * tc.every)
				sent := at
				if tc.jitter > 0 {
					sent = sent.Add(time.Duration(r.Int64N(int64(tc.jitter))))
				}
				if i == tc.late && i > 0 {
					sent = sent.Add(300 * time.Millisecond)
				}
				st.note(ts+uint32(i)*tc.step, sent)
			}
			// Packets go out jitter/2 late on average: at the last packet's nominal time the clock reads that much
			// less than its timestamp.
			want := ts + 399*tc.step - uint32(int64(tc.jitter/2)*int64(tc.rate)/int64(time.Second))
			got := st.rtpAt(at)
			off := time.Duration(int64(int32(got-want)) * int64(time.Second) / int64(tc.rate))
			if off > tc.within || off < -tc.within {
				t.Errorf("rtpAt is %v off", off)
			}
		})
	}
	st := &srStream{rate: 8000}
	st.note(1000, t0)
	st.note(1160, t0.Add(20*time.Millisecond))
	st.note(500_000, t0.Add(40*time.Millisecond)) // a new source behind the SSRC
	if got := st.rtpAt(t0.Add(40 * time.Millisecond)); got != 500_000 {
		t.Errorf("after a jump rtpAt = %d, want 500000", got)
	}
}

type rtcpSink struct{ pkts []rtcp.Packet }

func (s *rtcpSink) Write(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
	s.pkts = append(s.pkts, pkts...)
	return 0, nil
}

type rtpSink struct{}

func (rtpSink) Write(_ *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
	return len(p), nil
}

// TestAVSyncReportsShareOneClock: the mix's report dates its sound MixDelay earlier than the camera's on the same
// wall clock, so a browser lines a mix packet up with the frame that entered Patchbay at the same time.
func TestAVSyncReportsShareOneClock(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newAVSync(60 * time.Millisecond)
	s.now = func() time.Time { return now }
	sink := &rtcpSink{}
	s.mu.Lock()
	s.writer = sink // not BindRTCPWriter: no loop, reports are sent by hand
	s.mu.Unlock()
	audio := s.BindLocalStream(&interceptor.StreamInfo{SSRC: 1, ClockRate: 48000, MimeType: "audio/opus"}, rtpSink{})
	video := s.BindLocalStream(&interceptor.StreamInfo{SSRC: 2, ClockRate: 90000, MimeType: "video/VP8"}, rtpSink{})
	if s.sendReports(now) {
		t.Fatal("reports before any media")
	}
	for i := range 100 {
		now = now.Add(20 * time.Millisecond)
		if _, err := audio.Write(&rtp.Header{Timestamp: 7000 + uint32(i)*960}, make([]byte, 80), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := video.Write(&rtp.Header{Timestamp: 123 + uint32(i)*1800}, make([]byte, 900), nil); err != nil {
			t.Fatal(err)
		}
	}
	if !s.sendReports(now) || len(sink.pkts) != 2 {
		t.Fatalf("reports: %v", sink.pkts)
	}
	srs := map[uint32]*rtcp.SenderReport{}
	for _, p := range sink.pkts {
		sr := p.(*rtcp.SenderReport)
		srs[sr.SSRC] = sr
	}
	a, v := srs[1], srs[2]
	if a == nil || v == nil {
		t.Fatalf("reports for SSRCs %v", srs)
	}
	if a.RTPTime != 7000+99*960 || v.RTPTime != 123+99*1800 || a.PacketCount != 100 || a.OctetCount != 8000 {
		t.Errorf("audio SR %+v, video SR %+v", a, v)
	}
	ntp := func(x uint64) time.Duration {
		return time.Duration((x>>32)*uint64(time.Second)) + time.Duration((x&0xffffffff)*uint64(time.Second)>>32)
	}
	if d := ntp(v.NTPTime) - ntp(a.NTPTime); d < 59*time.Millisecond || d > 61*time.Millisecond {
		t.Errorf("video NTP − audio NTP = %v, want the mix delay 60 ms", d)
	}
	s.UnbindLocalStream(&interceptor.StreamInfo{SSRC: 1})
	if pk := s.reports(now); len(pk) != 1 {
		t.Errorf("after unbinding the audio: %d reports", len(pk))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSyncMsid(t *testing.T) {
	const audio = "patchbay-abc"
	for _, tc := range []struct{ name, in, want string }{
		{"camera joins the audio's stream first",
			"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:patchbay-abc audio\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:p-1 video-p-1\r\n",
			"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:patchbay-abc audio\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:patchbay-abc video-p-1\r\na=msid:p-1 video-p-1\r\n"},
		{"a screen share stays alone",
			"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:screen-p-1 video-screen-p-1\r\n",
			"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:screen-p-1 video-screen-p-1\r\n"},
		{"no track, no change", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n"},
	} {
		if got := syncMsid(tc.in, audio); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
		if got := syncMsid(syncMsid(tc.in, audio), audio); strings.Count(got, "a=msid:"+audio+" video") > 1 {
			t.Errorf("%s: applied twice adds the audio stream twice", tc.name)
		}
	}
}
