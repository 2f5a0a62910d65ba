package media

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Codec is an audio codec Patchbay carries between a browser and Asterisk: G.711 (PCMU, PCMA) untouched, or
// Opus (48 kHz, wideband) where the far end is a browser too. Its value is the RTP payload type Patchbay uses in
// its own offers; an answer to a browser's offer uses whatever type the offer gave the codec.
type Codec uint8

// The codecs, by the payload type Patchbay offers them with (static for G.711, 111 for Opus as browsers use).
const (
	PCMU Codec = 0
	PCMA Codec = 8
	Opus Codec = 111
)

// Law is the name Codec had when G.711 was all Patchbay carried; it stays for the code written then.
type Law = Codec

// PayloadType is the RTP payload type of the codec in Patchbay's own offers.
func (l Codec) PayloadType() uint8 { return uint8(l) }

// Format is the Asterisk format name for externalMedia and channel formats (ulaw, alaw or opus).
func (l Codec) Format() string {
	switch l {
	case PCMA:
		return "alaw"
	case Opus:
		return "opus"
	}
	return "ulaw"
}

func (l Codec) String() string {
	switch l {
	case PCMA:
		return "PCMA"
	case Opus:
		return "opus"
	}
	return "PCMU"
}

// Name is the codec with its clock rate as SDP writes it ("PCMU/8000", "opus/48000").
func (l Codec) Name() string { return l.String() + "/" + strconv.Itoa(int(l.ClockRate())) }

// ClockRate is the RTP clock rate: 8000 for G.711, 48000 for Opus.
func (l Codec) ClockRate() uint32 {
	if l == Opus {
		return 48000
	}
	return 8000
}

// Wideband reports whether the codec carries more than the telephone band (Opus).
func (l Codec) Wideband() bool { return l == Opus }

// MimeType is pion's MIME type for the codec.
func (l Codec) MimeType() string {
	switch l {
	case PCMA:
		return webrtc.MimeTypePCMA
	case Opus:
		return webrtc.MimeTypeOpus
	}
	return webrtc.MimeTypePCMU
}

// OpusFmtp is the format line Patchbay registers Opus with: in-band FEC wanted (RFC 7587 useinbandfec), 10 ms
// frames allowed, and DTX only when asked for (usedtx=1 tells the browser's encoder to stop sending in silence).
func OpusFmtp(dtx bool) string {
	if dtx {
		return "minptime=10;useinbandfec=1;usedtx=1"
	}
	return "minptime=10;useinbandfec=1"
}

// Codec returns the pion codec parameters (Opus with FEC and without DTX; the API's own registration may ask for
// DTX, see Options.OpusDTX).
func (l Codec) Codec() webrtc.RTPCodecParameters { return l.params(false) }

func (l Codec) params(dtx bool) webrtc.RTPCodecParameters {
	if l == Opus {
		return webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
				SDPFmtpLine: OpusFmtp(dtx)},
			PayloadType: webrtc.PayloadType(Opus),
		}
	}
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: l.MimeType(), ClockRate: 8000, Channels: 1},
		PayloadType:        webrtc.PayloadType(l.PayloadType()),
	}
}

// ParseLaw maps "ulaw"/"pcmu" and "alaw"/"pcma" (any case) to a G.711 law.
func ParseLaw(s string) (Law, error) {
	switch strings.ToLower(s) {
	case "ulaw", "pcmu", "audio/pcmu":
		return PCMU, nil
	case "alaw", "pcma", "audio/pcma":
		return PCMA, nil
	}
	return 0, fmt.Errorf("unknown G.711 law %q: use ulaw or alaw", s)
}

// ParseCodec maps a G.711 law name (see ParseLaw) or "opus" to a Codec.
func ParseCodec(s string) (Codec, error) {
	if strings.EqualFold(s, "opus") || strings.EqualFold(s, "audio/opus") {
		return Opus, nil
	}
	l, err := ParseLaw(s)
	if err != nil {
		return 0, fmt.Errorf("unknown codec %q: use opus, ulaw or alaw", s)
	}
	return l, nil
}

// OfferedCodecs lists the codecs Patchbay carries that the offer's active audio sections name, in the offer's
// preference order, each once. It fails with ErrNoAudio, ErrUnsupportedMedia or ErrInvalidSDP as Answer would.
func OfferedCodecs(offer string) ([]Codec, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSDP, err)
	}
	sawAudio := false
	var out []Codec
	add := func(c Codec) {
		for _, have := range out {
			if have == c {
				return
			}
		}
		out = append(out, c)
	}
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
					add(PCMU)
				case "8":
					add(PCMA)
				}
				continue
			}
			name, rest, _ := strings.Cut(enc, "/")
			rate, _, _ := strings.Cut(rest, "/")
			r, err := strconv.Atoi(rate)
			if err != nil {
				continue
			}
			switch {
			case name == "PCMU" && r == 8000:
				add(PCMU)
			case name == "PCMA" && r == 8000:
				add(PCMA)
			case name == "OPUS" && r == 48000: // RFC 7587: always opus/48000/2
				add(Opus)
			}
		}
	}
	if !sawAudio {
		return nil, ErrNoAudio
	}
	if len(out) == 0 {
		return nil, ErrUnsupportedMedia
	}
	return out, nil
}

// offeredPT is the payload type the offer's first active audio section gives codec c, or c's own when the offer
// names it by no rtpmap (static G.711) or not at all.
func offeredPT(offer string, c Codec) uint8 {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return c.PayloadType()
	}
	want := strings.ToUpper(c.Name())
	for _, m := range sd.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		for _, a := range m.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			pt, enc, ok := strings.Cut(a.Value, " ")
			if !ok || !strings.HasPrefix(strings.ToUpper(enc), want) {
				continue
			}
			if n, err := strconv.Atoi(pt); err == nil && n >= 0 && n < 128 {
				return uint8(n)
			}
		}
		break
	}
	return c.PayloadType()
}

// OfferedLaw picks the first G.711 law in the offer's preference order from its active audio sections; it fails
// with ErrNoAudio, ErrUnsupportedMedia (no G.711 at all) or ErrInvalidSDP.
func OfferedLaw(offer string) (Law, error) {
	cs, err := OfferedCodecs(offer)
	if err != nil {
		return 0, err
	}
	for _, c := range cs {
		if c != Opus {
			return c, nil
		}
	}
	return 0, ErrUnsupportedMedia
}

// ChooseCodec decides the codec of a browser's call from its offer, before the answer: when the far end carries
// wideband audio (another browser, a room of browsers) Opus if offered, else the offer's first G.711 law; when it
// does not (a phone, a trunk, the dialplan) the offer's first G.711 law, so Asterisk passes it untouched, and Opus
// only for an offer without G.711 (Asterisk then transcodes).
func ChooseCodec(offer string, wideband bool) (Codec, error) {
	cs, err := OfferedCodecs(offer)
	if err != nil {
		return 0, err
	}
	for _, c := range cs {
		if c.Wideband() == wideband {
			return c, nil
		}
	}
	return cs[0], nil
}
