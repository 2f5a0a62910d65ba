package webhook

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var secret = []byte(strings.Repeat("s", 32))

func TestSignedDeliveryWithRetry(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if err := Verify(secret, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, time.Now(), time.Minute); err != nil {
			t.Errorf("signature: %v", err)
		}
		if n < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		got = append(got, r.Header.Get(HeaderEvent)+" "+string(body))
		mu.Unlock()
	}))
	defer srv.Close()
	s, err := New(Options{URL: srv.URL, Secret: secret, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	s.Notify(Event{Type: EventEnded, CallID: "c1", Cause: "normal_clearing", Code: 16})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if sent, _, _ := s.Stats(); sent == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered; %d attempts", calls.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if calls.Load() != 3 || len(got) != 1 || !strings.HasPrefix(got[0], "call.ended {") || !strings.Contains(got[0], `"cause":"normal_clearing"`) {
		t.Fatalf("calls %d, got %v", calls.Load(), got)
	}
}

func TestBoundedAttemptsAndFinal4xx(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadRequest} {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.WriteHeader(status)
		}))
		s, err := New(Options{URL: srv.URL, Secret: secret, MaxAttempts: 3, Backoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go s.Run(ctx)
		s.Notify(Event{Type: EventRinging, CallID: "c"})
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, failed, _ := s.Stats(); failed == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %d: never gave up", status)
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		srv.Close()
		want := int32(3)
		if status < 500 {
			want = 1
		}
		if calls.Load() != want {
			t.Errorf("status %d: %d attempts, want %d", status, calls.Load(), want)
		}
	}
}

func TestVerifyRefusesStaleAndForged(t *testing.T) {
	body := []byte(`{"type":"call.ended"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := "1800000000"
	sig := Sign(secret, ts, body)
	if err := Verify(secret, ts, sig, body, now, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := Verify(secret, ts, sig, body, now.Add(10*time.Minute), time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Errorf("stale: %v", err)
	}
	if err := Verify(secret, ts, sig, []byte(`{"type":"call.answered"}`), now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged body: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Options{URL: "ftp://x", Secret: secret}); err == nil {
		t.Error("ftp URL accepted")
	}
	if _, err := New(Options{URL: "https://x", Secret: []byte("short")}); err == nil {
		t.Error("short secret accepted")
	}
}
