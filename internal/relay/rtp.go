package relay

import "encoding/binary"

// header is the part of an RTP header the relay uses. Parsing is in place
// and allocation-free.
type header struct {
	marker bool
	pt     uint8
	seq    uint16
	ts     uint32
	ssrc   uint32
	// payload is b[start:end]: after CSRCs and extension, before padding.
	start, end int
}

// parseRTP validates an RTP packet and locates its payload. ok is false
// for anything that is not RTP version 2 with a non-empty payload.
func parseRTP(b []byte) (h header, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return h, false
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < off+4 {
			return h, false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	}
	end := len(b)
	if b[0]&0x20 != 0 {
		pad := int(b[end-1])
		if pad == 0 || pad > end-off {
			return h, false
		}
		end -= pad
	}
	if off >= end {
		return h, false
	}
	h.marker = b[1]&0x80 != 0
	h.pt = b[1] & 0x7f
	h.seq = binary.BigEndian.Uint16(b[2:])
	h.ts = binary.BigEndian.Uint32(b[4:])
	h.ssrc = binary.BigEndian.Uint32(b[8:])
	h.start, h.end = off, end
	return h, true
}

// compact rewrites b in place into a plain 12-byte-header packet (no CSRC,
// extension or padding) with payload type pt, and returns it. The new header
// is written just before the payload, which never moves.
func compact(b []byte, h header, pt uint8) []byte {
	s := h.start - 12
	out := b[s:h.end]
	out[0] = 0x80
	out[1] = pt & 0x7f
	if h.marker {
		out[1] |= 0x80
	}
	binary.BigEndian.PutUint16(out[2:], h.seq)
	binary.BigEndian.PutUint32(out[4:], h.ts)
	binary.BigEndian.PutUint32(out[8:], h.ssrc)
	return out
}
