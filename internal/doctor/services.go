package doctor

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/pion/turn/v5"

	"github.com/patchbay/patchbay/internal/cluster"
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/webrtc/signal"
)

func checkRedis(ctx context.Context, d *run) Result {
	c := d.cfg
	if !c.Redis.Enabled() {
		return skip("no redis configured: number mappings and tickets live in memory (lost on restart, not shared)", "set redis.addr (or redis.addrs, or redis.master_name with redis.sentinels) to share them between instances")
	}
	cl := cluster.NewRedisClient(c.Redis)
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := cl.Ping(pctx).Err(); err != nil {
		fix := "start Redis (`systemctl start redis-server`) or fix redis.addr"
		switch {
		case strings.Contains(err.Error(), "NOAUTH") || strings.Contains(err.Error(), "WRONGPASS"):
			fix = "set redis.password to Redis's requirepass"
		case c.Redis.MasterName != "":
			fix = "check that the Sentinels in redis.sentinels run and monitor redis.master_name, and that they name a reachable master"
		case len(c.Redis.Addrs) > 0:
			fix = "check that the Redis Cluster's nodes in redis.addrs run and `redis-cli --cluster check` is clean"
		}
		return fail(fmt.Sprintf("Redis (%s): %v", c.Redis.Where(), err), fix)
	}
	return pass("Redis (%s) answers", c.Redis.Where())
}

// checkCluster lists the cluster's nodes as the directory in Redis shows them (`patchbay cluster status` in
// full) and fails when a configured peer is not beating.
func checkCluster(ctx context.Context, d *run) Result {
	c := d.cfg
	if !c.Cluster.Enabled {
		return skip("cluster.enabled is off: this Patchbay runs alone", "see docs/cluster.md to run several nodes")
	}
	cl := cluster.NewRedisClient(c.Redis)
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := cluster.ReadStatus(rctx, cl, c.Redis.Prefix, c.Redis.Where())
	if err != nil {
		return fail(fmt.Sprintf("cluster directory: %v", err), "fix Redis first (see the redis check)")
	}
	alive := map[string]cluster.Node{}
	var parts []string
	for _, n := range st.Nodes {
		if n.Alive {
			alive[n.ID] = n
			parts = append(parts, fmt.Sprintf("%s (%d calls, cpu %.0f%%, beat %v ago)", n.ID, n.Calls, n.CPU*100, n.HeartbeatAge.Round(100*time.Millisecond)))
		}
	}
	var missing []string
	for _, p := range c.Cluster.Peers {
		if _, ok := alive[p.ID]; !ok {
			missing = append(missing, p.ID)
		}
	}
	if len(missing) > 0 {
		return fail(fmt.Sprintf("peers not beating: %s; live: %s", strings.Join(missing, ", "), strings.Join(parts, "; ")),
			"start Patchbay on those nodes (or remove them from cluster.peers and reload PJSIP); `patchbay cluster status` shows the directory")
	}
	if _, ok := alive[c.ClusterNodeID()]; !ok {
		return pass("this node (%s) is not beating (not running?); live: %s", c.ClusterNodeID(), strings.Join(parts, "; "))
	}
	return pass("%d live nodes: %s", len(alive), strings.Join(parts, "; "))
}

// checkTURN allocates a relay on every turn: server browsers are given, with the credentials they get: those of
// media.ice_servers as written, and for turn.urls credentials minted from turn.secret as each session's are.
func checkTURN(ctx context.Context, d *run) Result {
	type server struct {
		source, user, pass string
		urls               []string
	}
	var servers []server
	for _, is := range d.cfg.Media.ICEServers {
		servers = append(servers, server{"media.ice_servers", is.Username, is.Credential.Reveal(), is.URLs})
	}
	if t := d.cfg.TURN; len(t.URLs) > 0 {
		ttl := t.TTL
		if ttl <= 0 {
			ttl = config.DefaultTURN().TTL
		}
		m := signal.MintTURN([]byte(t.Secret.Reveal()), "patchbay-doctor", time.Now().Add(ttl), t.URLs)
		servers = append(servers, server{"turn.urls", m.Username, m.Credential, m.URLs})
	}
	var checked []string
	for _, s := range servers {
		for _, raw := range s.urls {
			if !strings.HasPrefix(raw, "turn:") {
				continue
			}
			addr, udp, err := turnAddr(raw)
			if err != nil {
				return fail(fmt.Sprintf("%s URL %q: %v", s.source, raw, err), "write TURN URLs as turn:HOST:PORT[?transport=udp|tcp]")
			}
			if !udp {
				continue
			}
			if err := allocate(ctx, addr, s.user, s.pass); err != nil {
				fix := "check that the TURN server runs and UDP reaches it, and that media.ice_servers' username and credential are valid there (for coturn's use-auth-secret, mint time-limited credentials)"
				if s.source == "turn.urls" {
					fix = "check that the TURN server runs and UDP reaches it, and that turn.secret is its static-auth-secret (coturn: use-auth-secret; `patchbay turn-config` renders a matching file)"
				}
				return fail(fmt.Sprintf("TURN %s (%s): %v", raw, s.source, err), fix)
			}
			checked = append(checked, raw)
		}
	}
	if len(checked) == 0 {
		return skip("no turn: server over UDP in turn.urls or media.ice_servers", "browsers behind strict NATs may need one")
	}
	return pass("relay allocated on %s", strings.Join(checked, ", "))
}

// turnAddr turns turn:host[:port][?transport=udp|tcp] into host:port, and says whether it is UDP (the only
// transport checked: a TCP URL of the same server shares its credentials).
func turnAddr(raw string) (addr string, udp bool, err error) {
	rest := strings.TrimPrefix(raw, "turn:")
	rest, query, _ := strings.Cut(rest, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", false, fmt.Errorf("query: %w", err)
	}
	switch q.Get("transport") {
	case "", "udp":
		udp = true
	case "tcp":
	default:
		return "", false, fmt.Errorf("transport %q is neither udp nor tcp", q.Get("transport"))
	}
	if _, _, err := net.SplitHostPort(rest); err != nil {
		rest = net.JoinHostPort(rest, "3478")
	}
	return rest, udp, nil
}

func allocate(ctx context.Context, addr, user, pass string) error {
	conn, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		return err
	}
	defer conn.Close()
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Username: user, Password: pass,
		Conn: conn, RTO: 500 * time.Millisecond})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		return err
	}
	type res struct {
		relay net.PacketConn
		err   error
	}
	ch := make(chan res, 1)
	go func() {
		r, err := c.Allocate()
		ch <- res{r, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("allocate: %w", r.err)
		}
		return r.relay.Close()
	case <-ctx.Done():
		conn.Close() // ends Allocate's wait
		<-ch
		return ctx.Err()
	case <-time.After(5 * time.Second):
		conn.Close()
		<-ch
		return fmt.Errorf("no answer to Allocate within 5 s")
	}
}

func checkCall(ctx context.Context, d *run) Result {
	rep, err := d.o.Call(ctx)
	if err != nil {
		return fail("synthetic call failed: "+err.Error(), "see the checks above and Patchbay's log for the call")
	}
	mos := MOS(rep.RTT, rep.Loss)
	detail := fmt.Sprintf("setup %v, RTT %v, loss %.1f %%, MOS %.1f (G.711, E-model)",
		rep.Setup.Round(time.Millisecond), rep.RTT.Round(100*time.Microsecond), 100*rep.Loss, mos)
	switch {
	case !rep.Heard:
		return fail(detail+"; the echo was not heard", "the media path is broken: check the one-way-audio hints in Patchbay's log (external_host, RTP range, ICE/NAT)")
	case mos < 3.6:
		return fail(detail, "calls will sound poor: look for loss or delay on the path (CPU load, network)")
	}
	return pass("%s", detail)
}

// MOS estimates the listening quality of a G.711 call (1..4.5) from its echo round-trip time and packet loss
// with the ITU-T G.107 E-model, simplified: R = 93.2 − Id − Ie,eff, where Id is the delay impairment of the
// one-way mouth-to-ear delay (half the round trip plus 40 ms for packetisation and a jitter buffer) and Ie,eff
// the loss impairment of G.711 with packet loss concealment (Ie 0, Bpl 25.1, random loss).
func MOS(rtt time.Duration, loss float64) float64 {
	d := float64(rtt.Microseconds())/2000 + 40 // ms
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	ppl := 100 * math.Min(math.Max(loss, 0), 1)
	const ie, bpl = 0.0, 25.1
	ieEff := ie + (95-ie)*ppl/(ppl+bpl)
	r := 93.2 - id - ieEff
	switch {
	case r <= 0:
		return 1
	case r >= 100:
		return 4.5
	}
	return 1 + 0.035*r + r*(r-60)*(100-r)*7e-6
}
