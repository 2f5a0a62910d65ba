package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// run invokes the CLI as a user would and returns exit code and stderr.
func run(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var stderr bytes.Buffer
	code := mainWithArgs(args, &stderr)
	return code, stderr.String()
}

func baseEnv(t *testing.T) map[string]string {
	dir := t.TempDir()
	return map[string]string{
		"PATCHBAY_ARI_PASSWORD":      "ari-password-123456",
		"PATCHBAY_AUTH_TOKEN_SECRET": strings.Repeat("s", 40),
		"PATCHBAY_CERTS_DIR":         dir,
		"PATCHBAY_HTTP_LISTEN":       "127.0.0.1:0",
		"PATCHBAY_MEDIA_ICE_PORT":    "0",
	}
}

func TestUsageAndUnknownCommand(t *testing.T) {
	if code, out := run(t, nil); code != 2 || !strings.Contains(out, "serve") {
		t.Errorf("no args: code %d, out %q", code, out)
	}
	if code, out := run(t, nil, "frobnicate"); code != 2 || !strings.Contains(out, `unknown command "frobnicate"`) {
		t.Errorf("unknown: code %d, out %q", code, out)
	}
}

func TestBadConfigValueNamesTheKey(t *testing.T) {
	env := baseEnv(t)
	env["PATCHBAY_ASTERISK_SIP_PORT"] = "99999"
	code, out := run(t, env, "serve")
	if code != 1 || !strings.Contains(out, "asterisk.sip_port") {
		t.Fatalf("code %d, out %q", code, out)
	}
	if strings.Contains(out, env["PATCHBAY_ARI_PASSWORD"]) || strings.Contains(out, env["PATCHBAY_AUTH_TOKEN_SECRET"]) {
		t.Fatalf("secret in error output: %q", out)
	}
}

func TestMissingCertificateSaysWhatToRun(t *testing.T) {
	code, out := run(t, baseEnv(t), "serve")
	if code != 1 || !strings.Contains(out, "patchbay certs init") {
		t.Fatalf("code %d, out %q", code, out)
	}
}

func TestAsteriskNotRunning(t *testing.T) {
	env := baseEnv(t)
	if code, out := run(t, env, "certs", "init"); code != 0 {
		t.Fatalf("certs init: %s", out)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0") // a port with nothing behind it once closed
	addr := ln.Addr().String()
	ln.Close()
	env["PATCHBAY_ARI_URL"] = "http://" + addr
	env["PATCHBAY_ARI_CONNECT_TIMEOUT"] = "2s"
	start := time.Now()
	code, out := run(t, env, "serve")
	if code != 1 || !strings.Contains(out, "not reachable") || !strings.Contains(out, addr) {
		t.Fatalf("code %d, out %q", code, out)
	}
	t.Logf("failed after %v: %s", time.Since(start).Round(time.Millisecond), out)
}

func TestWrongARIPassword(t *testing.T) {
	env := baseEnv(t)
	if code, out := run(t, env, "certs", "init"); code != 0 {
		t.Fatalf("certs init: %s", out)
	}
	// Asterisk answers 401 to a wrong ari.conf password, on REST and on the events WebSocket alike.
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"message":"Authentication required"}`))
	}))
	defer fake.Close()
	env["PATCHBAY_ARI_URL"] = fake.URL
	code, out := run(t, env, "serve")
	if code != 1 || !strings.Contains(out, "401") || !strings.Contains(out, "ari.conf") {
		t.Fatalf("code %d, out %q", code, out)
	}
	if strings.Contains(out, env["PATCHBAY_ARI_PASSWORD"]) {
		t.Fatal("password printed")
	}
}

func TestConfigInitNeverOverwrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	if code, out := run(t, nil, "config", "init", "--out", path); code != 0 {
		t.Fatalf("config init: %s", out)
	}
	first, _ := os.ReadFile(path)
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600 (it holds secrets)", st.Mode().Perm())
	}
	run(t, nil, "config", "init", "--out", path)
	if second, _ := os.ReadFile(path); !bytes.Equal(first, second) {
		t.Error("config init overwrote an existing file")
	}
	// The generated file is a valid config as it stands.
	code, out := run(t, map[string]string{"PATCHBAY_CONFIG": path}, "asterisk-config", "--out", filepath.Join(t.TempDir(), "ast"))
	if code != 0 {
		t.Fatalf("asterisk-config from a fresh config: %s", out)
	}
}

func TestAsteriskConfigNeedsOut(t *testing.T) {
	code, out := run(t, baseEnv(t), "asterisk-config")
	if code != 1 || !strings.Contains(out, "--out") {
		t.Fatalf("code %d, out %q", code, out)
	}
}

// TestDoctorExitStatus: doctor prints ✗ with a hint for a bad config and exits 1; --json is JSON.
func TestDoctorExitStatus(t *testing.T) {
	env := baseEnv(t)
	env["PATCHBAY_ARI_PASSWORD"] = "short"
	stdout := os.Stdout
	r, w, _ := os.Pipe()
	os.Stdout = w
	code, stderr := run(t, env, "doctor", "--json")
	w.Close()
	os.Stdout = stdout
	var out bytes.Buffer
	_, _ = out.ReadFrom(r)
	if code != 1 || !strings.Contains(stderr, "check(s) failed") {
		t.Errorf("code %d, stderr %q", code, stderr)
	}
	if !strings.Contains(out.String(), `"ok": false`) || !strings.Contains(out.String(), "ari.password") {
		t.Errorf("json output:\n%s", out.String())
	}
}
