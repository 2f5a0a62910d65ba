package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// API requests about a room or an API call that another node holds are forwarded to that node over Redis pub/sub:
// the request (method, path, the caller's own Authorization header, body) is published on the owner's channel,
// the owner runs it through its own API handler, which authenticates it again, and publishes the reply on the
// requester's reply channel. Forwarding adds no trust: a request that reaches a node this way is exactly what the
// client sent. Pub/sub loses what is published while a node is disconnected (a failover), so the requester publishes
// a request again every resendEvery until a reply comes (or forwardTimeout ends it: unavailable, and the client
// retries); the owner runs each request once and answers a resend of one it ran from what it remembers.

// ErrNodeUnreachable is returned by Forward when the owner is not listening or does not answer in time.
var ErrNodeUnreachable = errors.New("cluster: the node holding it does not answer")

// forwardTimeout bounds one forwarded request.
const forwardTimeout = 10 * time.Second

// resendEvery is how long a requester waits for a reply before it publishes the request again.
const resendEvery = time.Second

// servedTTL is how long an owner remembers a request it ran, to answer its resends: longer than a requester waits.
// maxServed bounds that memory; past it a resend may run a request twice.
const (
	servedTTL = 2 * forwardTimeout
	maxServed = 4096
)

// maxConcurrentForwarded bounds forwarded requests this node runs at once.
const maxConcurrentForwarded = 64

type rpcRequest struct {
	ID     string      `json:"id"`
	From   string      `json:"from"`
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"body,omitempty"`
}

// Reply is a forwarded request's response.
type Reply struct {
	ID     string      `json:"id"`
	Status int         `json:"status"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"body,omitempty"`
}

type rpc struct {
	c       *Cluster
	handler http.Handler
	slots   chan struct{}

	mu      sync.Mutex
	pending map[string]chan Reply // this node's requests awaiting a reply, by request ID
	served  map[string]*served    // requests this node ran or runs, by requester and request ID
	wg      sync.WaitGroup
}

// served is a forwarded request an owner ran (rep set) or is running (rep nil).
type served struct {
	at  time.Time
	rep *Reply
}

func newRPC(c *Cluster) *rpc {
	return &rpc{c: c, slots: make(chan struct{}, maxConcurrentForwarded), pending: map[string]chan Reply{},
		served: map[string]*served{}}
}

// SetHandler sets the handler forwarded requests run through (this node's own API, without the cluster routing in
// front of it, so a forwarded request is never forwarded again). Call it before Run.
func (c *Cluster) SetHandler(h http.Handler) { c.rpc.handler = h }

// run listens on this node's request and reply channels until ctx ends. go-redis re-subscribes by itself after a
// lost connection or a failover.
func (r *rpc) run(ctx context.Context) {
	k := r.c.keys
	self := r.c.o.Self.ID
	ps := r.c.c.Subscribe(ctx, k.RPC(self), k.RPCReply(self))
	defer ps.Close()
	msgs := ps.Channel(redis.WithChannelHealthCheckInterval(r.c.o.Heartbeat))
	defer r.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			switch m.Channel {
			case k.RPCReply(self):
				r.reply(m.Payload)
			case k.RPC(self):
				r.serve(ctx, m.Payload)
			}
		}
	}
}

func (r *rpc) reply(payload string) {
	var rep Reply
	if err := json.Unmarshal([]byte(payload), &rep); err != nil {
		r.c.log.Warn("cluster: undecodable forwarded reply dropped", "err", err)
		return
	}
	r.mu.Lock()
	ch := r.pending[rep.ID]
	delete(r.pending, rep.ID)
	r.mu.Unlock()
	if ch != nil {
		ch <- rep // buffered: never blocks
	}
}

func (r *rpc) serve(ctx context.Context, payload string) {
	var req rpcRequest
	if err := json.Unmarshal([]byte(payload), &req); err != nil || req.ID == "" || req.From == "" {
		r.c.log.Warn("cluster: undecodable forwarded request dropped", "err", err)
		return
	}
	key := req.From + "/" + req.ID
	if !r.first(key, req.From) {
		return
	}
	select {
	case r.slots <- struct{}{}:
	default:
		r.forget(key) // not run: a resend may try again
		r.send(ctx, req, Reply{ID: req.ID, Status: http.StatusServiceUnavailable,
			Body: []byte(`{"error":"unavailable","message":"the node holding it is overloaded; try again"}`)})
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() { <-r.slots }()
		rep := r.run1(ctx, req)
		r.mu.Lock()
		if s := r.served[key]; s != nil {
			s.rep = &rep
		}
		r.mu.Unlock()
		r.send(ctx, req, rep)
	}()
}

// first says whether the request key is new, and remembers it. A resend of a request that ran gets its reply
// again (the first was lost); a resend of one still running gets nothing (its reply is on the way).
func (r *rpc) first(key, from string) bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.served[key]; ok {
		if s.rep != nil {
			rep := *s.rep
			r.wg.Add(1)
			go func() { // off the subscription loop: send waits on Redis
				defer r.wg.Done()
				r.send(context.Background(), rpcRequest{ID: rep.ID, From: from}, rep)
			}()
		}
		return false
	}
	for k, s := range r.served {
		if now.Sub(s.at) > servedTTL {
			delete(r.served, k)
		}
	}
	if len(r.served) < maxServed {
		r.served[key] = &served{at: now}
	}
	return true
}

func (r *rpc) forget(key string) {
	r.mu.Lock()
	delete(r.served, key)
	r.mu.Unlock()
}

// run1 runs one forwarded request through the local API handler.
func (r *rpc) run1(ctx context.Context, req rpcRequest) Reply {
	if r.handler == nil {
		return Reply{ID: req.ID, Status: http.StatusServiceUnavailable, Body: []byte(`{"error":"unavailable","message":"node starting"}`)}
	}
	rctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(rctx, req.Method, req.Path, bytes.NewReader(req.Body))
	if err != nil {
		return Reply{ID: req.ID, Status: http.StatusBadRequest, Body: []byte(`{"error":"bad_request","message":"forwarded request is not valid"}`)}
	}
	hr.Header = req.Header
	hr.RemoteAddr = "cluster:" + req.From
	w := &recorder{header: http.Header{}}
	r.handler.ServeHTTP(w, hr)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return Reply{ID: req.ID, Status: w.status, Header: w.header, Body: w.body.Bytes()}
}

func (r *rpc) send(ctx context.Context, req rpcRequest, rep Reply) {
	b, err := json.Marshal(rep)
	if err != nil {
		return
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := r.c.c.Publish(sctx, r.c.keys.RPCReply(req.From), b).Err(); err != nil {
		r.c.log.Warn("cluster: reply to a forwarded request lost; the requester times out", "from", req.From, "err", err)
	}
}

// Forward sends an API request to node and returns its reply. The request's body must already be read (body).
func (c *Cluster) Forward(ctx context.Context, node string, r *http.Request, body []byte) (Reply, error) {
	var id [12]byte
	_, _ = rand.Read(id[:])
	req := rpcRequest{ID: hex.EncodeToString(id[:]), From: c.o.Self.ID, Method: r.Method, Path: r.URL.RequestURI(),
		Header: http.Header{}, Body: body}
	for _, h := range []string{"Authorization", "X-Api-Key", "Content-Type", "Accept"} {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	b, err := json.Marshal(req)
	if err != nil {
		return Reply{}, fmt.Errorf("encode forwarded request: %w", err)
	}
	ch := make(chan Reply, 1)
	c.rpc.mu.Lock()
	c.rpc.pending[req.ID] = ch
	c.rpc.mu.Unlock()
	defer func() {
		c.rpc.mu.Lock()
		delete(c.rpc.pending, req.ID)
		c.rpc.mu.Unlock()
	}()
	n, err := c.c.Publish(ctx, c.keys.RPC(node), b).Result()
	if err != nil {
		return Reply{}, unavailable(ctx, "forward to node "+node, err)
	}
	if _, sharded := c.c.(*redis.ClusterClient); n == 0 && !sharded {
		// On a Redis Cluster the count is only the receiving shard's subscribers, so 0 proves nothing there.
		return Reply{}, fmt.Errorf("forward to node %s: %w (not listening)", node, ErrNodeUnreachable)
	}
	t := time.NewTimer(forwardTimeout)
	defer t.Stop()
	resend := time.NewTicker(resendEvery)
	defer resend.Stop()
	for {
		select {
		case rep := <-ch:
			return rep, nil
		case <-resend.C:
			// The request or its reply may have been lost in a reconnection; the owner runs it once whatever
			// happens, and a failed resend is only one chance fewer before the timeout.
			if err := c.c.Publish(ctx, c.keys.RPC(node), b).Err(); err != nil {
				c.log.Debug("cluster: resend of a forwarded request failed", "to", node, "err", err) // node= is this node (c.log)
			}
		case <-t.C:
			return Reply{}, fmt.Errorf("forward to node %s: %w within %v", node, ErrNodeUnreachable, forwardTimeout)
		case <-ctx.Done():
			return Reply{}, ctx.Err()
		}
	}
}

// recorder is the ResponseWriter a forwarded request is served into.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }
func (w *recorder) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
}
func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}
