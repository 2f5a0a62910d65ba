package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

const (
	testARIPass = "ari-secret-0123456789"
	testToken   = "token-secret-0123456789abcdefghijklmnop"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(file, []byte(`
public_host: pbx.example.com
http:
  listen: ":9443"
ari:
  password: from-file-password
auth:
  token_secret: `+testToken+`
  token_ttl: 15m
asterisk:
  phones:
    - {name: "101", password: "phone-password-101", transport: tls, srtp: true}
media:
  public_ips: [203.0.113.7]
`), 0o600)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("http-listen", "", "")
	fs.Parse([]string{"--http-listen", ":7443"})
	cfg, err := Load(LoadOptions{File: file, Flags: fs, LookupEnv: env(map[string]string{
		"PATCHBAY_ARI_PASSWORD": testARIPass,
		"PATCHBAY_HTTP_LISTEN":  ":8000",
		"PATCHBAY_REDIS_ADDR":   "127.0.0.1:6379",
	})})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"flag beats env and file", cfg.HTTP.Listen, ":7443"},
		{"env beats file", cfg.ARI.Password.Reveal(), testARIPass},
		{"env alone", cfg.Redis.Addr, "127.0.0.1:6379"},
		{"default", cfg.ARI.URL, "http://127.0.0.1:8088"},
		{"derived cert path", cfg.HTTP.CertFile, "/var/lib/patchbay/certs/server.crt"},
		{"public ip", strings.Join(cfg.Media.PublicIPs, ","), "203.0.113.7"},
		{"phone", cfg.Asterisk.Phones[0].Name, "101"},
		{"hosts", strings.Join(cfg.Certs.Hosts, ","), "pbx.example.com,localhost,127.0.0.1"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if cfg.Auth.TokenTTL != 15*time.Minute {
		t.Errorf("token ttl %v", cfg.Auth.TokenTTL)
	}
}

func TestValidationNamesTheKey(t *testing.T) {
	base := map[string]string{"PATCHBAY_ARI_PASSWORD": testARIPass, "PATCHBAY_AUTH_TOKEN_SECRET": testToken}
	for _, tc := range []struct {
		key, val, wantKey string
	}{
		{"PATCHBAY_HTTP_LISTEN", "8443", "http.listen"},
		{"PATCHBAY_ARI_URL", "ftp://x", "ari.url"},
		{"PATCHBAY_ARI_URL", "http://patchbay:" + testARIPass + "@127.0.0.1:8088", "ari.url"}, // the password in the URL is not printed
		{"PATCHBAY_ARI_PASSWORD", "short", "ari.password"},
		{"PATCHBAY_ARI_APP", "bad app!", "ari.app"},
		{"PATCHBAY_AUTH_TOKEN_SECRET", "tooshort", "auth.token_secret"},
		{"PATCHBAY_ASTERISK_SIP_PORT", "70000", "asterisk.sip_port"},
		{"PATCHBAY_ASTERISK_SIP_PORT", "five", "sip_port"},
		{"PATCHBAY_MEDIA_PUBLIC_IPS", "not-an-ip", "media.public_ips[0]"},
		{"PATCHBAY_MEDIA_ICE_IPS", "not-an-ip", "media.ice_ips[0]"},
		{"PATCHBAY_MEDIA_ICE_IPS", "127.0.0.1", "media.include_loopback"},
		{"PATCHBAY_MEDIA_ICE_IPS", "0.0.0.0", "media.ice_ips[0]"},
		{"PATCHBAY_MEDIA_GC_PERCENT", "5", "media.gc_percent"},
		{"PATCHBAY_REDIS_ADDR", "localhost", "redis.addr"},
		{"PATCHBAY_LOG_LEVEL", "loud", "log.level"},
		{"PATCHBAY_AUTH_TOKEN_TTL", "soon", "token_ttl"},
	} {
		t.Run(tc.key+"="+tc.val, func(t *testing.T) {
			m := map[string]string{}
			for k, v := range base {
				m[k] = v
			}
			m[tc.key] = tc.val
			_, err := Load(LoadOptions{LookupEnv: env(m)})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.wantKey) {
				t.Fatalf("error %q does not name %s", err, tc.wantKey)
			}
			if strings.Contains(err.Error(), testARIPass) || strings.Contains(err.Error(), testToken) {
				t.Fatalf("error leaks a secret: %q", err)
			}
		})
	}
	if _, err := Load(LoadOptions{LookupEnv: env(nil)}); err == nil || !strings.Contains(err.Error(), "ari.password") {
		t.Errorf("missing password: %v", err)
	}
	if _, err := Load(LoadOptions{File: "/nonexistent.yaml", LookupEnv: env(base)}); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("ari:\n  pasword: typo\n"), 0o600)
	if _, err := Load(LoadOptions{File: bad, LookupEnv: env(base)}); err == nil || !strings.Contains(err.Error(), "pasword") {
		t.Errorf("unknown key not reported: %v", err)
	}
}

// TestFileOnlyKeysFromEnvironment: a variable naming a map or a list of objects is refused with an error that
// names the variable and says where the key goes, without printing its value (a secret, for auth.api_keys).
func TestFileOnlyKeysFromEnvironment(t *testing.T) {
	const value = "crm-key-0123456789abcdefghij"
	for _, tc := range []struct{ env, key string }{
		{"PATCHBAY_USERS", "users"},
		{"PATCHBAY_AUTH_API_KEYS", "auth.api_keys"},
		{"PATCHBAY_ASTERISK_PHONES", "asterisk.phones"},
		{"PATCHBAY_MEDIA_ICE_SERVERS", "media.ice_servers"},
		{"PATCHBAY_DIALPLAN_PSTN_ROUTES", "dialplan.pstn.routes"},
	} {
		_, err := Load(LoadOptions{LookupEnv: env(map[string]string{
			"PATCHBAY_ARI_PASSWORD": testARIPass, "PATCHBAY_AUTH_TOKEN_SECRET": testToken, tc.env: value})})
		if err == nil || !strings.Contains(err.Error(), tc.env) || !strings.Contains(err.Error(), tc.key+" is a map or a list of objects") {
			t.Errorf("%s: error %v, want one naming the variable and %s", tc.env, err, tc.key)
		}
		if err != nil && strings.Contains(err.Error(), value) {
			t.Errorf("%s: error prints the value: %v", tc.env, err)
		}
	}
	// One entry of a map the file names is a plain value.
	file := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(file, []byte("auth:\n  api_keys:\n    crm: "+strings.Repeat("f", 24)+"\n"), 0o600)
	cfg, err := Load(LoadOptions{File: file, LookupEnv: env(map[string]string{
		"PATCHBAY_ARI_PASSWORD": testARIPass, "PATCHBAY_AUTH_TOKEN_SECRET": testToken, "PATCHBAY_AUTH_API_KEYS_CRM": value})})
	if err != nil || cfg.Auth.APIKeys["crm"].Reveal() != value {
		t.Errorf("one map entry from the environment: %v", err)
	}
}

// TestSecretWrittenAsNumber: YAML reads an unquoted 0x…, 0… or …e… as a number, which would change the secret;
// such a value is refused, naming the key, and a quoted one is kept as written.
func TestSecretWrittenAsNumber(t *testing.T) {
	for _, tc := range []struct{ yaml, key, want string }{
		{"ari:\n  password: 0x1234567890ab\n", "ari.password", ""},
		{"ari:\n  password: 1234567890123e5\n", "ari.password", ""},
		{"ari:\n  password: 012345678912345\n", "ari.password", ""},
		{"auth:\n  api_keys:\n    crm: 123456789012345678901234567\n", "auth.api_keys", ""},
		{"asterisk:\n  phones:\n    - {name: '101', password: 0123456789012, transport: udp}\n", "asterisk.phones[0].password", ""},
		{"webhook:\n  secret: true\n", "webhook.secret", ""},
		{"ari:\n  password: '0x1234567890ab'\n", "", "0x1234567890ab"},
	} {
		file := filepath.Join(t.TempDir(), "p.yaml")
		os.WriteFile(file, []byte(tc.yaml), 0o600)
		cfg, err := Load(LoadOptions{File: file, LookupEnv: env(map[string]string{"PATCHBAY_AUTH_TOKEN_SECRET": testToken})})
		if tc.key != "" {
			if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), "quote it") {
				t.Errorf("%q: error %v, want one naming %s", tc.yaml, err, tc.key)
			}
			continue
		}
		if err != nil || cfg.ARI.Password.Reveal() != tc.want {
			t.Errorf("%q: %v, password %q", tc.yaml, err, cfg.ARI.Password.Reveal())
		}
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	cfg := Defaults()
	cfg.ARI.Password = testARIPass
	cfg.Auth.TokenSecret = testToken
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "password", cfg.ARI.Password, "cfg", cfg)
	j, _ := json.Marshal(cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), string(j), buf.String()} {
		if strings.Contains(s, testARIPass) || strings.Contains(s, testToken) {
			t.Fatalf("secret printed: %s", s)
		}
	}
	if cfg.ARI.Password.Reveal() != testARIPass {
		t.Fatal("Reveal lost the value")
	}
}
