package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/patchbay/patchbay/internal/api"
	"github.com/patchbay/patchbay/internal/cluster"
	"github.com/patchbay/patchbay/wire"
)

// apiHandler is the REST API as this node serves it: on a lone node the API itself; in a cluster a router in front
// of it sends each request about a room, or an API call, to the node that holds it (forwarded over Redis, where
// that node's own API authenticates it again), new rooms to the least-loaded node, and calls to a browser user
// to a node where the user is online. Whatever needs no particular node (tokens, numbers, records) is served here.
func (s *Server) apiHandler() http.Handler {
	if s.cluster == nil {
		return s.api
	}
	s.cluster.c.SetHandler(s.api) // forwarded requests run through the API itself, never routed again
	return &clusterRouter{s: s, c: s.cluster.c}
}

type clusterRouter struct {
	s *Server
	c *cluster.Cluster
}

func (rt *clusterRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, api.Prefix)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBody))
	if err != nil {
		api.WriteError(w, api.Errorf(http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "request body over %d bytes", api.MaxBody))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	node, why, err := rt.route(ctx, r.Method, path, body)
	cancel()
	if errors.Is(err, cluster.ErrAtCapacity) {
		rt.s.cluster.log.Warn("new room refused: every node is at its admission ceiling", "path", r.URL.Path)
		api.WriteError(w, api.Errorf(http.StatusServiceUnavailable, wire.CodeUnavailable,
			"every node of the cluster is at its admission ceiling (cluster.max_cpu, cluster.max_calls); try again later"))
		return
	}
	if err != nil {
		rt.s.cluster.log.Warn("API request cannot be routed in the cluster", "path", r.URL.Path, "err", err)
		api.WriteError(w, api.Errorf(http.StatusServiceUnavailable, wire.CodeUnavailable,
			"the cluster's shared state (Redis) is unavailable, so this request cannot be routed; try again shortly"))
		return
	}
	if r.Method == http.MethodGet && path == "/rooms" {
		rt.listRooms(w, r)
		return
	}
	if node == "" || node == rt.c.ID() {
		rt.s.api.ServeHTTP(w, r)
		return
	}
	rep, err := rt.c.Forward(r.Context(), node, r, body)
	if err != nil {
		rt.s.cluster.log.Warn("forward an API request to the node holding it", "path", r.URL.Path, "node", node, "why", why, "err", err)
		api.WriteError(w, api.Errorf(http.StatusServiceUnavailable, wire.CodeUnavailable,
			"node %s, which holds this %s, does not answer; try again shortly", node, why))
		return
	}
	for _, h := range []string{"Content-Type", "Location", "Cache-Control"} {
		if v := rep.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.Header().Set("X-Patchbay-Node", node)
	w.WriteHeader(rep.Status)
	_, _ = w.Write(rep.Body)
}

// route names the node that should serve a request ("" or this node: here) and what it holds there.
func (rt *clusterRouter) route(ctx context.Context, method, path string, body []byte) (node, why string, err error) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case method == http.MethodPost && path == "/rooms":
		n, err := rt.c.PickRoomNode(ctx)
		if err != nil {
			return "", "", err
		}
		return n.ID, "new room", nil
	case parts[0] == "rooms" && len(parts) >= 2:
		return rt.roomNode(ctx, parts[1])
	case method == http.MethodPut && parts[0] == "numbers" && len(parts) == 2:
		var b struct {
			Room string `json:"room"`
		}
		if json.Unmarshal(body, &b) != nil || b.Room == "" {
			return "", "", nil // the API refuses it with its own words
		}
		return rt.roomNode(ctx, b.Room)
	case method == http.MethodPost && path == "/calls":
		var b struct {
			Connect struct {
				User       string `json:"user"`
				Room       string `json:"room"`
				CreateRoom bool   `json:"create_room"`
			} `json:"connect"`
		}
		if json.Unmarshal(body, &b) != nil {
			return "", "", nil
		}
		switch {
		case b.Connect.Room != "":
			return rt.roomNode(ctx, b.Connect.Room)
		case b.Connect.CreateRoom:
			n, err := rt.c.PickRoomNode(ctx)
			if err != nil {
				return "", "", err
			}
			return n.ID, "new room", nil
		case b.Connect.User != "":
			nodes, err := rt.c.UserNodes(ctx, b.Connect.User)
			if err != nil {
				return "", "", err
			}
			if len(nodes) == 0 || slices.Contains(nodes, rt.c.ID()) {
				return "", "", nil
			}
			return nodes[0], "user's browser", nil
		}
	case method == http.MethodDelete && parts[0] == "calls" && len(parts) == 2:
		e, ok, err := rt.c.APICall(ctx, parts[1])
		if err != nil {
			return "", "", err
		}
		if ok && e.Node != rt.c.ID() && rt.c.NodeAlive(ctx, e.Node) {
			return e.Node, "call", nil
		}
	}
	return "", "", nil
}

// roomNode is the live node holding room, "" when it is here or nowhere (the API then answers itself).
func (rt *clusterRouter) roomNode(ctx context.Context, room string) (string, string, error) {
	if rt.s.rooms.Exists(room) {
		return "", "", nil
	}
	n, ok, err := rt.c.RoomOwner(ctx, room)
	if err != nil || !ok {
		return "", "", err
	}
	return n.ID, "room", nil
}

// listRooms is GET /rooms across the cluster: this node's API answers (and authenticates), then the rooms the
// other live nodes hold are added from the directory, each with its "node".
func (rt *clusterRouter) listRooms(w http.ResponseWriter, r *http.Request) {
	rec := &bufferedResponse{header: http.Header{}}
	rt.s.api.ServeHTTP(rec, r)
	if rec.status != http.StatusOK {
		rec.flush(w)
		return
	}
	var local struct {
		Rooms []map[string]any `json:"rooms"`
	}
	if err := json.Unmarshal(rec.body.Bytes(), &local); err != nil {
		rec.flush(w)
		return
	}
	for _, room := range local.Rooms {
		room["node"] = rt.c.ID()
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	others, err := rt.c.Rooms(ctx)
	if err != nil {
		api.WriteError(w, api.Errorf(http.StatusServiceUnavailable, wire.CodeUnavailable,
			"the cluster's rooms directory (Redis) is unavailable; try again shortly"))
		return
	}
	for _, o := range others {
		if o.Node == rt.c.ID() {
			continue
		}
		var room map[string]any
		if json.Unmarshal(o.Room, &room) != nil {
			room = map[string]any{"id": o.ID}
		}
		room["participants"], room["node"] = o.Participants, o.Node
		local.Rooms = append(local.Rooms, room)
	}
	api.WriteJSON(w, http.StatusOK, local)
}

// bufferedResponse holds a response to look at before it is sent.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) WriteHeader(s int) {
	if b.status == 0 {
		b.status = s
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedResponse) flush(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}
