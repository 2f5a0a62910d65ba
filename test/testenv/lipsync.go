package testenv

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The lip-sync harness (issue 16). A sending page makes a synthetic source whose video flashes white and whose
// audio beeps at the same instants (a canvas capture stream and a WebAudio oscillator, both timed by the audio
// clock) and sends it instead of the fake camera and microphone. A receiving page timestamps each flash as the
// compositor shows it (requestVideoFrameCallback's expectedDisplayTime) and each beep as it reaches the speaker (an
// AudioWorklet on the received audio, its context time turned into performance time with getOutputTimestamp).
// Each flash paired with the nearest beep gives one audio − video offset: positive when the sound comes after the
// picture. The same JavaScript measures a Patchbay room (the page's tile and its #remote mix) and an Asterisk
// ConfBridge reached over Asterisk's own WebRTC (see sipwebrtc.go), so the two figures are comparable.

// PrepareLipSync readies a tab for the harness before its next navigation: the page's Content-Security-Policy is
// bypassed (the measuring worklet comes from a blob: URL), window.__lipsync is defined in every document, and every
// RTCPeerConnection the page makes is kept in window.__pcs, for LipSyncPlayout's getStats.
func (p *Page) PrepareLipSync(ctx context.Context) error {
	tctx, cancel := p.bound(ctx)
	defer cancel()
	err := chromedp.Do(tctx, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := cdp.Call(ctx, t, page.SetBypassCSP, page.SetBypassCSPParams{Enabled: true}); err != nil {
			return chromedp.Void{}, err
		}
		_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: lipSyncJS})
		return chromedp.Void{}, err
	})
	if err != nil {
		return fmt.Errorf("%s: prepare lip sync: %w", p.Name, err)
	}
	return nil
}

// SyncSource describes the synthetic source.
type SyncSource struct {
	Period time.Duration // between flashes (and beeps); offsets up to half of it are told apart. Default 1 s.
	Flash  time.Duration // how long each flash and beep lasts. Default 120 ms.
	Hz     float64       // the beep's frequency. Default 1000 Hz.
	// Width and Height of the canvas; default 320×180 (cheap to encode on a busy host: more frames a second).
	Width, Height int
}

func (s *SyncSource) defaults() {
	if s.Period <= 0 {
		s.Period = time.Second
	}
	if s.Flash <= 0 {
		s.Flash = 120 * time.Millisecond
	}
	if s.Hz <= 0 {
		s.Hz = 1000
	}
	if s.Width <= 0 || s.Height <= 0 {
		s.Width, s.Height = 320, 180
	}
}

// sourceJS evaluates to a promise of the synthetic source {ac, audio, video} (see lipSyncJS's source).
func (s SyncSource) sourceJS() string {
	s.defaults()
	return fmt.Sprintf(`window.__lipsync.source(%d, %d, %f, %d, %d)`, s.Period.Milliseconds(), s.Flash.Milliseconds(), s.Hz, s.Width, s.Height)
}

// lipSyncJS defines window.__lipsync: source() builds the synthetic source, measure() times the flashes of a video
// element and the beeps of an audio stream, playout() reads the inbound streams' getStats. The audio clock is the
// source's master: the beeps are scheduled on it, and a 2 ms timer paints the canvas white while the clock is
// inside a beep (and a frame at least every 33 ms, so the encoder never starves).
const lipSyncJS = `(() => {
  if (window.__lipsync) return;
  window.__pcs = [];
  const PC = window.RTCPeerConnection;
  if (PC) {
    window.RTCPeerConnection = function (...args) { const pc = new PC(...args); window.__pcs.push(pc); return pc; };
    window.RTCPeerConnection.prototype = PC.prototype;
    Object.setPrototypeOf(window.RTCPeerConnection, PC);
  }
  const source = async (periodMs, flashMs, hz, w, h) => {
    const ac = new AudioContext({ latencyHint: "interactive" });
    await ac.resume();
    const osc = ac.createOscillator();
    osc.frequency.value = hz;
    const gain = ac.createGain();
    gain.gain.value = 0;
    const dst = ac.createMediaStreamDestination();
    osc.connect(gain);
    gain.connect(dst);
    osc.start();
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    const g = canvas.getContext("2d");
    const video = canvas.captureStream(0);
    const track = video.getVideoTracks()[0];
    const period = periodMs / 1000, flash = flashMs / 1000;
    const start = Math.ceil((ac.currentTime + 0.5) / period) * period;
    for (let k = 0; k < 600 / period; k++) {
      const t = start + k * period;
      gain.gain.setValueAtTime(0.5, t);
      gain.gain.setValueAtTime(0, t + flash);
    }
    let lit = null, last = 0, n = 0;
    const paint = (on) => {
      g.fillStyle = on ? "#ffffff" : "#101010";
      g.fillRect(0, 0, w, h);
      g.fillStyle = on ? "#000000" : "#808080";
      g.fillText(String(n++), 8, 16); // a changing corner keeps the encoder sending
      track.requestFrame();
    };
    const tick = () => {
      if (track.readyState === "ended") return;
      const now = ac.currentTime;
      const on = now >= start && ((now - start) % period) < flash;
      const t = performance.now();
      if (on !== lit || t - last > 33) {
        paint(on);
        lit = on;
        last = t;
      }
      setTimeout(tick, 2);
    };
    tick();
    return { ac, audio: dst.stream, video };
  };
  const measure = async (v, stream, ms) => {
    const flashes = [], beeps = [];
    const cv = document.createElement("canvas");
    cv.width = 16;
    cv.height = 16;
    const cg = cv.getContext("2d", { willReadFrequently: true });
    let bright = false, running = true, frames = 0;
    const onFrame = (now, md) => {
      if (!running) return;
      frames++;
      cg.drawImage(v, 0, 0, 16, 16);
      const d = cg.getImageData(0, 0, 16, 16).data;
      let s = 0;
      for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
      const luma = s / (3 * 256);
      if (!bright && luma > 128) {
        bright = true;
        flashes.push(md.expectedDisplayTime);
      } else if (bright && luma < 64) {
        bright = false;
      }
      v.requestVideoFrameCallback(onFrame);
    };
    v.requestVideoFrameCallback(onFrame);
    const ac = new AudioContext({ latencyHint: "interactive" });
    await ac.resume();
    const code = 'registerProcessor("onset", class extends AudioWorkletProcessor {' +
      ' constructor() { super(); this.armed = false; this.quiet = 0; }' +
      ' process(inputs) { const x = inputs[0] && inputs[0][0]; if (!x) return true;' +
      '  for (let i = 0; i < x.length; i++) { const a = Math.abs(x[i]);' +
      '   if (this.armed && a > 0.05) { this.armed = false; this.port.postMessage(currentTime + i / sampleRate); }' +
      '   if (a > 0.01) this.quiet = 0; else if (++this.quiet > 0.2 * sampleRate) this.armed = true; }' +
      '  return true; } });';
    const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
    await ac.audioWorklet.addModule(url);
    const node = new AudioWorkletNode(ac, "onset");
    node.port.onmessage = (e) => {
      const ts = ac.getOutputTimestamp();
      beeps.push(ts.performanceTime + (e.data - ts.contextTime) * 1000);
    };
    const src = ac.createMediaStreamSource(stream);
    const mute = ac.createGain();
    mute.gain.value = 0;
    src.connect(node);
    node.connect(mute);
    mute.connect(ac.destination);
    await new Promise((r) => setTimeout(r, ms));
    running = false;
    src.disconnect();
    await ac.close();
    return { flashes, beeps, frames };
  };
  // playout: per inbound stream, its kind, track, estimatedPlayoutTimestamp (ms on the sender's NTP clock, 0 until a
  // sender report came) and average jitter buffer delay (ms).
  const playout = async () => {
    const out = [];
    for (const pc of window.__pcs) {
      if (pc.connectionState === "closed") continue;
      const r = await pc.getStats();
      r.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        out.push({ kind: s.kind, track: s.trackIdentifier || "", ssrc: s.ssrc, playoutNtp: s.estimatedPlayoutTimestamp || 0,
          jitterBufferMs: s.jitterBufferEmittedCount ? 1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount : 0,
          packets: s.packetsReceived || 0, frames: s.framesDecoded || 0 });
      });
    }
    return out;
  };
  window.__lipsync = { source, measure, playout };
})()`

// JoinRoomWithSyncSource joins room from a signed-in Patchbay page with the synthetic source as its microphone and
// camera (patchbayApp.join's stream and video options).
func (p *Page) JoinRoomWithSyncSource(ctx context.Context, room string, s SyncSource) error {
	return p.Eval(ctx, fmt.Sprintf(`(async () => {
  const src = await %s;
  window.__syncSource = src;
  await window.patchbayApp.join(%q, { stream: src.audio, video: src.video });
  return true;
})()`, s.sourceJS(), room), nil)
}

// LipSync is what a receiving page measured of one sender.
type LipSync struct {
	Flashes []float64 `json:"flashes"` // performance.now() times (ms) each flash was shown
	Beeps   []float64 `json:"beeps"`   // and each beep played
	Frames  int       `json:"frames"`  // video frames seen
	// Offsets are audio − video (ms) for each flash paired with the nearest beep within half a period.
	Offsets []float64 `json:"-"`
}

// MeasureLipSync records d of the flashes of the video element videoCSS selects and the beeps of the audio element
// audioCSS plays (its srcObject), then pairs them; period is the source's (a beep belongs to the flash less than
// half a period away).
func (p *Page) MeasureLipSync(ctx context.Context, videoCSS, audioCSS string, d, period time.Duration) (LipSync, error) {
	var r LipSync
	err := p.Eval(ctx, fmt.Sprintf(`(async () => {
  const v = document.querySelector(%q);
  if (!v) throw new Error("no video element " + %q);
  const a = document.querySelector(%q);
  const stream = a && a.srcObject;
  if (!stream || stream.getAudioTracks().length === 0) throw new Error("no audio on " + %q);
  return window.__lipsync.measure(v, stream, %d);
})()`, videoCSS, videoCSS, audioCSS, audioCSS, d.Milliseconds()), &r)
	if err != nil {
		return r, fmt.Errorf("measure lip sync: %w", err)
	}
	r.Offsets = PairOffsets(r.Flashes, r.Beeps, float64(period.Milliseconds())/2)
	return r, nil
}

// InboundPlayout is one inbound stream's getStats (see LipSyncPlayout).
type InboundPlayout struct {
	Kind  string `json:"kind"`
	Track string `json:"track"`
	SSRC  uint32 `json:"ssrc"`
	// PlayoutNTP is estimatedPlayoutTimestamp: the sender-report NTP time (ms) of what plays now; 0 until the
	// stream's first sender report. JitterBufferMs is the average jitter buffer delay.
	PlayoutNTP     float64 `json:"playoutNtp"`
	JitterBufferMs float64 `json:"jitterBufferMs"`
	Packets        int     `json:"packets"`
	Frames         int     `json:"frames"`
}

// LipSyncPlayout reads every inbound stream of the page's peer connections (needs PrepareLipSync).
func (p *Page) LipSyncPlayout(ctx context.Context) ([]InboundPlayout, error) {
	var out []InboundPlayout
	err := p.Eval(ctx, `window.__lipsync.playout()`, &out)
	return out, err
}

// PairOffsets pairs each flash with the nearest beep less than maxGap away and returns beep − flash for each pair.
func PairOffsets(flashes, beeps []float64, maxGap float64) []float64 {
	var out []float64
	for _, f := range flashes {
		best, bestAbs := 0.0, math.Inf(1)
		for _, b := range beeps {
			if a := math.Abs(b - f); a < bestAbs {
				best, bestAbs = b-f, a
			}
		}
		if bestAbs < maxGap {
			out = append(out, best)
		}
	}
	return out
}

// OffsetStats summarise audio − video offsets (ms).
type OffsetStats struct {
	N                   int
	Mean                float64 // signed: > 0 means the sound comes after the picture
	AbsP50, AbsP95, Max float64 // of |audio − video|
}

func (s OffsetStats) String() string {
	return fmt.Sprintf("n=%d, signed mean %+.0f ms, |a−v| p50 %.0f ms, p95 %.0f ms, max %.0f ms", s.N, s.Mean, s.AbsP50, s.AbsP95, s.Max)
}

// SummariseOffsets computes OffsetStats (nearest-rank percentiles).
func SummariseOffsets(offsets []float64) OffsetStats {
	s := OffsetStats{N: len(offsets)}
	if len(offsets) == 0 {
		return s
	}
	abs := make([]float64, len(offsets))
	for i, o := range offsets {
		abs[i] = math.Abs(o)
		s.Mean += o
	}
	s.Mean /= float64(len(offsets))
	slices.Sort(abs)
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(abs)))) - 1
		return abs[max(0, min(i, len(abs)-1))]
	}
	s.AbsP50, s.AbsP95, s.Max = rank(0.5), rank(0.95), abs[len(abs)-1]
	return s
}
