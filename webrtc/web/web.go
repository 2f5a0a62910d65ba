// Package web serves Patchbay's browser side: a small phone page and
// patchbay.js, the ES module other sites embed to talk to the signalling
// server. Everything is embedded in the binary; there is no build step.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// FS returns the embedded files (index.html, app.js, patchbay.js, style.css)
// at its root.
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil { // cannot happen: the directory is embedded above
		return static
	}
	return sub
}

// contentSecurityPolicy allows only this origin's scripts, styles and
// WebSocket; media may come from local MediaStreams.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"media-src 'self' blob: mediastream:; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the page at / and patchbay.js beside it. Mount it at the site
// root next to the signalling server at /ws, which the page connects to.
func Handler() http.Handler {
	files := http.FileServerFS(FS())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		// The page may carry ?token=: never leak it in a Referer.
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Permissions-Policy", "microphone=(self), camera=(self), geolocation=()")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		// patchbay.js may be imported by other sites' pages.
		if r.URL.Path == "/patchbay.js" {
			h.Set("Access-Control-Allow-Origin", "*")
		}
		h.Set("Cache-Control", "no-cache")
		if r.URL.Path == "/check" { // the pre-call check page
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/check.html"
			files.ServeHTTP(w, r2)
			return
		}
		files.ServeHTTP(w, r)
	})
}
