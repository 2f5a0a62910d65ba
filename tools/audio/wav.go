package audio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// WriteWAV writes mono 16-bit PCM samples at rate to path.
func WriteWAV(path string, s []int16, rate int) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create wav %s: %w", path, err)
	}
	dataLen := uint32(len(s) * 2)
	hdr := make([]byte, 44)
	copy(hdr[0:], "RIFF")
	binary.LittleEndian.PutUint32(hdr[4:], 36+dataLen)
	copy(hdr[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(hdr[16:], 16)
	binary.LittleEndian.PutUint16(hdr[20:], 1) // PCM
	binary.LittleEndian.PutUint16(hdr[22:], 1) // mono
	binary.LittleEndian.PutUint32(hdr[24:], uint32(rate))
	binary.LittleEndian.PutUint32(hdr[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(hdr[32:], 2)
	binary.LittleEndian.PutUint16(hdr[34:], 16)
	copy(hdr[36:], "data")
	binary.LittleEndian.PutUint32(hdr[40:], dataLen)
	body := make([]byte, len(s)*2)
	for i, v := range s {
		binary.LittleEndian.PutUint16(body[2*i:], uint16(v))
	}
	if _, err := f.Write(append(hdr, body...)); err != nil {
		f.Close()
		return fmt.Errorf("write wav %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close wav %s: %w", path, err)
	}
	return nil
}

// ReadWAV reads a 16-bit PCM WAV file and returns its first channel and its sample rate. Recorders that stop
// abruptly leave a zero or oversized data length; the data then runs to the end of the file.
func ReadWAV(path string) ([]int16, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read wav %s: %w", path, err)
	}
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, fmt.Errorf("read wav %s: not a RIFF/WAVE file", path)
	}
	var (
		rate, channels, bits int
		haveFmt              bool
	)
	pos := 12
	for pos+8 <= len(b) {
		id := string(b[pos : pos+4])
		size := int(binary.LittleEndian.Uint32(b[pos+4:]))
		body := pos + 8
		switch id {
		case "fmt ":
			if body+16 > len(b) {
				return nil, 0, fmt.Errorf("read wav %s: %w", path, io.ErrUnexpectedEOF)
			}
			format := binary.LittleEndian.Uint16(b[body:])
			channels = int(binary.LittleEndian.Uint16(b[body+2:]))
			rate = int(binary.LittleEndian.Uint32(b[body+4:]))
			bits = int(binary.LittleEndian.Uint16(b[body+14:]))
			if (format != 1 && format != 0xFFFE) || bits != 16 || channels < 1 {
				return nil, 0, fmt.Errorf("read wav %s: only 16-bit PCM is supported (format %d, %d bits, %d channels)", path, format, bits, channels)
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, 0, fmt.Errorf("read wav %s: data chunk before fmt chunk", path)
			}
			end := body + size
			if size == 0 || end > len(b) {
				end = len(b)
			}
			frame := 2 * channels
			n := (end - body) / frame
			out := make([]int16, n)
			for i := range n {
				out[i] = int16(binary.LittleEndian.Uint16(b[body+i*frame:]))
			}
			return out, rate, nil
		}
		pos = body + size + size%2
	}
	return nil, 0, errors.New("read wav " + path + ": no data chunk")
}
