package media

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Law is a G.711 companding law, the only audio Patchbay forwards.
type Law uint8

// The two G.711 laws, by their static RTP payload types.
const (
	PCMU Law = 0
	PCMA Law = 8
)

// PayloadType is the static RTP payload type of the law.
func (l Law) PayloadType() uint8 { return uint8(l) }

// Format is the Asterisk format name for externalMedia (ulaw or alaw).
func (l Law) Format() string {
	if l == PCMA {
		return "alaw"
	}
	return "ulaw"
}

func (l Law) String() string {
	if l == PCMA {
		return "PCMA"
	}
	return "PCMU"
}

// MimeType is pion's MIME type for the law.
func (l Law) MimeType() string {
	if l == PCMA {
		return webrtc.MimeTypePCMA
	}
	return webrtc.MimeTypePCMU
}

// Codec returns the pion codec parameters for the law.
func (l Law) Codec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: l.MimeType(), ClockRate: 8000, Channels: 1},
		PayloadType:        webrtc.PayloadType(l.PayloadType()),
	}
}

// ParseLaw maps "ulaw"/"pcmu" and "alaw"/"pcma" (any case) to a Law.
func ParseLaw(s string) (Law, error) {
	switch strings.ToLower(s) {
	case "ulaw", "pcmu", "audio/pcmu":
		return PCMU, nil
	case "alaw", "pcma", "audio/pcma":
		return PCMA, nil
	}
	return 0, fmt.Errorf("unknown G.711 law %q: use ulaw or alaw", s)
}

// OfferedLaw picks the first G.711 law in the offer's preference order from
// its active audio sections; it fails with ErrNoAudio, ErrUnsupportedMedia
// or ErrInvalidSDP as Answer would.
func OfferedLaw(offer string) (Law, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalidSDP, err)
	}
	sawAudio := false
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		sawAudio = true
		rtpmap := map[string]string{}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			pt, enc, ok := strings.Cut(a.Value, " ")
			if ok {
				rtpmap[pt] = strings.ToUpper(enc)
			}
		}
		for _, f := range m.MediaName.Formats {
			enc, mapped := rtpmap[f]
			if !mapped {
				// Static payload types need no rtpmap (RFC 3551).
				switch f {
				case "0":
					return PCMU, nil
				case "8":
					return PCMA, nil
				}
				continue
			}
			name, rate, _ := strings.Cut(enc, "/")
			rate, _, _ = strings.Cut(rate, "/")
			if r, err := strconv.Atoi(rate); err != nil || r != 8000 {
				continue
			}
			switch name {
			case "PCMU":
				return PCMU, nil
			case "PCMA":
				return PCMA, nil
			}
		}
	}
	if !sawAudio {
		return 0, ErrNoAudio
	}
	return 0, ErrUnsupportedMedia
}

// VP8Codec is the one video codec Patchbay forwards (rooms only). Browsers
// may ask for key frames with PLI or FIR; there is no NACK or congestion
// feedback, since the SFU forwards without caching or rate control.
func VP8Codec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType:  webrtc.MimeTypeVP8,
			ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{
				{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
				{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
			},
		},
		PayloadType: 96,
	}
}
