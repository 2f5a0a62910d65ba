package sfu

import (
	"testing"

	"github.com/patchbay/patchbay/webrtc/media"
)

// TestRoomCodec: H.264 while every member can, VP8 for good from the first that cannot.
func TestRoomCodec(t *testing.T) {
	for _, tc := range []struct {
		name  string
		joins []bool // each member's H.264 support, in joining order
		want  media.VideoCodec
	}{
		{"one chromium", []bool{true}, media.CodecH264},
		{"two chromiums", []bool{true, true}, media.CodecH264},
		{"firefox first", []bool{false, true}, media.CodecVP8},
		{"firefox joins later", []bool{true, true, false}, media.CodecVP8},
		{"chromium after the fallback", []bool{true, false, true}, media.CodecVP8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c media.VideoCodec
			for _, h := range tc.joins {
				c = roomCodec(c, h)
			}
			if c != tc.want {
				t.Fatalf("room codec after %v = %q, want %q", tc.joins, c, tc.want)
			}
		})
	}
}
