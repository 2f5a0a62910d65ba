package aritest

import (
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// wsConn is one events WebSocket. Events are queued under Server.mu, in
// order, and written by the connection's own writer goroutine, so a slow
// client never holds the server lock.
type wsConn struct {
	s     *Server
	apps  []string
	all   bool // subscribeAll=true
	conn  *websocket.Conn
	queue [][]byte      // guarded by s.mu
	dead  bool          // guarded by s.mu
	deaf  bool          // guarded by s.mu; Deafen: open and answering pings, but no events
	kick  chan struct{} // wakes the writer

	endpoints, devices map[string]bool // applications-API subscriptions without events
}

// send queues one event. Called with s.mu held.
func (c *wsConn) send(b []byte) {
	if c.dead || c.deaf {
		return
	}
	c.queue = append(c.queue, b)
	c.wake()
}

func (c *wsConn) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// kill drops the connection without a close frame, like a crashed server.
// Called with s.mu held.
func (c *wsConn) kill() {
	c.dead = true
	if c.conn != nil {
		_ = c.conn.NetConn().Close()
	}
	c.wake()
}

// unregister removes the apps this connection holds. Called with s.mu held.
func (c *wsConn) unregister() {
	c.dead = true
	delete(c.s.conns, c)
	for _, app := range c.apps {
		if c.s.apps[app] == c {
			delete(c.s.apps, app)
		}
	}
	c.wake()
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// serveEvents handles GET /ari/events: it registers the apps before the
// upgrade completes, so a client that sees the socket open can rely on them.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) int {
	q := r.URL.Query()
	var apps []string
	for _, a := range strings.Split(q.Get("app"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			apps = append(apps, a)
		}
	}
	if len(apps) == 0 {
		writeJSON(w, http.StatusBadRequest, errBody{"Missing parameter app"})
		return http.StatusBadRequest
	}
	if !websocket.IsWebSocketUpgrade(r) {
		writeJSON(w, http.StatusBadRequest, errBody{"WebSocket upgrade required"})
		return http.StatusBadRequest
	}
	c := &wsConn{s: s, apps: apps, all: q.Get("subscribeAll") == "true", kick: make(chan struct{}, 1),
		endpoints: map[string]bool{}, devices: map[string]bool{}}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeJSON(w, http.StatusServiceUnavailable, errBody{"shutting down"})
		return http.StatusServiceUnavailable
	}
	s.conns[c] = true
	for _, app := range apps {
		// A newer socket for an app takes it over, as in Asterisk.
		s.apps[app] = c
	}
	s.mu.Unlock()

	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.mu.Lock()
		c.unregister()
		s.mu.Unlock()
		return http.StatusBadRequest
	}
	s.mu.Lock()
	c.conn = conn
	dead := c.dead // DropEvents or Close raced the upgrade
	s.mu.Unlock()
	if dead {
		_ = conn.NetConn().Close()
	}
	conn.SetPingHandler(func(data string) error {
		s.mu.Lock()
		frozen := s.frozen
		s.mu.Unlock()
		if frozen { // a stopped process answers nothing
			return nil
		}
		// A failed pong means a dead socket, which the read loop notices itself.
		_ = conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		return nil
	})

	writerDone := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(writerDone)
		c.writeLoop()
	}()
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			break
		}
	}
	s.mu.Lock()
	c.unregister()
	s.mu.Unlock()
	<-writerDone
	_ = conn.Close()
	return http.StatusSwitchingProtocols
}

// writeLoop writes queued events until the connection dies. While the
// server is frozen it writes nothing.
func (c *wsConn) writeLoop() {
	s := c.s
	for {
		s.mu.Lock()
		if c.dead {
			s.mu.Unlock()
			return
		}
		var batch [][]byte
		if !s.frozen {
			batch, c.queue = c.queue, nil
		}
		s.mu.Unlock()
		for _, b := range batch {
			_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
				_ = c.conn.NetConn().Close() // the reader then unregisters
				s.mu.Lock()
				c.dead = true
				s.mu.Unlock()
				return
			}
		}
		if len(batch) == 0 {
			<-c.kick
		}
	}
}
