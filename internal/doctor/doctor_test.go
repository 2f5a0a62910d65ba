package doctor

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/internal/config"
)

func TestMOS(t *testing.T) {
	for _, tc := range []struct {
		rtt      time.Duration
		loss     float64
		lo, hi   float64
		describe string
	}{
		{2 * time.Millisecond, 0, 4.35, 4.45, "loopback, no loss: G.711's best"},
		{100 * time.Millisecond, 0.01, 4.0, 4.3, "a good network"},
		{300 * time.Millisecond, 0.05, 3.3, 3.9, "long and lossy"},
		{2 * time.Second, 0.5, 1, 1.5, "unusable"},
	} {
		if m := MOS(tc.rtt, tc.loss); m < tc.lo || m > tc.hi {
			t.Errorf("%s: MOS(%v, %.2f) = %.2f, want %.2f..%.2f", tc.describe, tc.rtt, tc.loss, m, tc.lo, tc.hi)
		}
	}
	if MOS(50*time.Millisecond, 0.02) >= MOS(50*time.Millisecond, 0) || MOS(400*time.Millisecond, 0) >= MOS(50*time.Millisecond, 0) {
		t.Error("MOS does not fall with loss and delay")
	}
}

func baseConfig(t *testing.T) *config.Config {
	t.Helper()
	c := config.Defaults()
	c.ARI.Password = "0123456789abcdef"
	c.Auth.TokenSecret = config.Secret(strings.Repeat("s", 32))
	c.HTTP.Listen = "127.0.0.1:0"
	c.Metrics.Listen = ""
	c.Media.ICEPort = 0
	c.Media.ICETCPPort = 0
	c.Certs.Dir = t.TempDir()
	c.HTTP.CertFile = filepath.Join(c.Certs.Dir, "server.crt")
	c.HTTP.KeyFile = filepath.Join(c.Certs.Dir, "server.key")
	return &c
}

func runOne(t *testing.T, o Options, name string) Result {
	t.Helper()
	for _, r := range Run(context.Background(), o) {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no check %q", name)
	return Result{}
}

// writeCert writes a self-signed certificate for hosts, valid until notAfter.
func writeCert(t *testing.T, c *config.Config, hosts []string, notAfter time.Time) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: notAfter.Add(-365 * 24 * time.Hour), NotAfter: notAfter}
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
	kb, _ := x509.MarshalECPrivateKey(key)
	_ = os.WriteFile(c.HTTP.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	_ = os.WriteFile(c.HTTP.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

func TestCertificates(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name     string
		hosts    []string
		notAfter time.Time
		status   string
		want     string
	}{
		{"good", []string{"pbx.example.com"}, now.Add(90 * 24 * time.Hour), Pass, "covers pbx.example.com"},
		{"expired", []string{"pbx.example.com"}, now.Add(-time.Hour), Fail, "expired"},
		{"expiring", []string{"pbx.example.com"}, now.Add(5 * 24 * time.Hour), Fail, "expires in 4 days"},
		{"wrong name", []string{"other.example.com", "127.0.0.1"}, now.Add(90 * 24 * time.Hour), Fail, `does not cover public_host "pbx.example.com"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig(t)
			c.PublicHost = "pbx.example.com"
			writeCert(t, c, tc.hosts, tc.notAfter)
			r := runOne(t, Options{Config: c}, "certificates")
			if r.Status != tc.status || !strings.Contains(r.Detail, tc.want) || (r.Status == Fail && r.Fix == "") {
				t.Errorf("%+v", r)
			}
		})
	}
	c := baseConfig(t)
	if r := runOne(t, Options{Config: c}, "certificates"); r.Status != Fail || !strings.Contains(r.Fix, "certs init") {
		t.Errorf("missing certificate: %+v", r)
	}
}

func TestPortTakenByAnotherProcess(t *testing.T) {
	c := baseConfig(t)
	held, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	c.Media.ICEPort = held.LocalAddr().(*net.UDPAddr).Port
	// Patchbay binds the wildcard address: hold that.
	held.Close()
	held, err = net.ListenPacket("udp", ":"+itoa(c.Media.ICEPort))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	r := runOne(t, Options{Config: c}, "ports")
	if r.Status != Fail || !strings.Contains(r.Detail, "media.ice_port UDP/"+itoa(c.Media.ICEPort)) || !strings.Contains(r.Detail, "process") ||
		!strings.Contains(r.Fix, "media.ice_port") {
		t.Errorf("%+v", r)
	}
	held.Close()
	if r := runOne(t, Options{Config: c}, "ports"); r.Status != Pass {
		t.Errorf("free ports: %+v", r)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// Every port serve binds is checked, each named by its key, and a Patchbay that answers /healthz on the address
// http.listen names holds its own ports.
func TestPorts(t *testing.T) {
	heldTCP := func(t *testing.T, addr string) (net.Listener, int) {
		t.Helper()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("cannot listen on %s here: %v", addr, err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln, ln.Addr().(*net.TCPAddr).Port
	}
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, c *config.Config)
		status string
		want   string
	}{
		{"ice-tcp port taken", func(t *testing.T, c *config.Config) {
			_, p := heldTCP(t, ":0")
			c.Media.ICETCPPort = p
		}, Fail, "media.ice_tcp_port TCP/"},
		{"ice-tcp off", func(t *testing.T, c *config.Config) { c.Media.ICETCPPort = 0 }, Pass, "http.listen free"},
		{"patchbay running on the address http.listen names (not 127.0.0.1)", func(t *testing.T, c *config.Config) {
			ln, p := heldTCP(t, "127.0.0.2:0")
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte("ok calls=0"))
			})}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { srv.Close() })
			c.HTTP.Listen = "127.0.0.2:" + itoa(p)
		}, Pass, "http.listen held by the running Patchbay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig(t)
			tc.setup(t, c)
			r := runOne(t, Options{Config: c}, "ports")
			if r.Status != tc.status || !strings.Contains(r.Detail, tc.want) {
				t.Errorf("%+v, want %s with %q", r, tc.status, tc.want)
			}
		})
	}
}

func TestPublicAddresses(t *testing.T) {
	ips := func(s ...string) func() ([]net.IP, error) {
		return func() ([]net.IP, error) {
			var out []net.IP
			for _, a := range s {
				out = append(out, net.ParseIP(a))
			}
			return out, nil
		}
	}
	c := baseConfig(t)
	if r := runOne(t, Options{Config: c, Addrs: ips("127.0.0.1", "10.1.2.3", "fe80::1")}, "public addresses"); r.Status != Fail || !strings.Contains(r.Fix, "media.public_ips") {
		t.Errorf("private only: %+v", r)
	}
	if r := runOne(t, Options{Config: c, Addrs: ips("100.64.1.1")}, "public addresses"); r.Status != Fail {
		t.Errorf("CGNAT: %+v", r)
	}
	if r := runOne(t, Options{Config: c, Addrs: ips("10.1.2.3", "203.0.113.9")}, "public addresses"); r.Status != Pass {
		t.Errorf("public address: %+v", r)
	}
	c.Media.PublicIPs = []string{"203.0.113.9"}
	if r := runOne(t, Options{Config: c, Addrs: ips("10.1.2.3")}, "public addresses"); r.Status != Pass {
		t.Errorf("public_ips set: %+v", r)
	}
	if r := runOne(t, Options{Config: c, Addrs: ips("10.1.2.3", "172.17.0.1")}, "ice addresses"); r.Status != Pass {
		t.Errorf("ice_ips empty: %+v", r)
	}
	c.Media.ICEIPs = []string{"10.1.2.3"}
	if r := runOne(t, Options{Config: c, Addrs: ips("10.1.2.3", "172.17.0.1")}, "ice addresses"); r.Status != Pass {
		t.Errorf("ice_ips on the host: %+v", r)
	}
	c.Media.ICEIPs = []string{"10.9.9.9"}
	if r := runOne(t, Options{Config: c, Addrs: ips("10.1.2.3")}, "ice addresses"); r.Status != Fail || !strings.Contains(r.Detail, "10.9.9.9") {
		t.Errorf("ice_ips not on the host: %+v", r)
	}
}

func TestDialplanFromFile(t *testing.T) {
	p := asteriskconfigs.DefaultParams()
	p.ARIPassword = "x"
	files, err := asteriskconfigs.RenderFS(p)
	if err != nil {
		t.Fatal(err)
	}
	good := string(files["extensions.conf"])
	noStasis := strings.ReplaceAll(good, "Stasis(patchbay", "NoOp(patchbay")
	noFallback := strings.ReplaceAll(strings.ReplaceAll(good, "STASISSTATUS", "X"), "exten => FAILED,", "exten => NOPE,")
	for _, tc := range []struct {
		name, text, status, want string
	}{
		{"rendered", good, Pass, "Stasis(patchbay) entries with a fallback"},
		{"no Stasis", noStasis, Fail, "no Stasis(patchbay)"},
		{"no fallback", noFallback, Fail, "no fallback"},
	} {
		path := filepath.Join(t.TempDir(), "extensions.conf")
		_ = os.WriteFile(path, []byte(tc.text), 0o644)
		c := baseConfig(t)
		r := runOne(t, Options{Config: c, ExtensionsConf: path, AsteriskCLI: []string{}}, "dialplan stasis entry")
		if r.Status != tc.status || !strings.Contains(r.Detail, tc.want) {
			t.Errorf("%s: %+v", tc.name, r)
		}
	}
	c := baseConfig(t)
	if r := runOne(t, Options{Config: c, ExtensionsConf: "/nonexistent", AsteriskCLI: []string{}}, "dialplan stasis entry"); r.Status != Skip {
		t.Errorf("unreadable dialplan: %+v", r)
	}
}

func TestRTPRangeOverlap(t *testing.T) {
	c := baseConfig(t)
	c.Media.RelayPortStart, c.Media.RelayPortEnd = 15000, 15100 // inside Asterisk's default 10000-20000
	r := runOne(t, Options{Config: c, AsteriskCLI: []string{}}, "rtp range and external_host")
	if r.Status != Fail || !strings.Contains(r.Detail, "overlaps") {
		t.Errorf("overlap: %+v", r)
	}
	c.Media.RelayHost = "0.0.0.0"
	if r := runOne(t, Options{Config: c, AsteriskCLI: []string{}}, "rtp range and external_host"); r.Status != Fail || !strings.Contains(r.Fix, "relay_host") {
		t.Errorf("wildcard relay host: %+v", r)
	}
	c = baseConfig(t)
	if r := runOne(t, Options{Config: c, AsteriskCLI: []string{}}, "rtp range and external_host"); r.Status != Pass {
		t.Errorf("defaults: %+v", r)
	}
}

func TestTURN(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: "patchbay.test",
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			if ra.Username != "alice" {
				return "", nil, false
			}
			return ra.Username, turn.GenerateAuthKey("alice", "patchbay.test", "secret"), true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc, RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
			RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url := "turn:" + pc.LocalAddr().String() + "?transport=udp"
	c := baseConfig(t)
	if r := runOne(t, Options{Config: c}, "turn"); r.Status != Skip {
		t.Errorf("no TURN configured: %+v", r)
	}
	c.Media.ICEServers = []config.ICEServer{{URLs: []string{url}, Username: "alice", Credential: "secret"}}
	if r := runOne(t, Options{Config: c}, "turn"); r.Status != Pass {
		t.Errorf("valid credentials: %+v", r)
	}
	c.Media.ICEServers[0].Credential = "wrong"
	if r := runOne(t, Options{Config: c}, "turn"); r.Status != Fail || !strings.Contains(r.Fix, "credential") {
		t.Errorf("wrong credentials: %+v", r)
	}
}

// turn.urls are checked with credentials minted from turn.secret, as coturn's use-auth-secret checks them.
func TestTURNMintedFromSecret(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const secret = "0123456789abcdef0123456789abcdef"
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: "patchbay.test",
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			// coturn's REST API check: "EXPIRY:USER", password base64(HMAC-SHA1(secret, username)).
			expiry, _, _ := strings.Cut(ra.Username, ":")
			if n, err := strconv.ParseInt(expiry, 10, 64); err != nil || n < time.Now().Unix() {
				return "", nil, false
			}
			mac := hmac.New(sha1.New, []byte(secret))
			mac.Write([]byte(ra.Username))
			return ra.Username, turn.GenerateAuthKey(ra.Username, ra.Realm, base64.StdEncoding.EncodeToString(mac.Sum(nil))), true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc, RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
			RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := baseConfig(t)
	// TCP and TLS URLs of the same server are not allocated on (only UDP is checked), and do not fail the check.
	c.TURN.URLs = []string{"turn:" + pc.LocalAddr().String() + "?transport=udp", "turn:" + pc.LocalAddr().String() + "?transport=tcp",
		"turns:turn.example.com:443?transport=tcp"}
	c.TURN.Secret = secret
	if r := runOne(t, Options{Config: c}, "turn"); r.Status != Pass || !strings.Contains(r.Detail, pc.LocalAddr().String()) {
		t.Errorf("turn.urls with the server's secret: %+v", r)
	}
	c.TURN.Secret = "another secret, not the server's one"
	if r := runOne(t, Options{Config: c}, "turn"); r.Status != Fail || !strings.Contains(r.Fix, "turn.secret") {
		t.Errorf("turn.urls with a secret the server does not share: %+v", r)
	}
}

func TestPrintAndCall(t *testing.T) {
	c := baseConfig(t)
	o := Options{Config: c, AsteriskCLI: []string{}, Call: func(context.Context) (CallReport, error) {
		return CallReport{Setup: 210 * time.Millisecond, RTT: 3 * time.Millisecond, Loss: 0, Heard: true}, nil
	}}
	rs := Run(context.Background(), o)
	var call Result
	for _, r := range rs {
		if r.Name == "synthetic call" {
			call = r
		}
	}
	if call.Status != Pass || !strings.Contains(call.Detail, "setup 210ms") || !strings.Contains(call.Detail, "MOS 4.4") {
		t.Errorf("call: %+v", call)
	}
	var text bytes.Buffer
	if err := Print(&text, rs, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "✓ config") || !strings.Contains(text.String(), "✗ certificates") || !strings.Contains(text.String(), "→ run `patchbay certs init`") {
		t.Errorf("text output:\n%s", text.String())
	}
	var js bytes.Buffer
	if err := Print(&js, rs, true); err != nil {
		t.Fatal(err)
	}
	var out struct {
		OK     bool
		Checks []Result
	}
	if err := json.Unmarshal(js.Bytes(), &out); err != nil || out.OK || len(out.Checks) != len(rs) {
		t.Errorf("json: %v %s", err, js.String())
	}
	if !Failed(rs) {
		t.Error("Failed is false with a failed check")
	}
	o.Call = func(context.Context) (CallReport, error) { return CallReport{}, errors.New("refused") }
	if r := runOne(t, o, "synthetic call"); r.Status != Fail {
		t.Errorf("failed call: %+v", r)
	}
	rs = Run(context.Background(), Options{ConfigErr: errors.New("config key ari.password: must be set")})
	if rs[0].Status != Fail || rs[1].Status != Skip {
		t.Errorf("bad config: %+v", rs[:2])
	}
}
