package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// High-availability Redis for the cluster tests: Sentinel (a master, a replica and three Sentinels, Debian's
// redis-server and redis-sentinel) and Redis Cluster (three masters, redis-server --cluster-enabled and
// redis-cli --cluster create), all on loopback, all stopped when the test ends.

// redisProc is one redis-server or redis-sentinel process.
type redisProc struct {
	port int
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *redisProc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// kill sends SIGKILL (a crash) and waits for the process to be gone.
func (p *redisProc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}

func startRedisProc(t testing.TB, bin, logPath string, port int, args ...string) *redisProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("run %s: %v", bin, err)
	}
	p := &redisProc{port: port, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { // owned by p: ends when the process exits, which kill (or cleanup) forces
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	ctx, cancel := context.WithTimeout(context.Background(), redisReadyTimeout)
	defer cancel()
	if err := redisWaitReady(ctx, p.addr(), p.done); err != nil {
		t.Fatalf("%s on %s did not become ready: %v; log:\n%s", filepath.Base(bin), p.addr(), err, redisLogTail(logPath))
	}
	return p
}

func lookTool(t testing.TB, name, pkg string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in PATH: install it with `apt-get install -y %s` (scripts/provision.sh does): %v", name, pkg, err)
	}
	return bin
}

// RedisSentinel is a Redis master with one replica, watched by three Sentinels that promote the replica when the
// master dies.
type RedisSentinel struct {
	MasterName string
	// Sentinels are the Sentinels' addresses (redis.sentinels).
	Sentinels []string

	t         testing.TB
	dir       string
	mu        sync.Mutex
	master    *redisProc
	replica   *redisProc
	sentinels []*redisProc
}

// Sentinel timing: a master silent for sentinelDownAfter is down; a failover gives up after sentinelFailover.
const (
	sentinelDownAfter = 1000 * time.Millisecond
	sentinelFailover  = 5000 * time.Millisecond
)

// StartRedisSentinel starts the master, its replica (and waits until it is in sync), then three Sentinels (and
// waits until each knows the replica and the two other Sentinels, so a failover can happen at once).
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	server := lookTool(t, "redis-server", "redis-server")
	sentinel := lookTool(t, "redis-sentinel", "redis-sentinel")
	s := &RedisSentinel{MasterName: "pbmaster", t: t, dir: t.TempDir()}
	ports := FreePorts(t, 5)
	node := func(port int, extra ...string) *redisProc {
		log := filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", port))
		args := append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--dir", s.dir, "--dbfilename", fmt.Sprintf("dump-%d.rdb", port), "--logfile", log}, extra...)
		return startRedisProc(t, server, log, port, args...)
	}
	s.master = node(ports[0])
	s.replica = node(ports[1], "--replicaof", "127.0.0.1", strconv.Itoa(ports[0]))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.waitInfo(ctx, s.replica.addr(), "replication", "master_link_status:up")
	for _, port := range ports[2:] {
		conf := filepath.Join(s.dir, fmt.Sprintf("sentinel-%d.conf", port))
		log := filepath.Join(s.dir, fmt.Sprintf("sentinel-%d.log", port))
		text := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s %d
sentinel parallel-syncs %s 1
`, port, s.dir, log, s.MasterName, ports[0], s.MasterName, sentinelDownAfter.Milliseconds(),
			s.MasterName, sentinelFailover.Milliseconds(), s.MasterName)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startRedisProc(t, sentinel, log, port, conf)
		s.sentinels = append(s.sentinels, p)
		s.Sentinels = append(s.Sentinels, p.addr())
	}
	for _, sp := range s.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sp.addr()})
		// A Sentinel whose timer runs more than 2 s late (a loaded CI host stalls processes that long) enters TILT
		// and takes no decision for 30 s, so a failover would wait for it: here TILT needs a 30 s stall and lasts
		// 1 s. Replicas are asked for INFO every second, so the one to promote is never judged stale.
		if err := c.Process(ctx, redis.NewStatusCmd(ctx, "sentinel", "debug", "tilt-trigger", 30000, "tilt-period", 1000, "info-period", 1000)); err != nil {
			c.Close()
			t.Fatalf("sentinel %s: SENTINEL DEBUG: %v (needs Redis 7)", sp.addr(), err)
		}
		for {
			m, err := c.Master(ctx, s.MasterName).Result()
			if err == nil && m["num-slaves"] == "1" && m["num-other-sentinels"] == "2" {
				break
			}
			if ctx.Err() != nil {
				c.Close()
				t.Fatalf("sentinel %s never saw the replica and the other sentinels: %v %v\n%s", sp.addr(), m, err, redisLogTail(sp.log))
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.Close()
	}
	t.Logf("redis sentinel up: master %s, replica %s, sentinels %v", s.master.addr(), s.replica.addr(), s.Sentinels)
	return s
}

func (s *RedisSentinel) waitInfo(ctx context.Context, addr, section, want string) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for {
		info, err := c.Info(ctx, section).Result()
		if err == nil && strings.Contains(info, want) {
			return
		}
		if ctx.Err() != nil {
			s.t.Fatalf("redis %s: %q never showed in INFO %s: %v", addr, want, section, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MasterAddr asks a Sentinel which server is the master now.
func (s *RedisSentinel) MasterAddr(ctx context.Context) (string, error) {
	var lastErr error
	for _, a := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: a, DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond})
		addr, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		c.Close()
		if err == nil && len(addr) == 2 {
			return net.JoinHostPort(addr[0], addr[1]), nil
		}
		lastErr = err
	}
	return "", fmt.Errorf("no sentinel names a master: %w", lastErr)
}

// KillMaster kills the master with SIGKILL and returns its address.
func (s *RedisSentinel) KillMaster() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr := s.master.addr()
	s.master.kill()
	return addr
}

// WaitPromoted waits until the Sentinels name another master than old and it answers as one; it returns the
// new master and when that was seen.
func (s *RedisSentinel) WaitPromoted(t testing.TB, ctx context.Context, old string) (string, time.Time) {
	t.Helper()
	for {
		addr, err := s.MasterAddr(ctx)
		if err == nil && addr != old {
			c := redis.NewClient(&redis.Options{Addr: addr})
			role, rerr := c.Do(ctx, "ROLE").Slice()
			c.Close()
			if rerr == nil && len(role) > 0 && role[0] == "master" {
				return addr, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			var logs strings.Builder
			for _, sp := range s.sentinels {
				fmt.Fprintf(&logs, "--- %s\n%s\n", sp.log, redisLogTail(sp.log))
			}
			t.Fatalf("sentinels did not promote the replica: %v\n%s", err, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// RedisCluster is a Redis Cluster of three masters (no replicas) on loopback.
type RedisCluster struct {
	// Addrs are the masters' addresses (redis.addrs).
	Addrs []string
}

// StartRedisCluster starts three cluster-enabled servers, joins them with redis-cli --cluster create and waits
// for cluster_state:ok on each.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	server := lookTool(t, "redis-server", "redis-server")
	cli := lookTool(t, "redis-cli", "redis-tools")
	dir := t.TempDir()
	rc := &RedisCluster{}
	// Each node's cluster bus port is set, not left at port+10000, so that it too comes from FreePorts' range.
	ports := FreePorts(t, 6)
	for i, port := range ports[:3] {
		log := filepath.Join(dir, fmt.Sprintf("redis-%d.log", port))
		p := startRedisProc(t, server, log, port, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "",
			"--appendonly", "no", "--daemonize", "no", "--dir", dir, "--logfile", log, "--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(ports[3+i]),
			"--cluster-config-file", fmt.Sprintf("nodes-%d.conf", port), "--cluster-node-timeout", "2000")
		rc.Addrs = append(rc.Addrs, p.addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, rc.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range rc.Addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				c.Close()
				t.Fatalf("redis cluster node %s never reached cluster_state:ok: %v", a, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.Close()
	}
	t.Logf("redis cluster up: %v", rc.Addrs)
	return rc
}
