// Package audio holds the small amount of signal processing Patchbay needs to check calls: G.711 coding, test tones,
// WAV files and a Goertzel tone detector. It is used by the synthetic caller and by tests, never on the relay's hot
// path (G.711 is forwarded untouched there).
package audio

// G.711 tables are built once at start-up so encode and decode are a lookup each.
var (
	mulawDecodeTable [256]int16
	alawDecodeTable  [256]int16
	mulawEncodeTable [1 << 14]byte // indexed by the 14-bit magnitude-and-sign reduced sample (s >> 2)
	alawEncodeTable  [1 << 13]byte // indexed by s >> 3
)

func init() {
	for i := range 256 {
		mulawDecodeTable[i] = mulawDecode(byte(i))
		alawDecodeTable[i] = alawDecode(byte(i))
	}
	for i := range mulawEncodeTable {
		s := int16(uint16(i) << 2)
		mulawEncodeTable[i] = mulawEncode(s)
	}
	for i := range alawEncodeTable {
		s := int16(uint16(i) << 3)
		alawEncodeTable[i] = alawEncode(s)
	}
}

// MulawEncode encodes one linear 16-bit sample as G.711 μ-law.
func MulawEncode(s int16) byte { return mulawEncodeTable[uint16(s)>>2] }

// MulawDecode decodes one G.711 μ-law byte to a linear 16-bit sample.
func MulawDecode(b byte) int16 { return mulawDecodeTable[b] }

// AlawEncode encodes one linear 16-bit sample as G.711 A-law.
func AlawEncode(s int16) byte { return alawEncodeTable[uint16(s)>>3] }

// AlawDecode decodes one G.711 A-law byte to a linear 16-bit sample.
func AlawDecode(b byte) int16 { return alawDecodeTable[b] }

// EncodeMulaw appends the μ-law coding of samples to dst.
func EncodeMulaw(dst []byte, samples []int16) []byte {
	for _, s := range samples {
		dst = append(dst, MulawEncode(s))
	}
	return dst
}

// DecodeMulaw appends the linear samples of a μ-law payload to dst.
func DecodeMulaw(dst []int16, payload []byte) []int16 {
	for _, b := range payload {
		dst = append(dst, MulawDecode(b))
	}
	return dst
}

// EncodeAlaw appends the A-law coding of samples to dst.
func EncodeAlaw(dst []byte, samples []int16) []byte {
	for _, s := range samples {
		dst = append(dst, AlawEncode(s))
	}
	return dst
}

// DecodeAlaw appends the linear samples of an A-law payload to dst.
func DecodeAlaw(dst []int16, payload []byte) []int16 {
	for _, b := range payload {
		dst = append(dst, AlawDecode(b))
	}
	return dst
}

const (
	mulawBias = 0x84
	mulawClip = 32635
)

// mulawEncode is the reference segment encoder of ITU-T G.711 for μ-law.
func mulawEncode(sample int16) byte {
	s := int(sample)
	sign := 0
	if s < 0 {
		s = -s
		sign = 0x80
	}
	if s > mulawClip {
		s = mulawClip
	}
	s += mulawBias
	exp := 7
	for mask := 0x4000; s&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (s >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

func mulawDecode(b byte) int16 {
	u := ^b
	sign := u & 0x80
	exp := int(u>>4) & 0x07
	mant := int(u & 0x0f)
	s := ((mant << 3) + mulawBias) << exp
	s -= mulawBias
	if sign != 0 {
		return int16(-s)
	}
	return int16(s)
}

// alawEncode is the reference segment encoder of ITU-T G.711 for A-law.
func alawEncode(sample int16) byte {
	s := int(sample)
	sign := 0x80
	if s < 0 {
		s = -s - 1
		sign = 0
	}
	if s > 32767 {
		s = 32767
	}
	var out int
	if s < 256 {
		out = s >> 4
	} else {
		exp := 1
		for v := s >> 8; v > 1; v >>= 1 {
			exp++
		}
		out = exp<<4 | (s>>(exp+3))&0x0f
	}
	return byte((out | sign) ^ 0x55)
}

func alawDecode(b byte) int16 {
	a := int(b ^ 0x55)
	sign := a & 0x80
	exp := (a >> 4) & 0x07
	mant := a & 0x0f
	var s int
	if exp == 0 {
		s = mant<<4 + 8
	} else {
		s = (mant<<4 + 0x108) << (exp - 1)
	}
	if sign == 0 {
		return int16(-s)
	}
	return int16(s)
}
