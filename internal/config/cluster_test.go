package config

import (
	"strings"
	"testing"
)

func TestClusterValidation(t *testing.T) {
	base := func() Config {
		c := Defaults()
		c.ARI.Password = testARIPass
		c.Auth.TokenSecret = testToken
		return c
	}
	cases := []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" = valid
	}{
		{"off by default", func(*Config) {}, ""},
		{"sentinel", func(c *Config) {
			c.Cluster.Enabled, c.Cluster.PublicURL = true, "wss://a.example.com/ws"
			c.Redis.MasterName, c.Redis.Sentinels = "pbm", []string{"10.0.0.1:26379", "10.0.0.2:26379"}
			c.Cluster.Secret = Secret(strings.Repeat("s", 32))
			c.Cluster.Peers = []ClusterPeer{{ID: "b", SIPAddress: "10.0.0.3:5060"}}
		}, ""},
		{"needs redis", func(c *Config) { c.Cluster.Enabled, c.Cluster.PublicURL = true, "wss://a/ws" }, "cluster.enabled"},
		{"needs public url", func(c *Config) { c.Cluster.Enabled, c.Redis.Addr = true, "127.0.0.1:6379" }, "cluster.public_url"},
		{"two redis modes", func(c *Config) { c.Redis.Addr, c.Redis.Addrs = "127.0.0.1:6379", []string{"127.0.0.1:7000"} }, "set one of"},
		{"sentinel without name", func(c *Config) { c.Redis.Sentinels = []string{"127.0.0.1:26379"} }, "redis.master_name"},
		{"cluster has db 0 only", func(c *Config) { c.Redis.Addrs, c.Redis.DB = []string{"127.0.0.1:7000"}, 2 }, "redis.db"},
		{"prefix with braces", func(c *Config) { c.Redis.Prefix = "pb{x}:" }, "redis.prefix"},
		{"ttl below two heartbeats", func(c *Config) { c.Cluster.TTL = c.Cluster.Heartbeat }, "cluster.ttl"},
		{"peer by name", func(c *Config) {
			c.Cluster.Enabled, c.Cluster.PublicURL, c.Redis.Addr = true, "wss://a/ws", "127.0.0.1:6379"
			c.Cluster.Secret = Secret(strings.Repeat("s", 32))
			c.Cluster.Peers = []ClusterPeer{{ID: "b", SIPAddress: "b.example.com:5060"}}
		}, "cluster.peers[0].sip_address"},
		{"peer is self", func(c *Config) {
			c.Cluster.Enabled, c.Cluster.PublicURL, c.Redis.Addr = true, "wss://a/ws", "127.0.0.1:6379"
			c.Cluster.Secret = Secret(strings.Repeat("s", 32))
			c.Cluster.Peers = []ClusterPeer{{ID: "patchbay", SIPAddress: "10.0.0.3:5060"}}
		}, "cluster.peers[0].id"},
		{"short secret", func(c *Config) {
			c.Cluster.Enabled, c.Cluster.PublicURL, c.Redis.Addr = true, "wss://a/ws", "127.0.0.1:6379"
			c.Cluster.Peers = []ClusterPeer{{ID: "b", SIPAddress: "10.0.0.3:5060"}}
		}, "cluster.secret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one about %s", err, tc.want)
			}
		})
	}
}

func TestClusterNodeIDAndPeersRender(t *testing.T) {
	c := Defaults()
	c.ARI.App = "Patchbay_East"
	if id := c.ClusterNodeID(); id != "patchbay-east" {
		t.Errorf("node id from app: %q", id)
	}
	c.ARI.Instance = "east"
	if id := c.ClusterNodeID(); id != "east" {
		t.Errorf("node id from instance: %q", id)
	}
	c.Cluster.Enabled = true
	c.Cluster.Secret = Secret(strings.Repeat("k", 40))
	c.Cluster.Peers = []ClusterPeer{{ID: "west", SIPAddress: "10.0.0.3:5060"}}
	p := c.AsteriskParams("")
	if p.ClusterNode != "east" || len(p.ClusterPeers) != 1 || p.ClusterPeers[0].OutUser != "east" || p.ClusterPeers[0].InUser != "west" {
		t.Fatalf("rendered cluster params %+v %+v", p.ClusterNode, p.ClusterPeers)
	}
	if c.ClusterSIPAddress() != "127.0.0.1:5060" {
		t.Errorf("default SIP address %s", c.ClusterSIPAddress())
	}
}
