package synth

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// CallOptions shape one synthetic call. Zero values pick the defaults noted.
type CallOptions struct {
	CallID string // default: random
	To     string // number to call (outgoing only)
	// CallerID asks for one of the token's caller IDs (the "call" message's caller_id); empty: the default.
	CallerID string
	Law      media.Law // law offered on outgoing calls; default PCMU
	// Codecs, when set, are offered on outgoing calls instead of Law, in this order of preference (e.g. Opus
	// alone, or Opus then PCMU as browsers offer); the call carries whichever the server's answer picks.
	Codecs []media.Codec
	// Echo makes an answered call send back what it hears, frame for frame, instead of a tone: the far end of a
	// browser ⇄ browser call that measures the round trip through both legs.
	Echo bool

	ToneHz    float64 // tone played; default 1000
	Amplitude float64 // 0..1 of full scale; default 0.3
	// ExpectHz is the tone looked for in what is heard; default ToneHz (an echo).
	ExpectHz float64

	// Duration of media after the peer connection is up before hanging up;
	// default 3 s. Negative: until the far end hangs up or ctx ends.
	Duration time.Duration
	// RecordMax bounds the decoded audio kept; default 10 s.
	RecordMax time.Duration

	// DTMF digits are sent DTMFAfter the connection is up.
	DTMF      string
	DTMFAfter time.Duration

	// SendFor stops sending media this long after sending starts (the call goes on, silent toward the far end):
	// a browser whose uplink dies mid-call. Zero: send for the whole call; negative: never send.
	SendFor time.Duration

	// NoTrickle gathers every candidate before sending the SDP.
	NoTrickle bool
	// TimeAlign keeps Audio on the wall clock: a pause in what is heard (a muted or held call) is filled with
	// silence, so a window of Audio at offset t is what was heard t after the first packet.
	TimeAlign bool
	// OnConnected, if set, is called once the peer connection is up, with the call's call_id (an incoming call's
	// is the server's): a test acts on the call while it runs (hold, transfer...).
	OnConnected func(callID string)
	// Reject declines an incoming call instead of answering it.
	Reject bool

	Logger *slog.Logger
}

func (o *CallOptions) defaults() {
	if o.CallID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.CallID = "synth-" + hex.EncodeToString(b[:])
	}
	if o.ToneHz == 0 {
		o.ToneHz = 1000
	}
	if o.Amplitude == 0 {
		o.Amplitude = 0.3
	}
	if o.ExpectHz == 0 {
		o.ExpectHz = o.ToneHz
	}
	if o.Duration == 0 {
		o.Duration = 3 * time.Second
	}
	if o.RecordMax == 0 {
		o.RecordMax = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// ErrRejected is returned when the server answers a call with an error.
var ErrRejected = errors.New("synth: call refused by server")

// call is one synthetic call. Its goroutines (signalling pump, sender,
// receiver) all end before Call/Receive return.
type call struct {
	e   *Engine
	o   CallOptions
	log *slog.Logger
	pc  *webrtc.PeerConnection
	law media.Codec

	opus    *opusTone             // the tone in Opus, on an Opus call
	sentAt  [opusFrames]time.Time // when each frame of the Opus loop was last sent (under ring.mu)
	opusDec *opusDecoder          // what an Opus call hears
	rate    int                   // sample rate of pcm
	echoSeq uint16                // Echo: the stream sent back
	echoTS  uint32
	echoPkt rtp.Packet
	tx      *webrtc.RTPTransceiver

	track *webrtc.TrackLocalStaticRTP
	start time.Time
	rep   Report

	cands  chan webrtc.ICECandidateInit
	states chan webrtc.PeerConnectionState

	ring     sendRing
	sent     atomic.Uint64
	recvMu   sync.Mutex // guards the receive-side fields below
	received uint64
	firstPkt time.Time
	firstEch time.Time
	lastPkt  time.Time
	gaps     []Gap
	seqBase  int64
	seqMax   int64
	lastSeq  uint16
	seqInit  bool
	rtts     []time.Duration
	echoAt   []time.Duration // when each echo of rtts arrived, from start
	pcm      []int16

	mu      sync.Mutex // guards closing and wg.Add from pion callbacks
	closing bool
	wg      sync.WaitGroup
	stopTx  chan struct{}
	txOnce  sync.Once
}

func (e *Engine) newCall(o CallOptions) (*call, error) {
	o.defaults()
	conf := webrtc.Configuration{ICEServers: e.iceServers}
	if e.relayOnly {
		conf.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := e.api.NewPeerConnection(conf)
	if err != nil {
		return nil, fmt.Errorf("synth: create peer connection: %w", err)
	}
	c := &call{
		e:      e,
		o:      o,
		log:    o.Logger.With("call", o.CallID),
		pc:     pc,
		cands:  make(chan webrtc.ICECandidateInit, 32),
		states: make(chan webrtc.PeerConnectionState, 8),
		stopTx: make(chan struct{}),
	}
	c.rate = sampleRate
	c.pcm = make([]int16, 0, int(o.RecordMax/time.Second+1)*sampleRate)
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		select {
		case c.cands <- cand.ToJSON():
		default:
			c.log.Warn("candidate queue full, candidate dropped")
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		select {
		case c.states <- s:
		default:
		}
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return
		}
		c.wg.Add(1)
		c.mu.Unlock()
		defer c.wg.Done()
		c.receive(t)
	})
	return c, nil
}

// addTrack adds the audio track in the first of codecs and offers exactly codecs, in that order.
func (c *call) addTrack(codecs ...media.Codec) error {
	law := codecs[0]
	if err := c.setCodec(law); err != nil {
		return err
	}
	tr, err := webrtc.NewTrackLocalStaticRTP(law.Codec().RTPCodecCapability, "synth", c.o.CallID)
	if err != nil {
		return fmt.Errorf("synth: create %s track: %w", law, err)
	}
	c.track = tr
	if _, err := c.pc.AddTrack(tr); err != nil {
		return fmt.Errorf("synth: add %s track: %w", law, err)
	}
	params := make([]webrtc.RTPCodecParameters, len(codecs))
	for i, cd := range codecs {
		params[i] = cd.Codec()
	}
	for _, t := range c.pc.GetTransceivers() {
		if t.Sender() != nil && t.Sender().Track() == tr {
			c.tx = t
			if err := t.SetCodecPreferences(params); err != nil {
				return fmt.Errorf("synth: restrict to %v: %w", codecs, err)
			}
		}
	}
	return nil
}

// setCodec readies the call for one codec: its tone and, for Opus, a decoder for what it hears.
func (c *call) setCodec(law media.Codec) error {
	c.law = law
	c.rep.Law = law
	if law != media.Opus {
		c.recvMu.Lock()
		c.opus, c.opusDec, c.rate = nil, nil, sampleRate
		c.pcm = make([]int16, 0, int(c.o.RecordMax/time.Second+1)*sampleRate)
		c.recvMu.Unlock()
		return nil
	}
	t, err := c.e.opus(c.o.ToneHz, c.o.Amplitude)
	if err != nil {
		return err
	}
	d, err := newOpusDecoder()
	if err != nil {
		return err
	}
	c.recvMu.Lock()
	c.opus, c.opusDec, c.rate = t, d, opusRate
	c.pcm = make([]int16, 0, int(c.o.RecordMax/time.Second+1)*opusRate)
	c.recvMu.Unlock()
	return nil
}

// fitTrack swaps the track for one in the codec the answer picked, when the offer named several: the track must
// be in the negotiated codec before the answer is applied, or pion cannot bind it.
func (c *call) fitTrack(answer string) error {
	cs, err := media.OfferedCodecs(answer)
	if err != nil || cs[0] == c.law || c.tx == nil {
		return nil
	}
	if err := c.setCodec(cs[0]); err != nil {
		return err
	}
	tr, err := webrtc.NewTrackLocalStaticRTP(cs[0].Codec().RTPCodecCapability, "synth", c.o.CallID)
	if err != nil {
		return fmt.Errorf("synth: create %s track: %w", cs[0], err)
	}
	if err := c.tx.Sender().ReplaceTrack(tr); err != nil {
		return fmt.Errorf("synth: switch to %s: %w", cs[0], err)
	}
	c.track = tr
	return nil
}

// localSDP sets desc and returns the SDP to send: at once when trickling,
// after gathering otherwise.
func (c *call) localSDP(ctx context.Context, desc webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(c.pc)
	if err := c.pc.SetLocalDescription(desc); err != nil {
		return "", fmt.Errorf("synth: set local %s: %w", desc.Type, err)
	}
	if c.o.NoTrickle {
		select {
		case <-gathered:
		case <-ctx.Done():
			return "", fmt.Errorf("synth: gather candidates: %w", ctx.Err())
		}
	}
	return c.pc.LocalDescription().SDP, nil
}

// Call places a call to o.To through sig and runs it to the end.
func (e *Engine) Call(ctx context.Context, sig Signaller, o CallOptions) (*Report, error) {
	return e.offerAndRun(ctx, sig, o, "call", func(c *call, sdp string) signal.Message {
		return signal.Message{Type: signal.TypeCall, CallID: c.o.CallID, To: c.o.To, CallerID: c.o.CallerID, SDP: sdp}
	})
}

// offerAndRun makes an offer like a browser, sends it in the message first builds (a call or a room join),
// and runs the call to the end.
func (e *Engine) offerAndRun(ctx context.Context, sig Signaller, o CallOptions, what string, first func(c *call, sdp string) signal.Message) (*Report, error) {
	c, err := e.newCall(o)
	if err != nil {
		return nil, err
	}
	defer c.close()
	codecs := c.o.Codecs
	if len(codecs) == 0 {
		law := c.o.Law
		if law != media.PCMA {
			law = media.PCMU
		}
		codecs = []media.Codec{law}
	}
	if err := c.addTrack(codecs...); err != nil {
		return c.report(), err
	}
	offer, err := c.pc.CreateOffer(nil)
	if err != nil {
		return c.report(), fmt.Errorf("synth: create offer: %w", err)
	}
	sdp, err := c.localSDP(ctx, offer)
	if err != nil {
		return c.report(), err
	}
	c.start = time.Now()
	c.rep.Start = c.start
	if err := sig.Send(ctx, first(c, sdp)); err != nil {
		return c.report(), fmt.Errorf("synth: send %s: %w", what, err)
	}
	return c.run(ctx, sig)
}

// Offer places a call like Call but with the first message first builds from the call_id and the SDP offer (a
// supervisor's "supervise", say); the call then runs to the end like any other.
func (e *Engine) Offer(ctx context.Context, sig Signaller, o CallOptions, first func(callID, sdp string) signal.Message) (*Report, error) {
	return e.offerAndRun(ctx, sig, o, "offer", func(c *call, sdp string) signal.Message { return first(c.o.CallID, sdp) })
}

// Receive waits for an "incoming" call on sig, answers it (or rejects it when
// o.Reject) and runs it to the end. o.CallID is ignored: the server chose it.
func (e *Engine) Receive(ctx context.Context, sig Signaller, o CallOptions) (*Report, error) {
	for {
		m, err := sig.Recv(ctx)
		if err != nil {
			return nil, fmt.Errorf("synth: wait for incoming call: %w", err)
		}
		if m.Type == signal.TypeIncoming {
			o.CallID = m.CallID
			return e.answer(ctx, sig, m, o)
		}
	}
}

func (e *Engine) answer(ctx context.Context, sig Signaller, in signal.Message, o CallOptions) (*Report, error) {
	c, err := e.newCall(o)
	if err != nil {
		return nil, err
	}
	defer c.close()
	c.start = time.Now()
	c.rep.Start = c.start
	c.rep.Incoming = true
	c.event(in)
	if c.o.Reject {
		c.rep.HungUpBy = "local"
		return c.report(), sig.Send(ctx, signal.Message{Type: signal.TypeReject, CallID: in.CallID})
	}
	cs, err := media.OfferedCodecs(in.SDP)
	if err != nil {
		_ = sig.Send(ctx, signal.Message{Type: signal.TypeReject, CallID: in.CallID})
		return c.report(), fmt.Errorf("synth: incoming offer: %w", err)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: in.SDP}); err != nil {
		return c.report(), fmt.Errorf("synth: apply incoming offer: %w", err)
	}
	if err := c.addTrack(cs[0]); err != nil { // the server offers exactly one codec
		return c.report(), err
	}
	ans, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return c.report(), fmt.Errorf("synth: create answer: %w", err)
	}
	sdp, err := c.localSDP(ctx, ans)
	if err != nil {
		return c.report(), err
	}
	if err := sig.Send(ctx, signal.Message{Type: signal.TypeAnswer, CallID: in.CallID, SDP: sdp}); err != nil {
		return c.report(), fmt.Errorf("synth: send answer: %w", err)
	}
	return c.run(ctx, sig)
}

type recvResult struct {
	m   signal.Message
	err error
}

// run drives the call from the far end's messages, the connection state and
// the call's timers until someone hangs up.
func (c *call) run(ctx context.Context, sig Signaller) (*Report, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan recvResult, 8)
	c.wg.Add(1)
	go func() { // signalling pump: ends with ctx
		defer c.wg.Done()
		for {
			m, err := sig.Recv(ctx)
			select {
			case msgs <- recvResult{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var hangupT, dtmfT <-chan time.Time
	id := c.o.CallID
	hangup := func() error {
		c.rep.HungUpBy = "local"
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer scancel()
		return sig.Send(sctx, signal.Message{Type: signal.TypeHangup, CallID: id})
	}
	for {
		select {
		case <-ctx.Done():
			c.drainEchoes()
			_ = hangup()
			return c.report(), fmt.Errorf("synth call %s: %w", id, ctx.Err())
		case cand := <-c.cands:
			ic := signal.ICECandidate(cand)
			if err := sig.Send(ctx, signal.Message{Type: signal.TypeCandidate, CallID: id, Candidate: &ic}); err != nil {
				return c.report(), fmt.Errorf("synth: send candidate: %w", err)
			}
		case s := <-c.states:
			switch s {
			case webrtc.PeerConnectionStateConnected:
				if c.rep.ConnectedAfter == 0 {
					c.rep.ConnectedAfter = time.Since(c.start)
					c.startSender()
					if c.o.Duration > 0 {
						hangupT = time.After(c.o.Duration)
					}
					if c.o.DTMF != "" {
						dtmfT = time.After(c.o.DTMFAfter)
					}
					if c.o.OnConnected != nil {
						c.o.OnConnected(id)
					}
				}
			case webrtc.PeerConnectionStateFailed:
				_ = hangup()
				return c.report(), fmt.Errorf("synth call %s: ICE/DTLS failed", id)
			}
		case <-dtmfT:
			if err := sig.Send(ctx, signal.Message{Type: signal.TypeDTMF, CallID: id, Digits: c.o.DTMF}); err != nil {
				return c.report(), fmt.Errorf("synth: send dtmf: %w", err)
			}
		case <-hangupT:
			c.drainEchoes()
			err := hangup()
			return c.report(), err
		case r := <-msgs:
			if r.err != nil {
				return c.report(), fmt.Errorf("synth call %s: signalling: %w", id, r.err)
			}
			m := r.m
			if m.CallID != "" && m.CallID != id {
				continue
			}
			switch m.Type {
			case signal.TypeAnswer:
				c.event(m)
				if c.rep.AnswerAfter == 0 {
					c.rep.AnswerAfter = time.Since(c.start)
				}
				if err := c.fitTrack(m.SDP); err != nil {
					_ = hangup()
					return c.report(), err
				}
				if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
					_ = hangup()
					return c.report(), fmt.Errorf("synth: apply answer: %w", err)
				}
			case signal.TypeCandidate:
				if m.Candidate != nil {
					if err := c.pc.AddICECandidate(webrtc.ICECandidateInit(*m.Candidate)); err != nil {
						c.log.Warn("bad remote candidate", "err", err)
					}
				}
			case signal.TypeRinging, signal.TypeAnswered, signal.TypeDTMF, signal.TypeJoined, signal.TypeRoom, signal.TypeQuality,
				signal.TypeHeld, signal.TypeResumed, signal.TypeTransferred, signal.TypeRecording, signal.TypeRedirect:
				c.event(m)
			case signal.TypeHangup:
				c.event(m)
				c.rep.HungUpBy, c.rep.Cause, c.rep.Code = "remote", m.Cause, m.Code
				return c.report(), nil
			case signal.TypeError:
				c.event(m)
				if m.CallID == id {
					return c.report(), fmt.Errorf("%w: %w", ErrRejected, m.Err())
				}
			}
		}
	}
}

func (c *call) event(m signal.Message) {
	c.rep.Events = append(c.rep.Events, Event{Type: m.Type, At: time.Since(c.start), Cause: m.Cause,
		Code: m.Code, Digits: m.Digits, Error: m.Error,
		Room: m.Room, RoomEvent: m.Event, Participant: m.Participant, Participants: m.Participants,
		Issue: m.Issue, Direction: m.Direction, By: m.By, To: m.To, URL: m.URL, Ticket: m.Ticket})
}

// startSender plays the tone, one stamped frame per 20 ms of wall clock.
// Frames missed while the goroutine was not scheduled are sent late (up to
// maxBurst at once), as a clock-driven source would, so a loaded host shows
// up as jitter rather than as fewer packets. An Opus call loops its
// pre-encoded frames; an Echo call sends nothing of its own.
func (c *call) startSender() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.o.Echo {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		const maxBurst = 10
		step := uint32(frameSamples)
		var tone []byte
		if c.opus != nil {
			step = opusFrame
		} else {
			tone = c.e.tone(c.law, c.o.ToneHz, c.o.Amplitude)
		}
		var seed [6]byte
		_, _ = rand.Read(seed[:])
		pkt := rtp.Packet{Header: rtp.Header{Version: 2, Marker: true,
			SequenceNumber: binary.BigEndian.Uint16(seed[:2]), Timestamp: binary.BigEndian.Uint32(seed[2:])},
			Payload: make([]byte, frameSamples)}
		buf := pkt.Payload
		tick := time.NewTicker(frameInterval)
		defer tick.Stop()
		begin := time.Now()
		if c.o.SendFor < 0 {
			return
		}
		var stopAt <-chan time.Time
		if c.o.SendFor > 0 {
			t := time.NewTimer(c.o.SendFor)
			defer t.Stop()
			stopAt = t.C
		}
		var n uint32
		for {
			due := uint32(time.Since(begin)/frameInterval) + 1
			if due-n > maxBurst {
				// Too far behind: skip the frames, keep the timestamps honest.
				skip := due - n - maxBurst
				pkt.Timestamp += skip * step
				n += skip
			}
			for ; n < due; n++ {
				if c.opus != nil {
					i := int(n) % opusFrames
					pkt.Payload = c.opus.frames[i]
					c.ring.mu.Lock()
					c.sentAt[i] = time.Now()
					c.ring.mu.Unlock()
				} else {
					pkt.Payload = buf
					off := int(n) * frameSamples % len(tone)
					copy(pkt.Payload, tone[off:off+frameSamples])
					stamp(pkt.Payload, n)
					c.ring.put(n, pkt.Payload, time.Now())
				}
				if err := c.track.WriteRTP(&pkt); err == nil {
					c.sent.Add(1)
				}
				pkt.Marker = false
				pkt.SequenceNumber++
				pkt.Timestamp += step
			}
			select {
			case <-tick.C:
			case <-stopAt:
				return
			case <-c.stopTx:
				return
			}
		}
	}()
}

// matchOpus returns the send time of an echoed Opus frame of the loop, once.
func (c *call) matchOpus(p []byte) (time.Time, bool) {
	i, ok := c.opus.index[hash64(p)]
	if !ok {
		return time.Time{}, false
	}
	c.ring.mu.Lock()
	defer c.ring.mu.Unlock()
	at := c.sentAt[i]
	if at.IsZero() {
		return time.Time{}, false
	}
	c.sentAt[i] = time.Time{}
	return at, true
}

// echo sends a heard frame back (CallOptions.Echo), as its own continuous stream.
func (c *call) echo(payload []byte) {
	if c.echoPkt.Version == 0 {
		c.echoPkt.Version, c.echoPkt.Marker = 2, true
		c.echoSeq, c.echoTS = uint16(time.Now().UnixNano()), uint32(time.Now().UnixNano()>>10)
	}
	c.echoPkt.SequenceNumber, c.echoPkt.Timestamp, c.echoPkt.Payload = c.echoSeq, c.echoTS, payload
	if err := c.track.WriteRTP(&c.echoPkt); err == nil {
		c.sent.Add(1)
	}
	c.echoPkt.Marker = false
	c.echoSeq++
	if c.law == media.Opus {
		c.echoTS += opusFrame
	} else {
		c.echoTS += uint32(len(payload))
	}
}

// receive reads the far end's audio until the peer connection closes.
func (c *call) receive(t *webrtc.TrackRemote) {
	law := media.PCMU
	switch t.Codec().MimeType {
	case webrtc.MimeTypePCMA:
		law = media.PCMA
	case webrtc.MimeTypeOpus:
		law = media.Opus
	}
	buf := make([]byte, 1500)
	dec := make([]int16, 0, frameSamples*2)
	c.recvMu.Lock()
	rate, od := c.rate, c.opusDec
	c.recvMu.Unlock()
	maxPCM := int(int64(c.o.RecordMax) * int64(rate) / int64(time.Second))
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		payload, seq, ok := rtpPayload(buf[:n])
		if !ok {
			continue
		}
		now := time.Now()
		var sentAt time.Time
		var echoed bool
		if law == media.Opus && c.opus != nil {
			sentAt, echoed = c.matchOpus(payload)
		} else if law != media.Opus {
			sentAt, echoed = c.ring.match(payload)
		}
		if c.o.Echo {
			c.echo(payload)
		}
		c.recvMu.Lock()
		c.received++
		if c.firstPkt.IsZero() {
			c.firstPkt = now
		} else if d := now.Sub(c.lastPkt); d >= GapThreshold {
			c.gaps = append(c.gaps, Gap{At: c.lastPkt.Sub(c.start), Length: d})
		}
		c.lastPkt = now
		if c.o.TimeAlign && len(c.pcm) < maxPCM {
			// Fill a pause with silence, so the audio stays on the wall clock (a frame of jitter is left alone).
			due := int(int64(now.Sub(c.firstPkt)) * sampleRate / int64(time.Second))
			if gap := due - len(c.pcm) - frameSamples; gap > 2*frameSamples {
				c.pcm = append(c.pcm, make([]int16, min(gap, maxPCM-len(c.pcm)))...)
			}
		}
		if echoed {
			if c.firstEch.IsZero() {
				c.firstEch = now
			}
			c.rtts = append(c.rtts, now.Sub(sentAt))
			c.echoAt = append(c.echoAt, now.Sub(c.start))
		}
		c.trackSeq(seq)
		if len(c.pcm) < maxPCM {
			if law == media.Opus && od != nil {
				dec = od.decodeInto(dec[:0], payload)
			} else if law != media.Opus {
				dec = decodeInto(dec[:0], law, payload)
			}
			c.pcm = append(c.pcm, dec[:min(len(dec), maxPCM-len(c.pcm))]...)
		}
		c.recvMu.Unlock()
	}
}

// trackSeq extends 16-bit sequence numbers to count loss across wraps.
func (c *call) trackSeq(seq uint16) {
	if !c.seqInit {
		c.seqInit = true
		c.seqBase, c.seqMax, c.lastSeq = int64(seq), int64(seq), seq
		return
	}
	ext := c.seqMax + int64(int16(seq-c.lastSeq))
	if ext > c.seqMax {
		c.seqMax = ext
		c.lastSeq = seq
	}
}

func rtpPayload(b []byte) ([]byte, uint16, bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return nil, 0, false
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < off+4 {
			return nil, 0, false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	}
	end := len(b)
	if b[0]&0x20 != 0 {
		end -= int(b[end-1])
	}
	if off >= end {
		return nil, 0, false
	}
	return b[off:end], binary.BigEndian.Uint16(b[2:]), true
}

// close stops every goroutine of the call and the peer connection.
func (c *call) close() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.txOnce.Do(func() { close(c.stopTx) })
	if err := c.pc.Close(); err != nil {
		c.log.Debug("close peer connection", "err", err)
	}
	c.wg.Wait()
}

// echoGrace is how long a caller that hangs up keeps listening for the echoes of frames it already sent. Without
// it a frame sent a round trip before the hang-up counted as lost although its echo was on its way: a few frames
// per run, which alone made a run "unclean" in the bench (the bench's plain-RTP baseline waits as long).
const echoGrace = 200 * time.Millisecond

// drainEchoes stops the sender and waits, up to echoGrace, until every frame sent has been echoed. Only a call that
// has been echoed waits: one to a destination that does not echo hangs up at once.
func (c *call) drainEchoes() {
	c.txOnce.Do(func() { close(c.stopTx) })
	c.recvMu.Lock()
	echoed := !c.firstEch.IsZero()
	c.recvMu.Unlock()
	if !echoed || c.opus != nil {
		return
	}
	for deadline := time.Now().Add(echoGrace); c.ring.awaited() > 0 && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
}

// report stops the media and fills in the measurements. The returned report
// is final once Call/Receive return.
func (c *call) report() *Report {
	c.txOnce.Do(func() { close(c.stopTx) })
	r := &c.rep
	r.CallID = c.o.CallID
	r.Duration = time.Since(c.start)
	r.Sent = c.sent.Load()
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	r.Received = c.received
	if !c.firstPkt.IsZero() {
		r.FirstPacketAfter = c.firstPkt.Sub(c.start)
	}
	if !c.firstEch.IsZero() {
		r.FirstEchoAfter = c.firstEch.Sub(c.start)
	}
	if c.seqInit {
		expected := c.seqMax - c.seqBase + 1
		r.Lost = max(expected-int64(c.received), 0)
		r.Loss = float64(r.Lost) / float64(expected)
	}
	r.RTTs = append([]time.Duration(nil), c.rtts...)
	r.EchoAt = append([]time.Duration(nil), c.echoAt...)
	r.RTT = Summarize(r.RTTs)
	if c.opus == nil {
		r.NotEchoed = c.ring.notEchoed()
	}
	r.Gaps = append([]Gap(nil), c.gaps...)
	r.Audio = append([]int16(nil), c.pcm...)
	r.AudioRate = c.rate
	if c.opus != nil {
		r.Lookahead = time.Duration(c.opus.lookahead) * time.Second / opusRate
	}
	r.HeardHz = c.o.ExpectHz
	r.Heard = audio.Detect(r.Audio, c.rate, c.o.ExpectHz)
	return r
}
