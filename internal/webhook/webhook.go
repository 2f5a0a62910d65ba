// Package webhook delivers call progress events to a backend's URL as signed JSON POSTs.
//
// Each request carries:
//
//	X-Patchbay-Event:     the event type, e.g. "call.answered"
//	X-Patchbay-Delivery:  a unique id for the event (the same on every retry, for de-duplication)
//	X-Patchbay-Timestamp: Unix seconds when this attempt was signed
//	X-Patchbay-Signature: "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body))
//
// Receivers check the signature with Verify and refuse timestamps older than a few minutes (replays). Failed
// deliveries (network errors, 408, 429, 5xx) are retried with exponential backoff, a bounded number of times;
// other 4xx answers are final. The queue is bounded: when the backend is down long enough for it to fill, new
// events are dropped and counted, never blocking a call.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Header names.
const (
	HeaderEvent     = "X-Patchbay-Event"
	HeaderDelivery  = "X-Patchbay-Delivery"
	HeaderTimestamp = "X-Patchbay-Timestamp"
	HeaderSignature = "X-Patchbay-Signature"
)

// Event types.
const (
	EventRinging  = "call.ringing"
	EventAnswered = "call.answered"
	EventEnded    = "call.ended"
	// EventRecord carries a call record (internal/cdr) as the body, on the records webhook.
	EventRecord = "call.record"
)

// Event is one call progress event.
type Event struct {
	Type   string    `json:"type"`
	CallID string    `json:"call_id"`
	At     time.Time `json:"at"`
	// To is the destination; Kind its kind (extension, pstn, user).
	To   string `json:"to,omitempty"`
	Kind string `json:"kind,omitempty"`
	Room string `json:"room,omitempty"`
	// Cause and Code (Q.850) are set on call.ended.
	Cause string `json:"cause,omitempty"`
	Code  int    `json:"code,omitempty"`
	// Duration is the talk time in seconds on call.ended.
	Duration float64 `json:"duration,omitempty"`
	// APIKey is the name of the key that placed the call.
	APIKey string `json:"api_key,omitempty"`
}

// Options configure a Sender.
type Options struct {
	URL    string
	Secret []byte
	// MaxAttempts bounds deliveries of one event (default 6); Backoff is the first retry delay (default 500 ms),
	// doubled each time up to MaxBackoff (default 30 s).
	MaxAttempts         int
	Backoff, MaxBackoff time.Duration
	Timeout             time.Duration // per request; default 5 s
	QueueSize           int           // default 1024
	Workers             int           // default 4
	Client              *http.Client
	Logger              *slog.Logger
}

// Sender posts events. Run delivers; Notify enqueues.
type Sender struct {
	o       Options
	queue   chan delivery
	dropped atomic.Int64
	failed  atomic.Int64
	sent    atomic.Int64
}

type delivery struct {
	id   string
	ev   Event
	body []byte
}

// New checks o and returns a Sender.
func New(o Options) (*Sender, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("webhook: URL %q is not an http(s) URL; set webhook.url", o.URL)
	}
	if len(o.Secret) < 32 {
		return nil, errors.New("webhook: secret shorter than 32 bytes; set webhook.secret (e.g. `openssl rand -hex 32`)")
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 6
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is an answer, not a place to send signed events
		}}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Secret = append([]byte(nil), o.Secret...)
	return &Sender{o: o, queue: make(chan delivery, o.QueueSize)}, nil
}

// Notify enqueues ev without blocking. A nil Sender does nothing.
func (s *Sender) Notify(ev Event) {
	if s == nil {
		return
	}
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	body, err := json.Marshal(ev)
	if err != nil {
		s.o.Logger.Error("webhook: encode event", "call", ev.CallID, "err", err)
		return
	}
	s.enqueue(ev, body)
}

func (s *Sender) enqueue(ev Event, body []byte) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	select {
	case s.queue <- delivery{id: hex.EncodeToString(b[:]), ev: ev, body: body}:
	default:
		n := s.dropped.Add(1)
		s.o.Logger.Warn("webhook queue full: event dropped", "call", ev.CallID, "type", ev.Type, "dropped_total", n)
	}
}

// NotifyJSON enqueues any JSON body (e.g. a call record) as an event of type typ without blocking; it is signed,
// retried and bounded like Notify's. A nil Sender does nothing.
func (s *Sender) NotifyJSON(typ, callID string, v any) {
	if s == nil {
		return
	}
	body, err := json.Marshal(v)
	if err != nil {
		s.o.Logger.Error("webhook: encode event", "call", callID, "type", typ, "err", err)
		return
	}
	s.enqueue(Event{Type: typ, CallID: callID}, body)
}

// Stats returns counts of events delivered, given up on and dropped.
func (s *Sender) Stats() (sent, failed, dropped int64) {
	return s.sent.Load(), s.failed.Load(), s.dropped.Load()
}

// Run delivers events until ctx ends; events still queued then are abandoned.
func (s *Sender) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range s.o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case d := <-s.queue:
					s.deliver(ctx, d)
				}
			}
		}()
	}
	wg.Wait()
}

func (s *Sender) deliver(ctx context.Context, d delivery) {
	log := s.o.Logger.With("call", d.ev.CallID, "type", d.ev.Type, "delivery", d.id)
	delay := s.o.Backoff
	for attempt := 1; ; attempt++ {
		retry, err := s.post(ctx, d)
		if err == nil {
			s.sent.Add(1)
			return
		}
		if !retry || attempt >= s.o.MaxAttempts {
			s.failed.Add(1)
			log.Warn("webhook delivery failed; giving up", "attempts", attempt, "err", err)
			return
		}
		log.Debug("webhook delivery failed; retrying", "attempt", attempt, "in", delay, "err", err)
		// Full jitter keeps many instances from retrying in step.
		wait := delay/2 + jitter(delay/2)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		delay = min(delay*2, s.o.MaxBackoff)
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	n, err := rand.Int(rand.Reader, big.NewInt(int64(d)))
	if err != nil {
		return 0
	}
	return time.Duration(n.Int64())
}

func (s *Sender) post(ctx context.Context, d delivery) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL, bytes.NewReader(d.body))
	if err != nil {
		return false, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Patchbay-Webhook/1")
	req.Header.Set(HeaderEvent, d.ev.Type)
	req.Header.Set(HeaderDelivery, d.id)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(s.o.Secret, ts, d.body))
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode >= 500:
		return true, fmt.Errorf("backend answered %s", resp.Status)
	default:
		return false, fmt.Errorf("backend answered %s (not retried)", resp.Status)
	}
}

// Sign returns the X-Patchbay-Signature value for body signed at timestamp ts (Unix seconds as text).
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// ErrBadSignature is returned by Verify.
var ErrBadSignature = errors.New("webhook: bad or stale signature")

// Verify checks a received webhook: the signature over ts and body, and that ts is within tolerance of now.
func Verify(secret []byte, ts, sig string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrBadSignature, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp is %v away from now (tolerance %v)", ErrBadSignature, d.Round(time.Second), tolerance)
	}
	if !hmac.Equal([]byte(sig), []byte(Sign(secret, ts, body))) {
		return ErrBadSignature
	}
	return nil
}
