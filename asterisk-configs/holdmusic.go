package asteriskconfigs

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
)

// Music on hold. Debian's Asterisk ships no music (the asterisk-moh-opsound-* packages are separate), and a held
// caller who hears silence hangs up. Render therefore writes a short tune of Patchbay's own into <etc>/moh and
// points the default class at it, unless MOHDir names a directory of real music.

// HoldTuneFile is the file Render writes into <etc>/moh when Params.MOHDir is empty.
const HoldTuneFile = "patchbay-hold.wav"

// HoldTuneHz are the notes of the hold tune, in order (C5 E5 G5 E5, half a second each, looped by Asterisk): tests
// listen for them.
var HoldTuneHz = []float64{523.25, 659.25, 783.99, 659.25}

// MOHDirectory is the directory the default music-on-hold class plays (musiconhold.conf), as Asterisk sees it.
func (p Params) MOHDirectory() string {
	if p.MOHDir != "" {
		return p.MOHDir
	}
	return path.Join(p.EtcDir, "moh")
}

// holdTune renders the tune: 8 kHz 16-bit mono PCM in a WAV container (format_wav), each note shaped with a
// 40 ms fade in and out so the loop does not click, at a third of full scale.
func holdTune() []byte {
	const rate, noteSamples, fade, amp = 8000, 4000, 320, 0.3 * 32767
	n := noteSamples * len(HoldTuneHz)
	b := make([]byte, 44+2*n)
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // PCM
	binary.LittleEndian.PutUint16(b[22:], 1) // mono
	binary.LittleEndian.PutUint32(b[24:], rate)
	binary.LittleEndian.PutUint32(b[28:], 2*rate)
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*n))
	for k, hz := range HoldTuneHz {
		for i := range noteSamples {
			g := 1.0
			if i < fade {
				g = float64(i) / fade
			} else if i >= noteSamples-fade {
				g = float64(noteSamples-1-i) / fade
			}
			v := int16(amp * g * math.Sin(2*math.Pi*hz*float64(i)/rate))
			binary.LittleEndian.PutUint16(b[44+2*(k*noteSamples+i):], uint16(v))
		}
	}
	return b
}

// writeHoldTune writes the tune into outDir/moh, readable by Asterisk.
func writeHoldTune(outDir string) error {
	dir := filepath.Join(outDir, "moh")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create music-on-hold dir %s: %w", dir, err)
	}
	return writeFileAtomic(filepath.Join(dir, HoldTuneFile), holdTune())
}
