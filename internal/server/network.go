package server

import (
	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/webrtc/media"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// networkMedia adds ICE-TCP to the media options (media.ice_tcp_port; 0 is off).
func networkMedia(cfg *config.Config, o media.Options) media.Options {
	o.ICETCP = cfg.Media.ICETCPPort > 0
	o.ICETCPPort = cfg.Media.ICETCPPort
	return o
}

// networkSignal adds per-session TURN credentials (turn.*) and resume (signalling.*) to the signalling options.
func networkSignal(cfg *config.Config, o signal.ServerOptions) signal.ServerOptions {
	if len(cfg.TURN.URLs) > 0 {
		o.TURN = &signal.TURN{URLs: cfg.TURN.URLs, Secret: []byte(cfg.TURN.Secret.Reveal()), TTL: cfg.TURN.TTL}
	}
	o.ResumeGrace = cfg.Signalling.ResumeGrace
	if o.ResumeGrace == 0 {
		o.ResumeGrace = -1 // configured off
	}
	o.ResumeTTL = cfg.Signalling.ResumeTTL
	return o
}

// ICETCPPort is the TCP port browsers reach for ICE-TCP, or 0 when it is off.
func (s *Server) ICETCPPort() int { return s.media.ICETCPPort() }
