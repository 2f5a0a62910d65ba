// Package layout checks that the import graph keeps the architecture's layers: signalling and API → call control
// → ARI and media, with test tooling out of the production binary.
package layout

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/patchbay/patchbay/"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func list(t *testing.T, args ...string) []pkg {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-json"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	var ps []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		ps = append(ps, p)
	}
	return ps
}

// TestBinaryPullsNoTestTooling: the production binary reaches the synthetic caller and the bench engine only
// through the call and bench subcommands, and never the test harness, browsers' drivers or fake Redis.
func TestBinaryPullsNoTestTooling(t *testing.T) {
	for _, p := range list(t, "-deps", mod+"cmd/patchbay") {
		for _, bad := range []string{"chromedp", "miniredis", mod + "test/", "go.uber.org/goleak", mod + "ari/aritest"} {
			if strings.Contains(p.ImportPath, bad) {
				t.Errorf("cmd/patchbay depends on %s", p.ImportPath)
			}
		}
	}
}

// TestLayers: lower packages never import higher ones.
func TestLayers(t *testing.T) {
	rules := []struct {
		pkgPrefix string
		forbidden []string
		why       string
	}{
		{"webrtc/", []string{"internal/", "tools/", "test/"}, "webrtc/ is the media and signalling edge: it imports nothing from call control or tooling"},
		{"ari", []string{"internal/", "webrtc/", "dialplan", "tools/", "test/"}, "ari/ is the lowest layer"},
		{"internal/rooms", []string{"webrtc/signal", "webrtc/web", "internal/call", "internal/api"}, "the room registry knows neither the page nor the signalling protocol"},
		{"internal/call", []string{"internal/api", "internal/server", "webrtc/web", "tools/", "test/"}, "call control sits below the API and the wiring"},
		{"dialplan", []string{"internal/", "webrtc/", "ari"}, "number rules are pure logic"},
		{"wire", []string{mod}, "wire codes are a leaf"},
		{"internal/cdr", []string{"internal/", "webrtc/", "ari", "dialplan", "auth", "certs", "tools/", "test/"}, "call records are a leaf: the standard library and wire only"},
		{"internal/metrics", []string{"internal/call", "internal/server", "internal/api", "webrtc/", "ari", "tools/", "test/"}, "metrics know records, not the parts that feed them"},
	}
	for _, p := range list(t, mod+"...") {
		rel := strings.TrimPrefix(p.ImportPath, mod)
		if strings.HasPrefix(rel, "test/") || strings.HasPrefix(rel, "tools/") || strings.HasPrefix(rel, "cmd/") {
			continue
		}
		for _, r := range rules {
			if !strings.HasPrefix(rel, r.pkgPrefix) || strings.HasSuffix(rel, "test") {
				continue
			}
			for _, imp := range p.Imports {
				for _, f := range r.forbidden {
					target := f
					if !strings.HasPrefix(f, mod) {
						target = mod + f
					}
					if strings.HasPrefix(imp, target) {
						t.Errorf("%s imports %s: %s", rel, strings.TrimPrefix(imp, mod), r.why)
					}
				}
			}
		}
	}
}
