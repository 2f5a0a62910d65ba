package testenv

import (
	"fmt"
	"net"

	"github.com/pion/transport/v4"
	"github.com/pion/transport/v4/stdnet"
)

// PionNet is a pion network (webrtc.SettingEngine.SetNet) whose interfaces and UDP sockets are the namespace's,
// for a pion client of this process (tools/synth) that must send its media from inside it, as a browser started in
// the namespace would. Its TCP and name resolution stay the host's (signalling needs no impairing).
func (n *NetNS) PionNet() (transport.Net, error) {
	var std *stdnet.Net
	if err := inNetNS(n.Name, func() error {
		var err error
		std, err = stdnet.NewNet() // lists the interfaces of the namespace it runs in
		return err
	}); err != nil {
		return nil, fmt.Errorf("pion network in %s: %w", n.Name, err)
	}
	return &nsNet{Net: std, ns: n.Name}, nil
}

type nsNet struct {
	*stdnet.Net
	ns string
}

func (s *nsNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	var c *net.UDPConn
	err := inNetNS(s.ns, func() error {
		var err error
		c, err = net.ListenUDP(network, laddr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (s *nsNet) ListenPacket(network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := inNetNS(s.ns, func() error {
		var err error
		c, err = net.ListenPacket(network, address)
		return err
	})
	return c, err
}

func (s *nsNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	var c *net.UDPConn
	err := inNetNS(s.ns, func() error {
		var err error
		c, err = net.DialUDP(network, laddr, raddr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}
