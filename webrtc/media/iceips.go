package media

import (
	"fmt"
	"net"

	"github.com/pion/ice/v4"
)

// onlyIPs parses Options.ICEIPs into a set of canonical address strings.
func onlyIPs(ips []string) (map[string]bool, error) {
	only := make(map[string]bool, len(ips))
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("ICE IP %q is not an IPv4 address (media.ice_ips)", s)
		}
		only[ip.To4().String()] = true
	}
	return only, nil
}

// filteredUDPMux is the shared UDP mux with its listen addresses cut down to Options.ICEIPs: pion offers a host
// candidate, with a receive goroutine and buffer per call, for every address GetListenAddresses returns.
type filteredUDPMux struct {
	*ice.UDPMuxDefault
	only map[string]bool
}

func (m *filteredUDPMux) GetListenAddresses() []net.Addr {
	var out []net.Addr
	for _, a := range m.UDPMuxDefault.GetListenAddresses() {
		if u, ok := a.(*net.UDPAddr); ok && u.IP.To4() != nil && m.only[u.IP.To4().String()] {
			out = append(out, a)
		}
	}
	return out
}
