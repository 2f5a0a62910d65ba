//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/patchbay/patchbay/ari"
	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/internal/cluster"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/audio"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
	"github.com/patchbay/patchbay/wire"
)

// The TestCluster… group: two Patchbay nodes, each beside its own Asterisk (node a's SIP on 127.0.0.2, node b's
// on 127.0.0.3, joined by the inter-node trunk), sharing state in Redis behind Sentinel (a master, a replica and
// three Sentinels). Node a runs in the test process, node b as its own process so that it can be killed.

const (
	clusterAPIKey      = "cluster-test-key-0123456789abcdef"
	clusterSIPSecret   = "cluster-sip-secret-0123456789abcdef0123"
	clusterTokenSecret = "cluster-token-secret-0123456789abcdefghijklmnopqrstuvwxyz"
	clusterCarrierIP   = "127.0.0.4" // a carrier calling DIDs into either Asterisk
)

type clusterEnv struct {
	sent       *testenv.RedisSentinel
	astA, astB *testenv.Asterisk
	sipA, sipB string
	a          *testenv.Patchbay
	b          *testenv.PatchbayProcess
	eng        *synth.Engine
	phone      *testenv.Baresip // 101 on node a
	phone2     *testenv.Baresip // 102 on node a
	inspB      *ari.Client
	dir        string
}

func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	e := &clusterEnv{dir: t.TempDir()}
	e.sent = testenv.StartRedisSentinel(t)
	ports := testenv.FreePorts(t, 3) // SIP of a, SIP of b, HTTP of a
	e.sipA, e.sipB = fmt.Sprintf("127.0.0.2:%d", ports[0]), fmt.Sprintf("127.0.0.3:%d", ports[1])
	ast := func(self, peer, sip, peerSIP string) func(*asteriskconfigs.Params) {
		return func(p *asteriskconfigs.Params) {
			host, port, _ := net.SplitHostPort(sip)
			p.SIPBindAddr = host
			fmt.Sscan(port, &p.SIPPort)
			p.Trunk = asteriskconfigs.Trunk{Name: "carrier", Host: clusterCarrierIP + ":5060", Match: []string{clusterCarrierIP}}
			p.ClusterNode = self
			p.ClusterPeers = []asteriskconfigs.ClusterPeer{asteriskconfigs.ClusterPeerFor(self, peer, peerSIP, clusterSIPSecret)}
		}
	}
	e.astA = testenv.StartAsterisk(t, testenv.AsteriskOptions{Params: ast("a", "b", e.sipA, e.sipB)})
	e.astB = testenv.StartAsterisk(t, testenv.AsteriskOptions{Params: ast("b", "a", e.sipB, e.sipA)})
	node := func(c *config.Config, self, peer, sip, peerSIP string) {
		_, port, _ := net.SplitHostPort(c.HTTP.Listen)
		c.ARI.Instance = self // distinct resource IDs, and the node's ID
		c.Auth.TokenSecret = clusterTokenSecret
		c.Auth.APIKeys = map[string]config.Secret{"crm": clusterAPIKey}
		c.API.Dial = map[string][]string{"crm": {"ext"}}
		c.Redis = config.Redis{MasterName: e.sent.MasterName, Sentinels: e.sent.Sentinels, Prefix: "patchbay:"}
		c.Cluster.Enabled, c.Cluster.NodeID = true, self
		c.Cluster.PublicURL = "wss://localhost:" + port + "/ws"
		c.Cluster.SIPAddress = sip
		c.Cluster.Secret = clusterSIPSecret
		c.Cluster.Peers = []config.ClusterPeer{{ID: peer, SIPAddress: peerSIP}}
		c.Cluster.MaxCPU = 1 // this shared host's CPU is not what the tests place rooms by
		// A dead node's entries expire within the TTL of its last beat; 8 s (heartbeat 2 s) keeps "within 10 s"
		// true with room for a loaded host's polling.
		c.Cluster.TTL = 8 * time.Second
		c.Limits.PerToken.MaxConcurrent = 2
		c.Rooms.Grace = 3 * time.Second
	}
	e.a = testenv.StartPatchbay(t, e.astA, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.HTTP.Listen = fmt.Sprintf("127.0.0.1:%d", ports[2])
		node(c, "a", "b", e.sipA, e.sipB)
		c.Cluster.MaxCalls = 1 // with a call up, node a takes no new room: the kill test places one on b
	}})
	e.b = testenv.StartPatchbayProcess(t, e.astB, testenv.PatchbayOptions{Config: func(c *config.Config) {
		node(c, "b", "a", e.sipB, e.sipA)
	}})
	var err error
	if e.eng, err = synth.NewEngine(synth.EngineOptions{LoopbackOnly: true}); err != nil {
		t.Fatal(err)
	}
	e.inspB = inspector(t, e.astB)
	tone := e.wav(t, 1000)
	for _, name := range []string{"101", "102"} {
		ph := testenv.StartBaresip(t, testenv.BaresipOptions{Name: name, Registrar: e.sipA, User: name,
			Password: e.astA.Phone(t, name).Password, Transport: "udp", PlayWAV: tone})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := ph.WaitRegistered(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if name == "101" {
			e.phone = ph
		} else {
			e.phone2 = ph
		}
	}
	e.waitFor(t, 15*time.Second, "both nodes see each other alive", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return e.a.Server.Cluster().NodeAlive(ctx, "b")
	})
	return e
}

func (e *clusterEnv) wav(t *testing.T, hz float64) string {
	t.Helper()
	p := filepath.Join(e.dir, fmt.Sprintf("%d.wav", int(hz)))
	if err := audio.WriteWAV(p, audio.Sine(hz, 8000, 60*time.Second, 0.25), 8000); err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *clusterEnv) waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// tlsFor trusts the node behind url (each node serves its own Asterisk's test certificate).
func (e *clusterEnv) tlsFor(url string) *tls.Config {
	if url == e.b.URL {
		return e.b.TLS
	}
	return e.a.TLS
}

func (e *clusterEnv) urlOf(node string) string {
	if node == "b" {
		return e.b.URL
	}
	return e.a.URL
}

// dial opens a signalling connection to url with token.
func (e *clusterEnv) dial(t *testing.T, ctx context.Context, url, token string) *signal.Conn {
	t.Helper()
	c, err := signal.Dial(ctx, url, token, signal.DialOptions{TLSConfig: e.tlsFor(url)})
	if err != nil {
		t.Fatalf("signal dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *clusterEnv) tab(t *testing.T, ctx context.Context, node, user string, dial ...string) *signal.Conn {
	t.Helper()
	return e.dial(t, ctx, e.urlOf(node), e.a.Token(t, user, dial...))
}

// waitPresence waits until the cluster has user's live tabs on exactly nodes.
func (e *clusterEnv) waitPresence(t *testing.T, user string, nodes ...string) time.Duration {
	t.Helper()
	slices.Sort(nodes)
	return e.waitFor(t, 15*time.Second, fmt.Sprintf("%s online on %v", user, nodes), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		got, err := e.a.Server.Cluster().UserNodes(ctx, user)
		return err == nil && slices.Equal(got, nodes) || (len(nodes) == 0 && err == nil && len(got) == 0)
	})
}

// api sends one REST request to node with the cluster's API key; it returns the status and the body.
func (e *clusterEnv) api(t *testing.T, node, method, path string, body any) (int, []byte, http.Header) {
	t.Helper()
	st, data, h, err := e.apiDo(node, method, path, body)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, node, err)
	}
	return st, data, h
}

func (e *clusterEnv) apiTry(node, method, path string, body any) (int, []byte, error) {
	st, data, _, err := e.apiDo(node, method, path, body)
	return st, data, err
}

func (e *clusterEnv) apiDo(node, method, path string, body any) (int, []byte, http.Header, error) {
	base := e.a.BaseURL
	tc := e.a.TLS
	if node == "b" {
		base, tc = e.b.BaseURL, e.b.TLS
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, base+"/api/v1"+path, rd)
	req.Header.Set("Authorization", "Bearer "+clusterAPIKey)
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data, resp.Header, nil
}

func (e *clusterEnv) apiOK(t *testing.T, node, method, path string, body any, want int, out any) http.Header {
	t.Helper()
	st, data, h := e.api(t, node, method, path, body)
	// A shared host stalls now and then for longer than Redis's timeouts; an API client retries a 503.
	for try := 0; st == http.StatusServiceUnavailable && try < 3; try++ {
		t.Logf("%s %s on %s: %s; retrying", method, path, node, data)
		time.Sleep(500 * time.Millisecond)
		st, data, h = e.api(t, node, method, path, body)
	}
	if st != want {
		t.Fatalf("%s %s on %s: %d %s, want %d", method, path, node, st, data, want)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return h
}

// clusterStatus runs `patchbay cluster status --json` as an operator would, against the cluster's Sentinels.
func (e *clusterEnv) clusterStatus(t *testing.T) cluster.Status {
	t.Helper()
	f := writeMinimalConfig(t)
	extra := fmt.Sprintf("redis:\n  master_name: %s\n  sentinels: [%s]\n", e.sent.MasterName, strings.Join(e.sent.Sentinels, ", "))
	b, _ := os.ReadFile(f)
	if err := os.WriteFile(f, append(b, extra...), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(buildPatchbay(t), "cluster", "status", "--json", "--config", f)
	cmd.Env = append(os.Environ(), "PATCHBAY_CONFIG=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("patchbay cluster status: %v\n%s", err, out)
	}
	var st cluster.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("patchbay cluster status printed no JSON: %v\n%s", err, out)
	}
	return st
}

// createAndJoin creates a room through node's API, mints a token for user and joins it briefly (following a
// redirect); any failure is returned, never fatal (it runs on its own goroutine and is retried).
func (e *clusterEnv) createAndJoin(ctx context.Context, node, user string) error {
	st, data, err := e.apiTry(node, "POST", "/rooms", map[string]any{"name": "after-failover"})
	var rm struct{ ID string }
	if err != nil || st != http.StatusCreated || json.Unmarshal(data, &rm) != nil {
		return fmt.Errorf("create room: %d %s %v", st, data, err)
	}
	var tk struct{ Token string }
	st, data, err = e.apiTry(node, "POST", "/rooms/"+rm.ID+"/tokens", map[string]any{"user": user})
	if err != nil || st != http.StatusCreated || json.Unmarshal(data, &tk) != nil {
		return fmt.Errorf("room token: %d %s %v", st, data, err)
	}
	rep, _, err := e.joinAnywhere(ctx, nil, node, tk.Token, synth.JoinOptions{Room: rm.ID}, synth.CallOptions{Duration: 500 * time.Millisecond})
	if rep == nil {
		return fmt.Errorf("join: %w", err)
	}
	if _, joined := rep.Event(signal.TypeJoined); !joined {
		ev, _ := rep.Event(signal.TypeError)
		return fmt.Errorf("join refused: %s %v", ev.Error, err)
	}
	return nil
}

// roomNode is the node holding room.
func (e *clusterEnv) roomNode(t *testing.T, room string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, ok, err := e.a.Server.Cluster().RoomOwner(ctx, room)
	if err != nil || !ok {
		t.Fatalf("room %s has no owner: %v", room, err)
	}
	return n.ID
}

// joinAnywhere joins room as a browser connected to node, following a "redirect" to the node holding it, and
// runs the membership. It reports where it ended up.
func (e *clusterEnv) joinAnywhere(ctx context.Context, _ *testing.T, node, token string, j synth.JoinOptions, o synth.CallOptions) (*synth.Report, string, error) {
	url := e.urlOf(node)
	for hop := 0; ; hop++ {
		c, err := signal.Dial(ctx, url, token, signal.DialOptions{TLSConfig: e.tlsFor(url)})
		if err != nil {
			return nil, url, err
		}
		rep, err := e.eng.Join(ctx, c, j, o)
		c.Close()
		ev, redirected := rep.Event(signal.TypeRedirect)
		if !redirected || hop > 0 {
			return rep, url, err
		}
		if ev.URL == url || (ev.URL != e.a.URL && ev.URL != e.b.URL) {
			return rep, url, fmt.Errorf("redirect to %q from %s", ev.URL, url)
		}
		if ev.Ticket != "" {
			j = synth.JoinOptions{Ticket: ev.Ticket}
		}
		url = ev.URL
	}
}

// slowIncoming delays "incoming" before the synthetic browser sees it: the other node's tab rings first.
type slowIncoming struct {
	c *signal.Conn
	d time.Duration
}

func (s slowIncoming) Send(ctx context.Context, m signal.Message) error { return s.c.Send(ctx, m) }
func (s slowIncoming) Recv(ctx context.Context) (signal.Message, error) {
	m, err := s.c.Recv(ctx)
	if err == nil && m.Type == signal.TypeIncoming {
		time.Sleep(s.d)
	}
	return m, err
}

type recvResult struct {
	rep *synth.Report
	err error
}

func receiveBG(ctx context.Context, eng *synth.Engine, sig synth.Signaller, o synth.CallOptions) <-chan recvResult {
	ch := make(chan recvResult, 1)
	go func() {
		rep, err := eng.Receive(ctx, sig, o)
		ch <- recvResult{rep, err}
	}()
	return ch
}

// phoneHears checks the phone's recording of its last call for hz.
func phoneHears(t *testing.T, ctx context.Context, ph *testenv.Baresip, hz float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, rate, err := ph.Recording(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep := audio.Detect(s, rate, hz); !rep.Detected(10) {
		t.Errorf("phone %s did not hear %v Hz: %+v (%s)", ph.Name, hz, rep, ph.RecordingPath())
	}
}

func TestClusterTwoNodes(t *testing.T) {
	testenv.Heavy(t)
	start := time.Now()
	e := newClusterEnv(t)
	t.Logf("MEASURED cluster env up (Sentinel, 2 Asterisks, 2 Patchbays, 2 phones) in %v", time.Since(start).Round(time.Millisecond))
	// Each part has its own deadline, so one that hangs cannot starve the next.
	part := func(t *testing.T, d time.Duration) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("phone on a calls alice whose only tab is on b", func(t *testing.T) {
		ctx := part(t, time.Minute)
		tab := e.tab(t, ctx, "b", "alice")
		e.waitPresence(t, "alice", "b")
		done := receiveBG(ctx, e.eng, tab, synth.CallOptions{ToneHz: 440, ExpectHz: 1000, Duration: 4 * time.Second})
		if err := e.phone.Dial(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil {
			t.Fatalf("alice's tab on b: %v", r.err)
		}
		in, _ := r.rep.Event(signal.TypeIncoming)
		t.Logf("tab on b: incoming %+v, heard %+v, first packet after %v", in, r.rep.Heard, r.rep.FirstPacketAfter)
		if !r.rep.Heard.Detected(10) {
			t.Errorf("the tab on b did not hear the phone on a (1000 Hz): %+v", r.rep.Heard)
		}
		if _, err := e.phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
		phoneHears(t, ctx, e.phone, 440)
		tab.Close()
		e.waitPresence(t, "alice")
	})

	for _, winner := range []string{"b", "a"} {
		t.Run("tabs on both nodes, the one on "+winner+" answers first", func(t *testing.T) {
			ctx := part(t, time.Minute)
			loser := map[string]string{"a": "b", "b": "a"}[winner]
			win, lose := e.tab(t, ctx, winner, "bob"), e.tab(t, ctx, loser, "bob")
			e.waitPresence(t, "bob", "a", "b")
			// The winner answers 300 ms after its ring, so the loser surely rang first.
			done := receiveBG(ctx, e.eng, slowIncoming{win, 300 * time.Millisecond},
				synth.CallOptions{ToneHz: 440, ExpectHz: 1000, Duration: 3 * time.Second})
			if err := e.phone.Dial(ctx, "bob"); err != nil {
				t.Fatal(err)
			}
			in := recvType(t, ctx, lose, signal.TypeIncoming)
			hup := recvType(t, ctx, lose, signal.TypeHangup)
			if hup.CallID != in.CallID || hup.Cause != wire.CauseAnsweredElsewhere {
				t.Errorf("the tab on %s: hangup %+v, want cause %s", loser, hup, wire.CauseAnsweredElsewhere)
			}
			r := <-done
			if r.err != nil || !r.rep.Heard.Detected(10) {
				t.Fatalf("the tab on %s that answered: err %v heard %+v", winner, r.err, r.rep.Heard)
			}
			if _, err := e.phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
				t.Fatal(err)
			}
			phoneHears(t, ctx, e.phone, 440)
		})
	}

	t.Run("browsers on both nodes in one room, and DIDs into either Asterisk", func(t *testing.T) {
		ctx := part(t, time.Minute)
		var rm struct{ ID string }
		e.apiOK(t, "a", "POST", "/rooms", map[string]any{"name": "standup"}, http.StatusCreated, &rm)
		owner := e.roomNode(t, rm.ID)
		other := map[string]string{"a": "b", "b": "a"}[owner]
		t.Logf("room %s placed on node %s", rm.ID, owner)
		token := func(user string) string {
			var out struct{ Token string }
			e.apiOK(t, other, "POST", "/rooms/"+rm.ID+"/tokens", map[string]any{"user": user}, http.StatusCreated, &out)
			return out.Token
		}
		tones := []float64{440, 1000, 1700}
		nodes := []string{"a", "b", "a"}
		res := make([]recvResult, 3)
		where := make([]string, 3)
		var wg sync.WaitGroup
		for i := range tones {
			tk := token(fmt.Sprintf("user%d", i))
			wg.Add(1)
			go func() {
				defer wg.Done()
				rep, url, err := e.joinAnywhere(ctx, t, nodes[i], tk, synth.JoinOptions{Room: rm.ID},
					synth.CallOptions{ToneHz: tones[i], Amplitude: 0.2, Duration: 5 * time.Second})
				res[i], where[i] = recvResult{rep, err}, url
			}()
		}
		wg.Wait()
		for i, r := range res {
			if r.err != nil {
				t.Fatalf("browser %d (landed on node %s): %v", i, nodes[i], r.err)
			}
			if where[i] != e.urlOf(owner) {
				t.Errorf("browser %d ended up on %s, not on the room's node %s", i, where[i], owner)
			}
			var others []float64
			for j, hz := range tones {
				if j != i {
					others = append(others, hz)
				}
			}
			heardShares(t, fmt.Sprintf("browser %d (via node %s)", i, nodes[i]), lastSeconds(r.rep.Audio, 2*time.Second), others, []float64{tones[i]})
		}

		// DIDs mapped to the room, arriving first on the other node's Asterisk (sent over the trunk), then on the
		// owner's: both callers join, and a browser in the room hears the first.
		const did = "+15550100"
		e.apiOK(t, other, "PUT", "/numbers/"+did, map[string]any{"room": rm.ID}, http.StatusOK, nil)
		listener := make(chan recvResult, 1)
		go func() {
			rep, _, err := e.joinAnywhere(ctx, t, owner, token("listener"), synth.JoinOptions{Room: rm.ID},
				synth.CallOptions{ToneHz: 440, Amplitude: 0.2, Duration: 9 * time.Second, RecordMax: 20 * time.Second})
			listener <- recvResult{rep, err}
		}()
		sip := map[string]string{"a": e.sipA, "b": e.sipB}
		for i, via := range []string{other, owner} {
			carrier := testenv.StartBaresip(t, testenv.BaresipOptions{Name: "carrier-" + via, User: "carrier", Password: "unused",
				Registrar: sip[via], LocalAddr: clusterCarrierIP, NoRegister: true, PlayWAV: e.wav(t, 1300)})
			if err := carrier.Dial(ctx, fmt.Sprintf("sip:%s@%s;transport=udp", did, sip[via])); err != nil {
				t.Fatal(err)
			}
			if _, err := carrier.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
				t.Fatalf("DID into node %s's Asterisk: %v", via, err)
			}
			e.waitFor(t, 10*time.Second, fmt.Sprintf("%d phones in the room", i+1), func() bool {
				var out struct{ Participants []apiParticipant }
				st, data, _ := e.api(t, other, "GET", "/rooms/"+rm.ID+"/participants", nil)
				if st != http.StatusOK || json.Unmarshal(data, &out) != nil {
					return false
				}
				n := 0
				for _, p := range out.Participants {
					if p.Kind == "phone" && p.CallerID == "carrier" {
						n++
					}
				}
				return n == i+1
			})
			t.Logf("DID %s arriving on node %s's Asterisk joined room %s on node %s", did, via, rm.ID, owner)
		}
		l := <-listener
		if l.err != nil {
			t.Fatalf("listener: %v", l.err)
		}
		heardShares(t, "listener", lastSeconds(l.rep.Audio, 4*time.Second), []float64{1300}, nil)
		e.apiOK(t, other, "DELETE", "/rooms/"+rm.ID, nil, http.StatusNoContent, nil)
	})

	t.Run("a token's concurrency limit of 2 holds across nodes", func(t *testing.T) {
		ctx := part(t, time.Minute)
		cctx, ccancel := context.WithCancel(ctx)
		defer ccancel()
		callA := bgCall(cctx, e.eng, e.tab(t, ctx, "a", "dora", "ext"), synth.CallOptions{To: "600", Duration: -1})
		callB := bgCall(cctx, e.eng, e.tab(t, ctx, "b", "dora", "ext"), synth.CallOptions{To: "600", Duration: -1})
		e.waitFor(t, 10*time.Second, "dora's two calls up", func() bool {
			chans, _ := held(t, e.inspB, "pb.b.")
			return e.a.Server.ActiveCalls() == 1 && len(chans) >= 1
		})
		for _, node := range []string{"a", "b"} {
			rep, err := e.eng.Call(ctx, e.tab(t, ctx, node, "dora", "ext"), synth.CallOptions{To: "600", Duration: time.Second})
			ev, _ := rep.Event(signal.TypeError)
			if err == nil || ev.Error != wire.CodeTooManyCalls {
				t.Errorf("dora's third call on node %s: err %v, error %q, want %s", node, err, ev.Error, wire.CodeTooManyCalls)
			}
		}
		ccancel()
		<-callA
		<-callB
	})

	t.Run("Redis master killed mid-call: calls keep audio, new calls and joins work within 10 s", func(t *testing.T) {
		ctx := part(t, time.Minute)
		tab := e.tab(t, ctx, "b", "alice")
		e.waitPresence(t, "alice", "b")
		ongoing := receiveBG(ctx, e.eng, tab, synth.CallOptions{ToneHz: 440, ExpectHz: 1000, Duration: 16 * time.Second, RecordMax: 30 * time.Second})
		if err := e.phone.Dial(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.phone.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
			t.Fatal(err)
		}
		carolTab := e.tab(t, ctx, "b", "carol")
		e.waitPresence(t, "carol", "b")
		time.Sleep(time.Second)
		old := e.sent.KillMaster()
		killed := time.Now()
		pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
		newMaster, promoted := e.sent.WaitPromoted(t, pctx, old)
		pcancel()
		t.Logf("MEASURED master %s killed; Sentinel promoted %s after %v", old, newMaster, promoted.Sub(killed).Round(time.Millisecond))
		deadline := promoted.Add(10 * time.Second)

		// From the promotion on, at once: a new call from a phone on a to carol's tab on b (a presence lookup in
		// Redis), and a room created and joined (the rooms directory, the room token, the join's limit slot).
		var wg sync.WaitGroup
		var callOK, joinOK time.Duration
		var callErr, joinErr error
		carol := receiveBG(ctx, e.eng, carolTab, synth.CallOptions{ToneHz: 660, ExpectHz: 1000, Duration: 3 * time.Second})
		wg.Add(2)
		go func() {
			defer wg.Done()
			for attempt := 1; ; attempt++ {
				if err := e.phone2.Dial(ctx, "carol"); err != nil {
					callErr = err
					return
				}
				wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
				ev, err := e.phone2.WaitAnyEvent(wctx, "CALL_ESTABLISHED", "CALL_CLOSED")
				wcancel()
				if err == nil && ev.Type == "CALL_ESTABLISHED" {
					callOK = time.Since(promoted)
					return
				}
				if time.Now().After(deadline) {
					callErr = fmt.Errorf("attempt %d: %+v %v", attempt, ev, err)
					return
				}
				time.Sleep(300 * time.Millisecond)
			}
		}()
		go func() {
			defer wg.Done()
			for attempt := 1; ; attempt++ {
				err := e.createAndJoin(ctx, "b", "frank")
				if err == nil {
					joinOK = time.Since(promoted)
					return
				}
				if time.Now().After(deadline) {
					joinErr = fmt.Errorf("attempt %d: %w", attempt, err)
					return
				}
				time.Sleep(300 * time.Millisecond)
			}
		}()
		wg.Wait()
		if callErr != nil {
			t.Errorf("no new call within 10 s of the promotion: %v", callErr)
		}
		if joinErr != nil {
			t.Errorf("no room join within 10 s of the promotion: %v", joinErr)
		}
		t.Logf("MEASURED after the promotion: new cross-node call answered at +%v, room created and joined at +%v",
			callOK.Round(time.Millisecond), joinOK.Round(time.Millisecond))
		if callErr == nil {
			if r := <-carol; r.err != nil || !r.rep.Heard.Detected(5) {
				t.Errorf("the new call after the failover: err %v heard %+v", r.err, r.rep.Heard)
			}
			if _, err := e.phone2.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
				t.Fatal(err)
			}
		}
		r := <-ongoing
		if r.err != nil {
			t.Fatalf("the call in progress: %v", r.err)
		}
		// Its last 4 s are all after the master died.
		tail := lastSeconds(r.rep.Audio, 4*time.Second)
		if rep := audio.Detect(tail, 8000, 1000); !rep.Detected(20) {
			t.Errorf("the call in progress lost its audio after the failover: last 4 s %+v", rep)
		}
		if _, err := e.phone.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("kill -9 of node b: a's calls go on, b's users and rooms leave the directory, b restarts clean", func(t *testing.T) {
		ctx := part(t, time.Minute)
		// A call on a (a browser to its echo extension) that must keep its audio; it also puts a at its call
		// ceiling, so the next room goes to b.
		echo := bgCall(ctx, e.eng, e.tab(t, ctx, "a", "erin", "ext"), synth.CallOptions{To: "600", Duration: 12 * time.Second, RecordMax: 20 * time.Second})
		e.waitFor(t, 10*time.Second, "a's echo call up", func() bool { return e.a.Server.ActiveCalls() >= 1 })
		var rm struct{ ID string }
		e.waitFor(t, 10*time.Second, "node a's load (1 call, at its ceiling) in the directory", func() bool {
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			defer ccancel()
			ns, _ := e.a.Server.Cluster().Nodes(cctx)
			for _, n := range ns {
				if n.ID == "a" && n.Calls >= 1 {
					return true
				}
			}
			return false
		})
		e.apiOK(t, "a", "POST", "/rooms", map[string]any{"name": "on-b"}, http.StatusCreated, &rm)
		if owner := e.roomNode(t, rm.ID); owner != "b" {
			t.Fatalf("room placed on %s; node a is at its ceiling, so it belongs on b", owner)
		}
		var tk struct{ Token string }
		e.apiOK(t, "a", "POST", "/rooms/"+rm.ID+"/tokens", map[string]any{"user": "gina"}, http.StatusCreated, &tk)
		member := make(chan recvResult, 1)
		go func() {
			rep, _, err := e.joinAnywhere(ctx, t, "a", tk.Token, synth.JoinOptions{Room: rm.ID}, synth.CallOptions{Duration: -1})
			member <- recvResult{rep, err}
		}()
		e.waitFor(t, 10*time.Second, "b's room bridge up", func() bool {
			_, bridges := held(t, e.inspB, "pb.b.")
			return len(bridges) == 1
		})
		tab := e.tab(t, ctx, "b", "alice")
		e.waitPresence(t, "alice", "b")
		_ = tab

		e.b.Kill(t)
		killed := time.Now()
		presenceGone := e.waitFor(t, 10*time.Second, "alice's tab on b gone from the directory", func() bool {
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			defer ccancel()
			ns, err := e.a.Server.Cluster().UserNodes(cctx, "alice")
			return err == nil && len(ns) == 0
		})
		roomGone := e.waitFor(t, 10*time.Second-time.Since(killed), "b's room gone from the directory", func() bool {
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			defer ccancel()
			_, ok, err := e.a.Server.Cluster().RoomOwner(cctx, rm.ID)
			return err == nil && !ok
		})
		t.Logf("MEASURED after kill -9 of b: its user gone from presence in %v, its room from the directory in %v (TTL 8 s, heartbeat 2 s)",
			presenceGone.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
		_ = roomGone
		// The operator's view: `patchbay cluster status` lists b as down, a as up with its load.
		st := e.clusterStatus(t)
		for _, n := range st.Nodes {
			t.Logf("cluster status: %s alive=%v heartbeat age %v calls %d cpu %.2f", n.ID, n.Alive, n.HeartbeatAge, n.Calls, n.CPU)
			if (n.ID == "b") == n.Alive {
				t.Errorf("cluster status after b died: %+v", n)
			}
		}
		if len(st.Nodes) != 2 {
			t.Errorf("cluster status lists %d nodes, want a and b", len(st.Nodes))
		}
		// A phone calling the user whose only tab was on b: busy at once, no ringing into the void.
		dialed := time.Now()
		if err := e.phone.Dial(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
		ev, err := e.phone.WaitEvent(ctx, "CALL_CLOSED")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ev.Param, "486") || time.Since(dialed) > 3*time.Second {
			t.Errorf("call to alice after b died: closed with %q after %v, want 486 Busy Here at once", ev.Param, time.Since(dialed))
		}
		// a's call kept its audio through all of it.
		rep := <-echo
		if tail := lastSeconds(rep.Audio, 4*time.Second); !audio.Detect(tail, 8000, 1000).Detected(20) || rep.Loss > 0.01 {
			t.Errorf("a's echo call: last 4 s %+v, loss %.3f", audio.Detect(tail, 8000, 1000), rep.Loss)
		}
		// b comes back; its own sweep leaves its Asterisk clean (the room's bridge and the member's channels).
		chans, bridges := held(t, e.inspB, "")
		t.Logf("b's Asterisk before the restart: %d channels %v, %d bridges", len(chans), chans, len(bridges))
		restart := time.Now()
		e.b.Start(t)
		waitEmpty(t, e.inspB, "", 10*time.Second)
		t.Logf("MEASURED b restarted (process up, ARI connected, swept); its Asterisk clean %v after the restart began",
			time.Since(restart).Round(time.Millisecond))
		<-member
		e.waitFor(t, 15*time.Second, "b alive again", func() bool {
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			defer ccancel()
			return e.a.Server.Cluster().NodeAlive(cctx, "b")
		})
	})
}
