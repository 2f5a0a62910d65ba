// Package media holds the one pion API shared by every call: G.711 and Opus audio, ICE-lite on a single muxed
// UDP port, no interceptors unless asked for.
package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"github.com/patchbay/patchbay/webrtc/mmsg"
)

// Options configure the shared API.
type Options struct {
	// ICEAddress is the IPv4 address the muxed ICE socket binds; "" binds all.
	ICEAddress string
	// ICEPort is the single UDP port all calls share for ICE and media; 0 picks a free one.
	ICEPort int
	// Pace reads the ICE socket on a timer while it is busy (mmsg.Options; the zero value never does).
	Pace mmsg.Options
	// ICETCP also listens for passive ICE-TCP (RFC 6544) on ICETCPPort (0 picks a free one), for browsers whose
	// network lets no UDP through: each answer then carries a "tcptype passive" host candidate too, with the
	// same public IPs as the UDP one. One listener serves every call (muxed by ICE ufrag).
	ICETCP     bool
	ICETCPPort int
	// PublicIPs are advertised in host candidates instead of the local
	// addresses (NAT 1:1). Never guessed: set them when behind NAT.
	PublicIPs []string
	// IncludeLoopback gathers 127.0.0.0/8 candidates, for loopback-only hosts.
	IncludeLoopback bool
	// ICEIPs are the local IPv4 addresses to offer host candidates on; empty: every interface's.
	ICEIPs []string
	// ICEServers (STUN/TURN) are handed to browsers; the server is ICE-lite
	// and uses none itself.
	ICEServers []webrtc.ICEServer
	// Video registers VP8 as well, for rooms. A peer only carries video when
	// the browser's offer has a video section too; audio-only offers cost the
	// same as without it.
	Video bool
	// H264 registers H.264 (constrained baseline, packetization-mode 1) beside VP8 when Video is on: a browser that
	// offers it may then send and receive it (the SFU picks one codec per room, see Peer.SetVideoCodec).
	H264 bool
	// RTCPReports enables the RTCP sender/receiver report interceptors.
	// Off by default: G.711 gains nothing from them on the relay path.
	RTCPReports bool
	// DisconnectedTimeout and FailedTimeout: a browser silent (no STUN, DTLS, SRTP or SRTCP) for
	// DisconnectedTimeout is reported disconnected, and failed after FailedTimeout more; 5 s and 25 s when zero.
	DisconnectedTimeout, FailedTimeout time.Duration
	// PionMedia keeps every call's audio on pion's track, interceptor and SRTP session path instead of the lean
	// path (see lean.go): for comparison in benchmarks, or as a fallback.
	PionMedia bool
	// OpusDTX asks browsers to stop sending Opus in silence (usedtx=1). Off by default: a silent stream is
	// indistinguishable from a dead one for the media watchdogs, and comfort noise is not mixed in rooms.
	OpusDTX bool
	// Logger receives API-level logs; nil uses slog.Default().
	Logger *slog.Logger

	// pionDefaults registers pion's default interceptors (NACK, reports,
	// TWCC, stats) instead; only for the benchmark that justifies leaving
	// them out.
	pionDefaults bool
}

// API is the shared pion API. Create one with NewAPI and Close it at shutdown,
// after every peer is closed.
type API struct {
	me         *webrtc.MediaEngine
	reg        *interceptor.Registry
	se         webrtc.SettingEngine // copied for each peer, which adds its own ICE credentials and DTLS taps
	conn       *mmsg.Conn
	demux      *demux
	mux        ice.UDPMux
	tcpLn      net.Listener // nil without ICETCP
	tcpMux     *tcpMux
	iceServers []webrtc.ICEServer
	video      bool
	h264       bool
	opusDTX    bool
	lean       bool
	ownReports bool // no report interceptors in reg: video peers get avSync's sender reports
	log        *slog.Logger

	disconnected, failed time.Duration

	stop      chan struct{}
	wg        sync.WaitGroup // the demux reader, the RTCP/watchdog loop and peers closed by the watchdog
	closeOnce sync.Once
	closeErr  error
}

// NewAPI builds the shared API and binds the ICE port.
func NewAPI(o Options) (*API, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	for _, ip := range o.PublicIPs {
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("public IP %q is not an IPv4 address: set media public IPs to the address browsers reach", ip)
		}
	}

	me := &webrtc.MediaEngine{}
	// Opus first: a peer only ever negotiates the one codec its call chose (see Answer), so the order here only
	// matters to pion's matching.
	for _, c := range []Codec{Opus, PCMU, PCMA} {
		if err := me.RegisterCodec(c.params(o.OpusDTX), webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("register %s: %w", c, err)
		}
	}
	if o.Video {
		if err := registerVideo(me, o.H264); err != nil {
			return nil, err
		}
	}
	reg := &interceptor.Registry{}
	if o.pionDefaults {
		if err := webrtc.RegisterDefaultInterceptors(me, reg); err != nil {
			return nil, fmt.Errorf("register default interceptors: %w", err)
		}
	} else if o.RTCPReports {
		if err := webrtc.ConfigureRTCPReports(reg); err != nil {
			return nil, fmt.Errorf("configure RTCP reports: %w", err)
		}
	}

	ip := net.IPv4zero
	if o.ICEAddress != "" {
		ip = net.ParseIP(o.ICEAddress)
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("ICE address %q is not an IPv4 address", o.ICEAddress)
		}
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: o.ICEPort})
	if err != nil {
		return nil, fmt.Errorf("bind ICE UDP port %s:%d: %w (choose a free media ICE port)", ip, o.ICEPort, err)
	}

	se := webrtc.SettingEngine{}
	se.LoggerFactory = logging.NewDefaultLoggerFactory()
	se.SetLite(true)
	// Raise the socket buffers: one socket carries every call (best effort; the kernel caps them at rmem_max).
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	dm, err := newDemux(conn, log, o.Pace)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	var tcpLn net.Listener
	var tcpMux *tcpMux
	if o.ICETCP {
		tcpLn, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: ip, Port: o.ICETCPPort})
		if err != nil {
			_ = dm.mc.Close()
			return nil, fmt.Errorf("bind ICE TCP port %s:%d: %w (choose a free media ICE TCP port)", ip, o.ICETCPPort, err)
		}
		tcpMux = newTCPMux(tcpLn, se.LoggerFactory.NewLogger("ice-tcp"), dm)
		se.SetICETCPMux(tcpMux)
		networks = append(networks, webrtc.NetworkTypeTCP4)
	}
	closeTCP := func() {
		if tcpMux != nil {
			_ = tcpMux.Close()
			_ = tcpLn.Close()
		}
	}
	se.SetNetworkTypes(networks)
	se.SetIncludeLoopbackCandidate(o.IncludeLoopback)
	// No mDNS at all: a server has real addresses to announce, and as an ICE-lite agent it only answers the
	// browser's checks, learning the browser's address from them (peer-reflexive), so a browser's .local
	// candidates need no resolving. QueryOnly cost a socket and a goroutine per call.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: se.LoggerFactory.NewLogger("ice-mux"), UDPConn: dm.pion})
	if len(o.ICEIPs) > 0 {
		only, err := onlyIPs(o.ICEIPs)
		if err != nil {
			_ = mux.Close()
			_ = dm.mc.Close()
			closeTCP()
			return nil, err
		}
		// The UDP mux lists every interface's address for a socket bound to all of them, whatever the IP
		// filter says (the filter only reaches ICE-TCP's gathering), so its list is filtered here.
		fm := &filteredUDPMux{UDPMuxDefault: mux, only: only}
		if len(fm.GetListenAddresses()) == 0 {
			_ = mux.Close()
			_ = dm.mc.Close()
			closeTCP()
			return nil, fmt.Errorf("media.ice_ips %v: none is an address of this host's interfaces (or the ICE socket's bind address); list addresses the host has", o.ICEIPs)
		}
		se.SetIPFilter(func(ip net.IP) bool { return only[ip.String()] })
		se.SetICEUDPMux(fm)
	} else {
		se.SetICEUDPMux(mux)
	}
	// Patchbay answers as DTLS server (the browser sends ClientHello): the lean path derives its keys as server.
	_ = se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer)
	// ICE liveness is watched by the API from every packet the demux or the ICE-TCP mux sees (pion's lite agent
	// would only see STUN of lean peers), so pion's own timeouts are off.
	se.SetICETimeouts(0, 0, 2*time.Second)
	if len(o.PublicIPs) > 0 {
		err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        append([]string(nil), o.PublicIPs...),
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		})
		if err != nil {
			_ = mux.Close()
			_ = dm.mc.Close()
			closeTCP()
			return nil, fmt.Errorf("set public IPs: %w", err)
		}
	}
	disc, failed := o.DisconnectedTimeout, o.FailedTimeout
	if disc <= 0 {
		disc = 5 * time.Second
	}
	if failed <= 0 {
		failed = 25 * time.Second
	}

	a := &API{
		me:           me,
		reg:          reg,
		se:           se,
		conn:         dm.mc,
		demux:        dm,
		mux:          mux,
		tcpLn:        tcpLn,
		tcpMux:       tcpMux,
		iceServers:   cloneICEServers(o.ICEServers),
		video:        o.Video,
		h264:         o.Video && o.H264,
		opusDTX:      o.OpusDTX,
		lean:         !o.PionMedia && !o.pionDefaults && !o.RTCPReports,
		ownReports:   !o.pionDefaults && !o.RTCPReports,
		log:          log,
		disconnected: disc,
		failed:       failed,
		stop:         make(chan struct{}),
	}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		dm.run()
	}()
	go func() {
		defer a.wg.Done()
		a.loop()
	}()
	tcpAddr := ""
	if tcpLn != nil {
		tcpAddr = tcpLn.Addr().String()
	}
	log.Info("media API ready", "ice_addr", dm.mc.LocalAddr().String(), "ice_tcp_addr", tcpAddr, "public_ips", o.PublicIPs, "ice_ips", o.ICEIPs,
		"video", o.Video, "h264", o.Video && o.H264, "rtcp_reports", o.RTCPReports, "lean_audio", a.lean)
	return a, nil
}

// loop sends the lean peers' RTCP and watches every peer's ICE liveness until Close.
func (a *API) loop() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case now := <-t.C:
			for _, p := range *a.demux.byUfrag.Load() {
				p.watch(now)
				if p.Mode() == ModeLean && p.tap.ready() && p.tap.rtcpDue(now) {
					p.tap.sendRTCP(now, p.cname)
				}
			}
		}
	}
}

// closeLater closes a peer the watchdog found dead, on a goroutine the API waits for.
func (a *API) closeLater(p *Peer) {
	select {
	case <-a.stop:
		return
	default:
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		_ = p.Close()
	}()
}

// ICEPort is the bound UDP port of the muxed ICE socket.
func (a *API) ICEPort() int { return a.conn.LocalAddr().(*net.UDPAddr).Port }

// ICETCPPort is the bound TCP port for passive ICE-TCP, or 0 without Options.ICETCP.
func (a *API) ICETCPPort() int {
	if a.tcpLn == nil {
		return 0
	}
	return a.tcpLn.Addr().(*net.TCPAddr).Port
}

// ICEServers returns a copy of the STUN/TURN servers to hand to browsers.
func (a *API) ICEServers() []webrtc.ICEServer { return cloneICEServers(a.iceServers) }

// Close releases the ICE port. Close peers first.
func (a *API) Close() error {
	a.closeOnce.Do(func() {
		close(a.stop)
		a.closeErr = errors.Join(a.mux.Close(), ignoreClosed(a.conn.Close()))
		if a.tcpMux != nil {
			a.closeErr = errors.Join(a.closeErr, a.tcpMux.Close(), ignoreClosed(a.tcpLn.Close()))
		}
		a.wg.Wait()
	})
	return a.closeErr
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func cloneICEServers(in []webrtc.ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, len(in))
	for i, s := range in {
		out[i] = s
		out[i].URLs = append([]string(nil), s.URLs...)
	}
	return out
}
