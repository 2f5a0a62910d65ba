package web

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/patchbay/patchbay/dialplan"
)

func TestHandler(t *testing.T) {
	ts := httptest.NewServer(Handler())
	defer ts.Close()
	tests := []struct {
		method, path string
		status       int
		ctype        string // prefix of Content-Type
		body         string // substring of the body
	}{
		{"GET", "/", 200, "text/html", `<audio id="remote"`},
		{"GET", "/patchbay.js", 200, "text/javascript", "export class Patchbay"},
		{"GET", "/app.js", 200, "text/javascript", "window.patchbayState"},
		{"GET", "/style.css", 200, "text/css", ".keypad"},
		{"GET", "/check", 200, "text/html", `id="steps"`},
		{"GET", "/check.js", 200, "text/javascript", "window.patchbayCheck"},
		{"HEAD", "/", 200, "text/html", ""},
		{"GET", "/missing.js", 404, "", ""},
		{"GET", "/../web.go", 404, "", ""},
		{"POST", "/", 405, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, ts.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 200 {
				return
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
				t.Errorf("Content-Type %q, want %s", ct, tc.ctype)
			}
			if !strings.Contains(string(body), tc.body) {
				t.Errorf("body lacks %q", tc.body)
			}
			for h, want := range map[string]string{
				"X-Content-Type-Options": "nosniff",
				"Referrer-Policy":        "no-referrer",
			} {
				if got := resp.Header.Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") ||
				strings.Contains(csp, "unsafe-inline") {
				t.Errorf("CSP %q", csp)
			}
		})
	}
}

// The page must work under its own CSP: no inline scripts or handlers.
func TestPageHasNoInlineScript(t *testing.T) {
	b, err := fs.ReadFile(FS(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, bad := range []string{"<script>", "onclick=", "onload=", "javascript:", "style=\""} {
		if strings.Contains(page, bad) {
			t.Errorf("index.html contains %q, which the CSP blocks", bad)
		}
	}
}

// TestJSSyntax checks every script with node --check, as an ES module.
func TestJSSyntax(t *testing.T) {
	node := needNode(t)
	dir := t.TempDir()
	err := fs.WalkDir(FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".js") {
			return err
		}
		b, err := fs.ReadFile(FS(), path)
		if err != nil {
			return err
		}
		// .mjs makes node parse it as a module, as browsers do with type=module.
		dst := filepath.Join(dir, strings.TrimSuffix(path, ".js")+".mjs")
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return err
		}
		if out, err := exec.Command(node, "--check", dst).CombinedOutput(); err != nil {
			t.Errorf("node --check %s: %v\n%s", path, err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func needNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to check patchbay.js: apt-get install nodejs (scripts/provision.sh does)")
	}
	return node
}

// nodeWithWebSocket returns node's arguments for a global WebSocket: built in
// from Node 22, behind a flag in Node 20.
func nodeWithWebSocket(ctx context.Context, t *testing.T, node string) []string {
	t.Helper()
	probe := "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
	if exec.CommandContext(ctx, node, "-e", probe).Run() == nil {
		return nil
	}
	if exec.CommandContext(ctx, node, "--experimental-websocket", "-e", probe).Run() == nil {
		return []string{"--experimental-websocket"}
	}
	t.Fatalf("this node has no WebSocket: install Node 20 or newer")
	return nil
}

func jwtSubject(user string) jwt.RegisteredClaims { return jwt.RegisteredClaims{Subject: user} }

func TestAgentPage(t *testing.T) {
	h := AgentPage(func(n string) error {
		_, err := dialplan.NormalizeNumber(n)
		return err
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/agent?number=%2B442079460000", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), AgentPageMeta) || rec.Header().Get("Content-Security-Policy") == "" {
		t.Errorf("agent page: %d csp=%q flag=%v", rec.Code, rec.Header().Get("Content-Security-Policy"), strings.Contains(rec.Body.String(), AgentPageMeta))
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/agent?number=100%26PJSIP", nil))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("bad number: %d", rec.Code)
	}
	// Without a number: the console, with the page's security headers.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/agent", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, `src="agent.js"`) || strings.Contains(body, AgentPageMeta) || rec.Header().Get("Content-Security-Policy") == "" {
		t.Errorf("console: %d, csp %q", rec.Code, rec.Header().Get("Content-Security-Policy"))
	}
}
