package media

import (
	"testing"

	"github.com/pion/sdp/v3"
)

// TestOfferedVideo: the screen section is the offer's second video section; H.264 counts only as constrained
// baseline with packetization-mode 1, in every video section.
func TestOfferedVideo(t *testing.T) {
	const head = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
	video := func(mid, fmtps string) string {
		return "m=video 9 UDP/TLS/RTP/SAVPF 96 102 104\r\na=mid:" + mid + "\r\na=rtpmap:96 VP8/90000\r\n" +
			"a=rtpmap:102 H264/90000\r\na=rtpmap:104 H264/90000\r\n" + fmtps
	}
	const cb1 = "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
	const cb0 = "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n"
	const base1 = "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n"
	const main1 = "a=fmtp:104 packetization-mode=1;profile-level-id=4d001f\r\n"
	for _, tc := range []struct {
		name  string
		offer string
		mids  []string
		h264  bool
	}{
		{"audio only", head, nil, false},
		{"vp8 only", head + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n", []string{"1"}, false},
		{"constrained baseline mode 1", head + video("1", cb0+base1) + video("2", cb1), []string{"1", "2"}, false},
		{"both sections", head + video("1", cb1) + video("2", cb1+main1), []string{"1", "2"}, true},
		{"baseline is not constrained baseline", head + video("1", base1), []string{"1"}, false},
		{"main profile", head + video("1", main1), []string{"1"}, false},
		{"rejected section", head + video("1", cb1) + "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n", []string{"1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mids, h264, err := offeredVideo(tc.offer)
			if err != nil {
				t.Fatal(err)
			}
			if len(mids) != len(tc.mids) || (len(mids) > 0 && mids[len(mids)-1] != tc.mids[len(tc.mids)-1]) || h264 != tc.h264 {
				t.Fatalf("offeredVideo = %v %v, want %v %v", mids, h264, tc.mids, tc.h264)
			}
		})
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(head + video("1", cb1)); err != nil || !offersH264(sd.MediaDescriptions[1]) {
		t.Fatalf("offersH264 of a constrained baseline section: %v", err)
	}
}
