package asteriskconfigs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// sampleParams has every feature switched on, with secrets that are easy to spot.
func sampleParams() Params {
	p := DefaultParams()
	p.ARIPassword = "ari-Secret-1"
	p.ExternalAddress = "203.0.113.7"
	p.Prometheus = true
	p.Phones = []Phone{
		{Name: "101", Password: "phone-Secret-101"},
		{Name: "102", Password: "phone-Secret-102", Transport: TransportTCP},
		{Name: "103", Password: "phone-Secret-103", Transport: TransportTLS, SRTP: true, CallerIDName: "Desk 103"},
		{Name: "104", Password: "phone-Secret-104", Transport: TransportTLS},
		{Name: "alice", Password: "phone-Secret-alice", Transport: TransportWSS},
	}
	p.Trunk = Trunk{
		Name: "carrier", Host: "127.0.0.2:5060", Username: "acct1", Password: "trunk-Secret-1", Register: true,
		FromDomain: "sip.example.net", FromUser: "+4930123456",
	}
	p.Trunks = []Trunk{
		{Name: "eu-pcma", Host: "127.0.0.3:5070", Transport: TransportTCP, Codecs: []string{"alaw"}},
		{Name: "secure", Host: "sip.example.org:5061", Transport: TransportTLS, Match: []string{"198.51.100.0/24"},
			Username: "acct2", Password: "trunk-Secret-2"},
	}
	p.ClusterNode = "a"
	p.ClusterPeers = []ClusterPeer{ClusterPeerFor("a", "b", "198.51.100.9:5060", "cluster-Secret-0123456789abcdef0123")}
	return p
}

func TestRenderFSAllTemplates(t *testing.T) {
	files, err := RenderFS(sampleParams())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"asterisk.conf", "modules.conf", "http.conf", "ari.conf", "pjsip.conf", "rtp.conf",
		"extensions.conf", "confbridge.conf", "logger.conf", "manager.conf", "cdr.conf", "features.conf",
		"indications.conf", "prometheus.conf"}
	for _, n := range want {
		if len(files[n]) == 0 {
			t.Errorf("%s not rendered", n)
		}
	}
	if len(files) != len(Files()) {
		t.Errorf("RenderFS gave %d files, Files() lists %d", len(files), len(Files()))
	}
	for n, b := range files {
		if strings.Contains(string(b), "<no value>") {
			t.Errorf("%s contains <no value>", n)
		}
		// Asterisk config lines: a section, key = value, key => value, a comment, or blank.
		lineRE := regexp.MustCompile(`^(|;.*|\[[A-Za-z0-9_.-]+\](\([!A-Za-z0-9_,.-]*\))?|[A-Za-z_][A-Za-z0-9_.]* *=>? *.*| same => .*)$`)
		for i, l := range strings.Split(string(b), "\n") {
			if !lineRE.MatchString(l) {
				t.Errorf("%s:%d: odd line %q", n, i+1, l)
			}
		}
	}
}

func TestSecretsOnlyFromParams(t *testing.T) {
	p := sampleParams()
	files, err := RenderFS(p)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{p.ARIPassword: "ari.conf", p.Trunk.Password: "pjsip.conf", p.Trunks[1].Password: "pjsip.conf",
		p.ClusterPeers[0].InPassword: "pjsip.conf", p.ClusterPeers[0].OutPassword: "pjsip.conf"}
	for _, ph := range p.Phones {
		secrets[ph.Password] = "pjsip.conf"
	}
	for s, home := range secrets {
		for n, b := range files {
			has := strings.Contains(string(b), s)
			if n == home && !has {
				t.Errorf("%s lacks secret meant for it", n)
			}
			if n != home && has {
				t.Errorf("secret leaked into %s", n)
			}
		}
	}
	// No template may carry a password of its own.
	for _, n := range Files() {
		raw, err := templateFS.ReadFile(n + tmplSuffix)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(raw), "\n") {
			l = strings.TrimSpace(l)
			if strings.HasPrefix(l, "password") || strings.HasPrefix(l, "secret") {
				if !strings.Contains(l, "{{") {
					t.Errorf("%s: literal secret line %q", n, l)
				}
			}
		}
	}
}

func TestPJSIPContents(t *testing.T) {
	p := sampleParams()
	p.CertDir = "/etc/asterisk/keys"
	files, err := RenderFS(p)
	if err != nil {
		t.Fatal(err)
	}
	pj := string(files["pjsip.conf"])
	for _, want := range []string{
		"[transport-tls]\ntype = transport\nprotocol = tls\nbind = 0.0.0.0:5061\ncert_file = /etc/asterisk/keys/server.crt\npriv_key_file = /etc/asterisk/keys/server.key\nca_list_file = /etc/asterisk/keys/ca.crt",
		"[transport-udp]\ntype = transport\nprotocol = udp\nbind = 0.0.0.0:5060",
		"[transport-wss]",
		"external_media_address = 203.0.113.7",
		"external_signaling_address = 203.0.113.7",
		"local_net = 192.168.0.0/16",
		"[103](softphone-tls-srtp-endpoint)",
		"media_encryption = sdes",
		"max_contacts = 1",
		"remove_existing = yes",
		"[alice](webrtc-endpoint)",
		"webrtc = yes",
		"[102](softphone-endpoint)\ntransport = transport-tcp",
		"[104](softphone-endpoint)\ntransport = transport-tls",
		"[carrier](trunk-endpoint)",
		"outbound_auth = carrier-auth",
		"from_domain = sip.example.net",
		"match = 127.0.0.2",
		"[carrier-reg](trunk-registration)",
		"server_uri = sip:127.0.0.2:5060",
		"client_uri = sip:acct1@127.0.0.2:5060",
		"[eu-pcma](trunk-endpoint)\naors = eu-pcma\ntransport = transport-tcp\ndisallow = all\nallow = alaw",
		"[eu-pcma](trunk-aor)\ncontact = sip:127.0.0.3:5070;transport=tcp",
		"type = identify\nendpoint = eu-pcma\nmatch = 127.0.0.3",
		"[secure](trunk-endpoint)\naors = secure\ntransport = transport-tls\noutbound_auth = secure-auth",
		"contact = sip:sip.example.org:5061;transport=tls",
		"endpoint = secure\nmatch = 198.51.100.0/24",
		"[secure-auth]",
	} {
		if !strings.Contains(pj, want) {
			t.Errorf("pjsip.conf lacks %q", want)
		}
	}
}

func TestPrometheusByDefault(t *testing.T) {
	p := DefaultParams()
	p.ARIPassword = "x"
	files, err := RenderFS(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(files["modules.conf"]), "load = res_prometheus.so") {
		t.Error("modules.conf does not load res_prometheus")
	}
	prom := string(files["prometheus.conf"])
	for _, want := range []string{"enabled = yes", "uri = metrics", "http://127.0.0.1:8088/metrics"} {
		if !strings.Contains(prom, want) {
			t.Errorf("prometheus.conf lacks %q:\n%s", want, prom)
		}
	}
}

func TestOptionalParts(t *testing.T) {
	p := DefaultParams()
	p.ARIPassword = "x"
	p.HTTPSPort = 0
	p.SIPTLSPort = 0
	p.Prometheus = false
	files, err := RenderFS(p)
	if err != nil {
		t.Fatal(err)
	}
	pj := string(files["pjsip.conf"])
	for _, absent := range []string{"[transport-tls]", "[transport-wss]", "external_media_address", "type = identify", "server_uri", "[from-patchbay-"} {
		if strings.Contains(pj, absent) {
			t.Errorf("pjsip.conf has %q though it is switched off", absent)
		}
	}
	if !strings.Contains(string(files["http.conf"]), "tlsenable = no") {
		t.Error("http.conf should disable TLS when HTTPSPort is 0")
	}
	if strings.Contains(string(files["modules.conf"]), "res_prometheus") || !strings.Contains(string(files["prometheus.conf"]), "enabled = no") {
		t.Error("res_prometheus loaded or enabled though Prometheus is false")
	}
	ext := string(files["extensions.conf"])
	if !strings.Contains(ext, "same => n,Hangup(3)") {
		t.Error("without a trunk, from-patchbay should reject PSTN numbers")
	}
}

func TestDialplanInterface(t *testing.T) {
	p := sampleParams()
	p.App = "pbtest"
	files, err := RenderFS(p)
	if err != nil {
		t.Fatal(err)
	}
	ext := string(files["extensions.conf"])
	for _, want := range []string{
		"[internal]", "[from-phones]", "[from-patchbay]", "[from-trunk]",
		"exten => _1XX,1,", "Dial(PJSIP/${EXTEN},30)",
		"exten => 600,1,", "Echo()",
		"exten => 601,1,", "Playtones(440)",
		"exten => 602,1,", "Read(DIGITS,,4,,,10)", "Set(GLOBAL(LAST_DTMF_READ)=${DIGITS})",
		"exten => 603,1,", "Playtones(1000)",
		"exten => _[a-z].,1,", "exten => _7XXX,1,", "exten => _8XXX,1,",
		"Stasis(pbtest,inbound,", "Stasis(pbtest,room,${EXTEN})", "Stasis(pbtest,outbound,", "Stasis(pbtest,did,",
		"exten => 604,1,", "SendDTMF(1234#,250)",
		"exten => _+X.,1,", "exten => _0X.,1,",
		"Dial(PJSIP/${FILTER(0-9+,${EXTEN})}@carrier,60)",
		"[from-patchbay-carrier]", "[from-patchbay-eu-pcma]", "Dial(PJSIP/${FILTER(0-9+,${EXTEN})}@eu-pcma,60)",
		"[from-patchbay-secure]",
		"exten => FAILED,1,",
	} {
		if !strings.Contains(ext, want) {
			t.Errorf("extensions.conf lacks %q", want)
		}
	}
	// Every Stasis() is followed by the fallback.
	lines := strings.Split(ext, "\n")
	for i, l := range lines {
		if strings.Contains(l, "Stasis(") && !strings.HasPrefix(l, ";") {
			if i+1 >= len(lines) || !strings.Contains(lines[i+1], "Goto(stasis-result,${STASISSTATUS},1)") {
				t.Errorf("line %d: Stasis without fallback: %q", i+1, l)
			}
		}
	}
}

func TestValidateNamesField(t *testing.T) {
	base := sampleParams()
	tests := []struct {
		field string
		mod   func(*Params)
	}{
		{"HTTPBindAddr", func(p *Params) { p.HTTPBindAddr = "localhost" }},
		{"HTTPPort", func(p *Params) { p.HTTPPort = 0 }},
		{"HTTPSPort", func(p *Params) { p.HTTPSPort = p.HTTPPort }},
		{"HTTPSessionLimit", func(p *Params) { p.HTTPSessionLimit = 0 }},
		{"SIPPort", func(p *Params) { p.SIPPort = 70000 }},
		{"SIPTLSPort", func(p *Params) { p.SIPTLSPort = p.SIPPort }},
		{"RTPEnd", func(p *Params) { p.RTPEnd = p.RTPStart }},
		{"ARIUser", func(p *Params) { p.ARIUser = "a b" }},
		{"ARIPassword", func(p *Params) { p.ARIPassword = "" }},
		{"ARIPassword", func(p *Params) { p.ARIPassword = "pw;inject" }},
		{"ARIPassword", func(p *Params) { p.ARIPassword = "x\n[evil]" }},
		{"ARIPassword", func(p *Params) { p.ARIPasswordFormat = PasswordCrypt; p.ARIPassword = "plain" }},
		{"ARIPasswordFormat", func(p *Params) { p.ARIPasswordFormat = "md5" }},
		{"App", func(p *Params) { p.App = "a,b" }},
		{"CertDir", func(p *Params) { p.CertDir = "keys" }},
		{"ExternalAddress", func(p *Params) { p.ExternalAddress = "1.2.3.4;x" }},
		{"LocalNets[1]", func(p *Params) { p.LocalNets = []string{"10.0.0.0/8", "nope"} }},
		{"RunDir", func(p *Params) { p.RunDir = "" }},
		{"Phones[0].Name", func(p *Params) { p.Phones[0].Name = "10 1" }},
		{"Phones[1].Name", func(p *Params) { p.Phones[1].Name = p.Phones[0].Name }},
		{"Phones[0].Password", func(p *Params) { p.Phones[0].Password = "" }},
		{"Phones[0].Transport", func(p *Params) { p.Phones[0].Transport = "sctp" }},
		{"Phones[0].SRTP", func(p *Params) { p.Phones[0].SRTP = true }},
		{"Phones[2].Transport", func(p *Params) { p.SIPTLSPort = 0 }},
		{"Phones[2].CallerIDName", func(p *Params) { p.Phones[2].CallerIDName = `x" <1>` }},
		{"Trunk.Name", func(p *Params) { p.Trunk.Name = "101" }},
		{"Trunk.Host", func(p *Params) { p.Trunk.Host = "127.0.0.2" }},
		{"Trunk.Match", func(p *Params) { p.Trunk.Host = "sip.example.net:5060" }},
		{"Trunk.Password", func(p *Params) { p.Trunk.Password = "" }},
		{"Trunk.Match[0]", func(p *Params) { p.Trunk.Match = []string{"x"} }},
		{"Trunk.Transport", func(p *Params) { p.Trunk.Transport = "sctp" }},
		{"Trunks[1].Transport", func(p *Params) { p.SIPTLSPort = 0; p.Phones = p.Phones[:2] }},
		{"Trunks[0].Codecs[1]", func(p *Params) { p.Trunks[0].Codecs = []string{"alaw", "pcma"} }},
		{"Trunks[0].Name", func(p *Params) { p.Trunks[0].Name = "carrier" }},
		{"Trunks[0].Register", func(p *Params) { p.Trunks[0].Register = true }},
		{"Trunks[1].Match", func(p *Params) { p.Trunks[1].Match = nil }},
	}
	if err := base.Validate(); err != nil {
		t.Fatalf("sample params invalid: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.field, func(t *testing.T) {
			p := sampleParams()
			tc.mod(&p)
			err := p.Validate()
			if err == nil {
				t.Fatal("Validate accepted bad params")
			}
			if !strings.Contains(err.Error(), tc.field+":") {
				t.Errorf("error does not name %s: %v", tc.field, err)
			}
			if p.ARIPassword != "" && strings.Contains(err.Error(), p.ARIPassword) {
				t.Errorf("error leaks the ARI password: %v", err)
			}
			if _, rerr := RenderFS(p); rerr == nil {
				t.Error("RenderFS rendered invalid params")
			}
		})
	}
}

func TestRenderWritesFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc")
	paths, err := Render(sampleParams(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(Files()) {
		t.Fatalf("wrote %d files, want %d", len(paths), len(Files()))
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != FileMode {
			t.Errorf("%s mode %v, want %v", p, st.Mode().Perm(), FileMode)
		}
	}
	// Rendering again overwrites in place and leaves no temp files.
	if _, err := Render(sampleParams(), dir); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != len(paths)+1 { // + moh/
		t.Errorf("dir holds %d entries after re-render, want %d and moh/", len(ents), len(paths))
	}
	moh, _ := os.ReadDir(filepath.Join(dir, "moh"))
	if len(moh) != 1 || moh[0].Name() != HoldTuneFile {
		t.Errorf("moh/ holds %v, want only %s", moh, HoldTuneFile)
	}
}

// TestHoldTune: the default music-on-hold class plays the tune Render writes; it is a valid 8 kHz WAV whose notes
// are the ones tests listen for, and an admin's own music directory replaces it.
func TestHoldTune(t *testing.T) {
	p := sampleParams()
	files, err := RenderFS(p)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(files["musiconhold.conf"])
	if !strings.Contains(conf, "[default]") || !strings.Contains(conf, "mode = files") ||
		!strings.Contains(conf, "directory = "+p.EtcDir+"/moh") {
		t.Errorf("musiconhold.conf does not play <etc>/moh:\n%s", conf)
	}
	b := holdTune()
	if string(b[:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || len(b) != 44+2*4000*len(HoldTuneHz) {
		t.Fatalf("hold tune is not the expected WAV: %d bytes, header %q", len(b), b[:16])
	}
	// Each note's middle sample window carries its frequency: the zero crossings per second say so.
	for k, hz := range HoldTuneHz {
		crossings := 0
		prev := int16(0)
		for i := 1000; i < 3000; i++ {
			v := int16(uint16(b[44+2*(k*4000+i)]) | uint16(b[45+2*(k*4000+i)])<<8)
			if (prev < 0) != (v < 0) {
				crossings++
			}
			prev = v
		}
		got := float64(crossings) / 2 / (2000.0 / 8000)
		if got < hz*0.95 || got > hz*1.05 {
			t.Errorf("note %d: %.0f Hz, want %.0f", k, got, hz)
		}
	}
	p.MOHDir = "/usr/share/asterisk/moh"
	files, err = RenderFS(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(files["musiconhold.conf"]), "directory = /usr/share/asterisk/moh") {
		t.Errorf("MOHDir ignored:\n%s", files["musiconhold.conf"])
	}
	dir := t.TempDir()
	if _, err := Render(p, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "moh")); !os.IsNotExist(err) {
		t.Errorf("Render wrote the hold tune although MOHDir names music of its own (%v)", err)
	}
}

// TestBenchWebRTCEndpoints: the bench's Asterisk-native WebRTC endpoints are rendered only when asked for, PCMU
// only, with the project's DTLS certificate, in a context that reaches nothing but the echo extension.
func TestBenchWebRTCEndpoints(t *testing.T) {
	p := sampleParams()
	files, err := RenderFS(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(files["pjsip.conf"]), "bench-webrtc") || strings.Contains(string(files["extensions.conf"]), "bench-webrtc") {
		t.Fatal("bench endpoints rendered though none were asked for")
	}
	p.BenchWebRTC = []Phone{{Name: "bench-webrtc-1", Password: "bench-Secret-1"}, {Name: "bench-webrtc-2", Password: "bench-Secret-2"}}
	files, err = RenderFS(p)
	if err != nil {
		t.Fatal(err)
	}
	pj := string(files["pjsip.conf"])
	for _, want := range []string{"[bench-webrtc-endpoint](!)", "context = bench-webrtc", "webrtc = yes", "allow = ulaw",
		"dtls_cert_file = " + p.CertDir + "/server.crt", "[bench-webrtc-2](bench-webrtc-endpoint)", "password = bench-Secret-2"} {
		if !strings.Contains(pj, want) {
			t.Errorf("pjsip.conf lacks %q", want)
		}
	}
	ext := string(files["extensions.conf"])
	i := strings.Index(ext, "[bench-webrtc]")
	if i < 0 {
		t.Fatal("extensions.conf lacks the bench-webrtc context")
	}
	if ctx := ext[i:]; strings.Count(ctx, "exten =>") != 1 || !strings.Contains(ctx, "exten => 600,") {
		t.Fatalf("bench-webrtc context must reach only 600:\n%s", ctx)
	}
	p.BenchWebRTC[1].Password = "bad password"
	if _, err := RenderFS(p); err == nil || !strings.Contains(err.Error(), "BenchWebRTC[1].Password") {
		t.Fatalf("bad bench password accepted: %v", err)
	}
	p.BenchWebRTC[1].Password = "ok"
	p.HTTPSPort = 0
	if _, err := RenderFS(p); err == nil {
		t.Fatal("bench endpoints accepted without the TLS listener")
	}
}

// TestICESupport: Asterisk runs ICE only when an endpoint of its own needs it; Patchbay's externalMedia channels
// never do.
func TestICESupport(t *testing.T) {
	base := DefaultParams()
	base.ARIPassword = "ari-Secret-0123456789"
	for _, tc := range []struct {
		name string
		edit func(p *Params)
		want string
	}{
		{"no phones", func(*Params) {}, "icesupport = no"},
		{"SIP phones and a trunk", func(p *Params) {
			p.Phones = []Phone{{Name: "101", Password: "phone-Secret-101"}, {Name: "103", Password: "phone-Secret-103", Transport: TransportTLS}}
			p.Trunk = Trunk{Name: "carrier", Host: "127.0.0.2:5060"}
		}, "icesupport = no"},
		{"a phone over WSS", func(p *Params) {
			p.Phones = []Phone{{Name: "101", Password: "phone-Secret-101"}, {Name: "alice", Password: "phone-Secret-alice", Transport: TransportWSS}}
		}, "icesupport = yes"},
		{"bench WebRTC endpoints", func(p *Params) {
			p.BenchWebRTC = []Phone{{Name: "bench-webrtc-1", Password: "bench-Secret-1"}}
		}, "icesupport = yes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			tc.edit(&p)
			files, err := RenderFS(p)
			if err != nil {
				t.Fatal(err)
			}
			if rtp := string(files["rtp.conf"]); !strings.Contains(rtp, tc.want+"\n") {
				t.Errorf("rtp.conf lacks %q:\n%s", tc.want, rtp)
			}
		})
	}
}

// TestClusterTrunkBothSidesAgree: two nodes rendered from the same secret expect of each other exactly the
// credentials the other presents, each direction with its own password, and only the cluster dialplan reaches
// Stasis from a peer.
func TestClusterTrunkBothSidesAgree(t *testing.T) {
	const secret = "shared-cluster-Secret-0123456789abcdef"
	a := ClusterPeerFor("a", "b", "127.0.0.3:5070", secret) // a's view of b
	b := ClusterPeerFor("b", "a", "127.0.0.2:5060", secret) // b's view of a
	if a.OutUser != b.InUser || a.OutPassword != b.InPassword || b.OutUser != a.InUser || b.OutPassword != a.InPassword {
		t.Fatalf("credentials disagree: a %+v, b %+v", a, b)
	}
	if a.InPassword == a.OutPassword {
		t.Error("both directions share one password")
	}
	if ClusterPeerFor("a", "b", "127.0.0.3:5070", secret+"x").OutPassword == a.OutPassword {
		t.Error("password does not depend on the secret")
	}
	p := sampleParams()
	p.ClusterPeers = []ClusterPeer{a}
	files, err := RenderFS(p)
	if err != nil {
		t.Fatal(err)
	}
	pj, ext := string(files["pjsip.conf"]), string(files["extensions.conf"])
	for _, want := range []string{"[cluster-b]\ntype = endpoint\ncontext = from-cluster", "match = 127.0.0.3", "contact = sip:127.0.0.3:5070",
		"auth = cluster-b-in", "outbound_auth = cluster-b-out", "username = b\npassword = " + a.InPassword, "username = a\npassword = " + a.OutPassword} {
		if !strings.Contains(pj, want) {
			t.Errorf("pjsip.conf lacks %q", want)
		}
	}
	for _, want := range []string{"[from-cluster]", "Stasis(patchbay,peer,", "Stasis(patchbay,peer-room,", "[patchbay-cluster]",
		"Dial(${PB_DIAL},${PB_RING},b(patchbay-cluster-predial^s^1))", "[patchbay-cluster-local]"} {
		if !strings.Contains(ext, want) {
			t.Errorf("extensions.conf lacks %q", want)
		}
	}
	// from-cluster never dials: a peer cannot use this node to reach its phones or trunks.
	sec := ext[strings.Index(ext, "[from-cluster]"):]
	sec = sec[:strings.Index(sec, "[patchbay-cluster]")]
	if strings.Contains(sec, "Dial(") || strings.Contains(sec, "include") {
		t.Errorf("from-cluster dials or includes:\n%s", sec)
	}

	none := DefaultParams()
	none.ARIPassword = "ari-Secret-1"
	files, err = RenderFS(none)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(files["extensions.conf"]), "cluster") || strings.Contains(string(files["pjsip.conf"]), "cluster-") {
		t.Error("a node without cluster config renders cluster contexts")
	}

	bad := sampleParams()
	bad.ClusterPeers = []ClusterPeer{ClusterPeerFor("a", "a", "example.org:5060", secret)}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "ClusterPeers[0]") {
		t.Errorf("a peer named like this node with a host name: %v", err)
	}
}
