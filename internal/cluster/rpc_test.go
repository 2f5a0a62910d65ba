package cluster

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// captureHandler keeps every record with the attributes its logger carries (With) ahead of the record's own.
type captureHandler struct {
	mu    *sync.Mutex
	attrs []slog.Attr
	recs  *[][]slog.Attr
	msgs  *[]string
}

func (h captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h captureHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := append([]slog.Attr{}, h.attrs...)
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a); return true })
	h.mu.Lock()
	*h.recs = append(*h.recs, attrs)
	*h.msgs = append(*h.msgs, r.Message)
	h.mu.Unlock()
	return nil
}
func (h captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(append([]slog.Attr{}, h.attrs...), as...)
	return h
}
func (h captureHandler) WithGroup(string) slog.Handler { return h }

// Every log line of the cluster names its own node once as node=; a line about another node names it otherwise,
// so that neither a reader nor a JSON parser (which keeps the last of two equal keys) takes one node for the other.
func TestForwardResendLogNamesNodeOnce(t *testing.T) {
	mr := miniredis.RunT(t)
	var mu sync.Mutex
	var recs [][]slog.Attr
	var msgs []string
	log := slog.New(captureHandler{mu: &mu, recs: &recs, msgs: &msgs})
	start := func(id string, logger *slog.Logger) *Cluster {
		rc := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
		t.Cleanup(func() { rc.Close() })
		c, err := New(Options{Client: rc, Prefix: "f:", Self: Node{ID: id}, Heartbeat: 100 * time.Millisecond,
			TTL: 10 * time.Second, CPU: func() float64 { return 0 }, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		return c
	}
	entered, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	a := start("a", log)
	b := start("b", slog.New(slog.DiscardHandler))
	b.SetHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	}))
	req, _ := http.NewRequest("POST", "/rooms", nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, _ := a.c.PubSubNumSub(context.Background(), a.keys.RPC("b")).Result()
		if n[a.keys.RPC("b")] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b is not listening")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	go func() {
		<-entered
		mr.Close() // the request reached b; its resends cannot be published
	}()
	_, _ = a.Forward(ctx, "b", req, nil)

	mu.Lock()
	defer mu.Unlock()
	found := false
	for i, attrs := range recs {
		if msgs[i] != "cluster: resend of a forwarded request failed" {
			continue
		}
		found = true
		var nodes []string
		for _, at := range attrs {
			if at.Key == "node" {
				nodes = append(nodes, at.Value.String())
			}
		}
		if len(nodes) != 1 || nodes[0] != "a" {
			t.Errorf("resend failure logged with node=%v, want node=a alone", nodes)
		}
	}
	if !found {
		t.Fatalf("no resend failure logged; lines: %v", msgs)
	}
}
