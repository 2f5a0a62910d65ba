package config

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
)

// BenchWebRTCEndpoint names the i-th (1-based) Asterisk-native WebRTC endpoint of asterisk.bench_webrtc_endpoints
// and gives its password, derived from auth.token_secret so that `asterisk-config` and `bench` agree without a
// secret of its own.
func (c *Config) BenchWebRTCEndpoint(i int) (name, password string) {
	name = "bench-webrtc-" + strconv.Itoa(i)
	m := hmac.New(sha256.New, []byte(c.Auth.TokenSecret.Reveal()))
	m.Write([]byte("patchbay bench webrtc endpoint/" + name))
	return name, hex.EncodeToString(m.Sum(nil))[:32]
}

// AsteriskParams maps the configuration onto the Asterisk templates' parameters. certDir is where Asterisk will
// find ca.crt, server.crt and server.key: in a container or a chroot it differs from Patchbay's own certs.dir.
func (c *Config) AsteriskParams(certDir string) asteriskconfigs.Params {
	p := asteriskconfigs.DefaultParams()
	a := c.Asterisk
	p.HTTPBindAddr = a.BindAddress
	p.HTTPPort = a.HTTPPort
	p.HTTPSPort = a.HTTPSPort
	p.SIPPort = a.SIPPort
	p.SIPTLSPort = a.SIPTLSPort
	p.RTPStart, p.RTPEnd = a.RTPStart, a.RTPEnd
	p.ARIUser = c.ARI.User
	p.ARIPassword = c.ARI.Password.Reveal()
	p.App = c.ARI.App
	if certDir != "" {
		p.CertDir = certDir
	}
	p.SessionExpires, p.MinSE, p.Timers = a.TimersSessExpires, a.TimersMinSE, a.Timers
	p.ExternalAddress = a.ExternalAddress
	if len(a.LocalNets) > 0 {
		p.LocalNets = a.LocalNets
	}
	for _, ph := range a.Phones {
		p.Phones = append(p.Phones, asteriskconfigs.Phone{
			Name: ph.Name, Password: ph.Password.Reveal(), Transport: ph.Transport, SRTP: ph.SRTP,
		})
	}
	p.Trunks = c.asteriskTrunks()
	p.MOHDir = a.MOHDir
	if c.Cluster.Enabled {
		p.ClusterNode = c.ClusterNodeID()
		for _, peer := range c.Cluster.Peers {
			p.ClusterPeers = append(p.ClusterPeers, asteriskconfigs.ClusterPeerFor(p.ClusterNode, peer.ID, peer.SIPAddress, c.Cluster.Secret.Reveal()))
		}
	}
	for i := 1; i <= a.BenchWebRTCEndpoints; i++ {
		name, pass := c.BenchWebRTCEndpoint(i)
		p.BenchWebRTC = append(p.BenchWebRTC, asteriskconfigs.Phone{Name: name, Password: pass, Transport: asteriskconfigs.TransportWSS})
	}
	return p
}
