//go:build integration

package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/config"
	"github.com/patchbay/patchbay/internal/doctor"
	"github.com/patchbay/patchbay/test/testenv"
	"github.com/patchbay/patchbay/tools/synth"
	"github.com/patchbay/patchbay/webrtc/signal"
)

// TestDoctor: `patchbay doctor` passes on a running installation and fails with the right hint on each of the
// problems admins hit, one at a time on the same installation; --call reports setup, RTT, loss and MOS.
func TestDoctor(t *testing.T) {
	redis := testenv.StartRedis(t)
	ast := testenv.StartAsterisk(t, testenv.AsteriskOptions{})
	pb := testenv.StartPatchbay(t, ast, testenv.PatchbayOptions{Config: func(c *config.Config) {
		c.Redis.Addr = redis.Addr()
		c.Media.PublicIPs = []string{"127.0.0.1"}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The configuration of the running installation, with the ports it actually bound.
	good := func() *config.Config {
		c := *pb.Config
		c.HTTP.Listen = pb.Server.Addr().String()
		c.Metrics.Listen = pb.Server.MetricsAddr().String()
		c.Media.ICEPort = pb.Server.ICEPort()
		c.Asterisk.RTPStart, c.Asterisk.RTPEnd = ast.Params.RTPStart, ast.Params.RTPEnd
		return &c
	}
	eng, err := synth.NewEngine(synth.EngineOptions{LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	run := func(c *config.Config, edit func(*doctor.Options)) []doctor.Result {
		o := doctor.Options{Config: c, AsteriskCLI: ast.CLICommand()}
		if edit != nil {
			edit(&o)
		}
		rs := doctor.Run(ctx, o)
		var b strings.Builder
		_ = doctor.Print(&b, rs, false)
		t.Logf("doctor:\n%s", b.String())
		return rs
	}
	find := func(rs []doctor.Result, name string) doctor.Result {
		for _, r := range rs {
			if r.Name == name {
				return r
			}
		}
		t.Fatalf("no check %q", name)
		return doctor.Result{}
	}
	expectFail := func(t *testing.T, rs []doctor.Result, name, detail, fix string) {
		t.Helper()
		r := find(rs, name)
		if r.Status != doctor.Fail || !strings.Contains(r.Detail, detail) || !strings.Contains(r.Fix, fix) {
			t.Errorf("%s: %+v, want a failure with %q and the hint %q", name, r, detail, fix)
		}
	}

	t.Run("good install with a call", func(t *testing.T) {
		rs := run(good(), func(o *doctor.Options) {
			o.Call = func(ctx context.Context) (doctor.CallReport, error) {
				conn, err := signal.Dial(ctx, pb.URL, pb.Token(t, "doctor", "ext"), signal.DialOptions{TLSConfig: pb.TLS})
				if err != nil {
					return doctor.CallReport{}, err
				}
				defer conn.Close()
				rep, err := eng.Call(ctx, conn, synth.CallOptions{To: "600", Duration: 2 * time.Second})
				if err != nil {
					return doctor.CallReport{}, err
				}
				return doctor.CallReport{Setup: rep.FirstEchoAfter, RTT: rep.RTT.P50, Loss: rep.Loss, Heard: rep.FirstEchoAfter > 0}, nil
			}
		})
		for _, r := range rs {
			if r.Status == doctor.Fail {
				t.Errorf("%s failed on a good install: %s → %s", r.Name, r.Detail, r.Fix)
			}
		}
		for _, name := range []string{"ports", "asterisk ari", "asterisk version", "asterisk modules", "dialplan stasis entry", "rtp range and external_host", "redis"} {
			if r := find(rs, name); r.Status != doctor.Pass {
				t.Errorf("%s: %+v", name, r)
			}
		}
		if r := find(rs, "dialplan stasis entry"); !strings.Contains(r.Detail, "running Asterisk") {
			t.Errorf("the dialplan was not read from the running Asterisk: %+v", r)
		}
		call := find(rs, "synthetic call")
		for _, want := range []string{"setup ", "RTT ", "loss ", "MOS "} {
			if !strings.Contains(call.Detail, want) {
				t.Errorf("--call report lacks %q: %s", want, call.Detail)
			}
		}
	})

	t.Run("wrong ARI password", func(t *testing.T) {
		c := good()
		c.ARI.Password = config.Secret("not-the-password-1234")
		expectFail(t, run(c, nil), "asterisk ari", "401", "ari.password")
	})

	t.Run("Stasis entry missing", func(t *testing.T) {
		// An admin's hand-edited dialplan without Patchbay's entries: remove them from the running Asterisk.
		for _, ext := range []string{"_[a-z].@internal", "_7XXX@internal", "_8XXX@internal", "_+X.@from-phones", "_0X.@from-phones", "_X.@from-trunk", "_+X.@from-trunk", "s@patchbay-user"} {
			if _, err := ast.CLI(ctx, "dialplan remove extension "+ext); err != nil {
				t.Fatal(err)
			}
		}
		defer func() {
			if _, err := ast.CLI(ctx, "dialplan reload"); err != nil {
				t.Error(err)
			}
		}()
		expectFail(t, run(good(), nil), "dialplan stasis entry", "no Stasis(", "dialplan reload")
	})

	t.Run("certificate expired", func(t *testing.T) {
		c := good()
		c.HTTP.CertFile, c.HTTP.KeyFile = writeTestCert(t, []string{"localhost", "127.0.0.1"}, time.Now().Add(-24*time.Hour))
		expectFail(t, run(c, nil), "certificates", "expired", "renew")
	})

	t.Run("certificate SAN not matching public_host", func(t *testing.T) {
		c := good()
		c.PublicHost = "pbx.example.com"
		expectFail(t, run(c, nil), "certificates", `does not cover public_host "pbx.example.com"`, "certs.hosts")
	})

	t.Run("ICE port taken by another process", func(t *testing.T) {
		port := freeUDPPort(t)
		holder := exec.Command("python3", "-c", fmt.Sprintf(
			"import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('',%d))\nprint('bound',flush=True)\ntime.sleep(60)", port))
		out, err := holder.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := holder.Start(); err != nil {
			t.Fatalf("python3 (holds the port): %v", err)
		}
		defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
		buf := make([]byte, 5)
		if _, err := out.Read(buf); err != nil {
			t.Fatal(err)
		}
		c := good()
		c.Media.ICEPort = port
		expectFail(t, run(c, nil), "ports", fmt.Sprintf("media.ice_port UDP/%d is taken by process %d (python3)", port, holder.Process.Pid), "media.ice_port")
	})

	t.Run("private host address without media.public_ips", func(t *testing.T) {
		c := good()
		c.Media.PublicIPs = nil
		rs := run(c, func(o *doctor.Options) {
			o.Addrs = func() ([]net.IP, error) { return []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.20.30.40")}, nil }
		})
		expectFail(t, rs, "public addresses", "only has private addresses (10.20.30.40)", "media.public_ips")
	})

	t.Run("TURN from turn.urls against coturn", func(t *testing.T) {
		// The relay browsers are given, with credentials minted from turn.secret as each session's are.
		turn := testenv.StartCoturn(t, testenv.CoturnOptions{})
		c := good()
		c.TURN.URLs = turn.URLs("127.0.0.1")
		c.TURN.Secret = config.Secret(turn.Secret)
		if r := find(run(c, nil), "turn"); r.Status != doctor.Pass || !strings.Contains(r.Detail, "relay allocated") {
			t.Errorf("turn with coturn's secret: %+v", r)
		}
		c.TURN.Secret = config.Secret("not-coturns-secret-0123456789abcdef")
		expectFail(t, run(c, nil), "turn", "turn.urls", "turn.secret")
	})

	t.Run("Redis down", func(t *testing.T) {
		redis.Stop()
		defer redis.Start()
		expectFail(t, run(good(), nil), "redis", redis.Addr(), "start Redis")
	})

	t.Run("Asterisk down", func(t *testing.T) {
		if err := ast.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		expectFail(t, run(good(), nil), "asterisk ari", "does not answer", "start Asterisk")
	})
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	return testenv.FreePorts(t, 1)[0] // outside the ephemeral range: nothing else takes it before the holder binds it
}

// writeTestCert writes a self-signed certificate for hosts, valid until notAfter, and returns its paths.
func writeTestCert(t *testing.T, hosts []string, notAfter time.Time) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}
