package config

import (
	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
)

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
	if a.Trunk.Host != "" {
		p.Trunk = asteriskconfigs.Trunk{
			Name:       a.Trunk.Name,
			Host:       a.Trunk.Host,
			Username:   a.Trunk.Username,
			Password:   a.Trunk.Password.Reveal(),
			Match:      a.Trunk.Match,
			FromDomain: a.Trunk.FromDomain,
		}
	}
	return p
}
