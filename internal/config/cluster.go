package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Cluster makes this Patchbay one node of several sharing state in Redis (docs/cluster.md). Off (the default): the
// node runs alone exactly as without this section.
type Cluster struct {
	// Enabled turns clustering on. It needs Redis (redis.addr, redis.addrs or redis.master_name) and public_url.
	Enabled bool `mapstructure:"enabled" yaml:"enabled"`
	// NodeID names this node in Redis, in the inter-node SIP trunk (endpoint cluster-<id>) and in logs. Default:
	// ari.instance (itself derived from ari.app), so that its Asterisk resource IDs and its node ID agree.
	NodeID string `mapstructure:"node_id" yaml:"node_id"`
	// PublicURL is the wss:// URL browsers reach this node's signalling at; other nodes redirect browsers here for
	// rooms this node holds.
	PublicURL string `mapstructure:"public_url" yaml:"public_url"`
	// SIPAddress is host:port of this node's Asterisk on the inter-node trunk (other nodes send calls there and
	// identify this node's calls by its IP). Default: asterisk.external_address or 127.0.0.1, and asterisk.sip_port.
	SIPAddress string `mapstructure:"sip_address" yaml:"sip_address"`
	// Heartbeat is how often this node refreshes its presence, rooms, leases and load in Redis; TTL is how long
	// they live without a refresh: a dead node's users and rooms are gone from the directory within TTL.
	Heartbeat time.Duration `mapstructure:"heartbeat" yaml:"heartbeat"`
	TTL       time.Duration `mapstructure:"ttl" yaml:"ttl"`
	// Secret derives the digest passwords of the inter-node SIP trunk (each direction its own); the same on every
	// node, at least 32 characters.
	Secret Secret `mapstructure:"secret" yaml:"secret"`
	// Peers are the other nodes' Asterisks, rendered as PJSIP endpoints cluster-<id> (identified by IP, digest
	// authenticated both ways). Adding a node: add it here on every node and reload PJSIP (docs/cluster.md).
	Peers []ClusterPeer `mapstructure:"peers" yaml:"peers"`
	// MaxCPU (0–1, host CPU busy share) and MaxCalls (0: none) are the admission ceiling for new rooms: a node past
	// either is not given new rooms while another is below, like LiveKit's max_cpu_utilization.
	MaxCPU   float64 `mapstructure:"max_cpu" yaml:"max_cpu"`
	MaxCalls int     `mapstructure:"max_calls" yaml:"max_calls"`
}

// ClusterPeer is another node's Asterisk on the inter-node trunk.
type ClusterPeer struct {
	ID         string `mapstructure:"id" yaml:"id"`
	SIPAddress string `mapstructure:"sip_address" yaml:"sip_address"` // IP:port (identified by that IP)
}

// DefaultCluster returns the cluster defaults (off).
func DefaultCluster() Cluster {
	return Cluster{Heartbeat: 2 * time.Second, TTL: 10 * time.Second, MaxCPU: 0.85}
}

var nodeIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,23}$`)

// ClusterNodeID is this node's ID: cluster.node_id, else ari.instance, else derived from ari.app the way the ARI
// client derives its instance.
func (c *Config) ClusterNodeID() string {
	if c.Cluster.NodeID != "" {
		return c.Cluster.NodeID
	}
	if c.ARI.Instance != "" {
		return c.ARI.Instance
	}
	var b strings.Builder
	for _, r := range strings.ToLower(c.ARI.App) {
		if b.Len() == 24 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0:
			b.WriteByte('-')
		}
	}
	if s := strings.Trim(b.String(), "-"); s != "" {
		return s
	}
	return "patchbay"
}

// ClusterSIPAddress is this node's inter-node SIP address: cluster.sip_address, else the external address (or
// loopback) with asterisk.sip_port.
func (c *Config) ClusterSIPAddress() string {
	if c.Cluster.SIPAddress != "" {
		return c.Cluster.SIPAddress
	}
	host := c.Asterisk.ExternalAddress
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(c.Asterisk.SIPPort))
}

func (c *Config) validateCluster(bad func(key, format string, args ...any)) {
	cl := c.Cluster
	if cl.Heartbeat <= 0 {
		bad("cluster.heartbeat", "must be positive, e.g. 2s")
	}
	if cl.TTL < 2*cl.Heartbeat {
		bad("cluster.ttl", "%v must be at least twice cluster.heartbeat (%v), so one lost heartbeat does not expire the node", cl.TTL, cl.Heartbeat)
	}
	if cl.MaxCPU <= 0 || cl.MaxCPU > 1 {
		bad("cluster.max_cpu", "%g must be above 0 and at most 1 (a share of the host's CPU)", cl.MaxCPU)
	}
	if cl.MaxCalls < 0 {
		bad("cluster.max_calls", "must not be negative (0: no call ceiling)")
	}
	if !cl.Enabled {
		return
	}
	if id := c.ClusterNodeID(); !nodeIDRe.MatchString(id) {
		bad("cluster.node_id", "%q must be 1-24 of a-z 0-9 '-', not starting with '-'", id)
	}
	if !c.Redis.Enabled() {
		bad("cluster.enabled", "a cluster shares its state in Redis: set redis.addr, redis.addrs or redis.master_name with redis.sentinels")
	}
	if u, err := url.Parse(cl.PublicURL); err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
		bad("cluster.public_url", "%q must be the wss:// URL browsers reach this node's signalling at, e.g. wss://a.pbx.example.com/ws", cl.PublicURL)
	}
	if err := checkHostPort(c.ClusterSIPAddress()); err != nil {
		bad("cluster.sip_address", "%q: %v", c.ClusterSIPAddress(), err)
	}
	if len(cl.Peers) > 0 && len(cl.Secret) < 32 {
		bad("cluster.secret", "must be at least 32 characters (e.g. `openssl rand -hex 32`), the same on every node")
	}
	seen := map[string]bool{c.ClusterNodeID(): true}
	for i, p := range cl.Peers {
		key := fmt.Sprintf("cluster.peers[%d]", i)
		if !nodeIDRe.MatchString(p.ID) {
			bad(key+".id", "%q must be 1-24 of a-z 0-9 '-'", p.ID)
		} else if seen[p.ID] {
			bad(key+".id", "%q is this node or listed twice", p.ID)
		}
		seen[p.ID] = true
		host, _, err := net.SplitHostPort(p.SIPAddress)
		if err != nil || net.ParseIP(host) == nil {
			bad(key+".sip_address", "%q must be IP:port: the peer is identified by that IP", p.SIPAddress)
		}
	}
}
