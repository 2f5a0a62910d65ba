package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// PprofEnv names the environment variable that turns on Go's profiler for `patchbay serve`: a loopback
// host:port (e.g. 127.0.0.1:6060) serving /debug/pprof/. Unset: off. It is for benchmarks and diagnosis on the
// host itself, so any address off the loopback interface is refused.
const PprofEnv = "PATCHBAY_PPROF_LISTEN"

// startPprof serves /debug/pprof/ on the loopback address in PprofEnv, if set. stop shuts it down and waits.
func (s *Server) startPprof() (stop func(), err error) {
	addr := os.Getenv(PprofEnv)
	if addr == "" {
		return func() {}, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s=%q: want a loopback IP and port, e.g. 127.0.0.1:6060", PprofEnv, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", PprofEnv, addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("pprof listener stopped", "err", err)
		}
	}()
	s.log.Warn("profiler listening: for diagnosis only", "addr", ln.Addr().String())
	return func() {
		_ = srv.Close() // profiles in progress are cut short: this only runs at shutdown
		<-done
	}, nil
}
