package web

import (
	"bytes"
	"io/fs"
	"net/http"
)

// AgentPageMeta is the flag AgentPage puts in the page's head; the page script reads it and, with ?number=,
// joins the room mapped to that number ({"type":"join","number":...}) with the agent's token.
const AgentPageMeta = `<meta name="patchbay-mode" content="agent">`

// AgentPage serves /agent. Without ?number= it is the agent console (agent.html): the customers waiting in rooms
// mapped to numbers, the call in progress with hold, transfer, recording and a timer, and for supervisors every
// live call with listen, whisper and barge. With ?number=X it is the browser page with the agent flag, which joins
// the room mapped to X at once. The number is checked here with validNumber (the router's normaliser, passed in so
// the page depends on no call logic) so a bad link fails at once with a clear message; whether it is mapped is
// decided at join, by the token's role.
func AgentPage(validNumber func(string) error) http.Handler {
	page := Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		file := "agent.html"
		if n := r.URL.Query().Get("number"); n != "" {
			if err := validNumber(n); err != nil {
				http.Error(w, "bad number in the link: "+err.Error(), http.StatusBadRequest)
				return
			}
			file = "index.html"
		}
		html, err := fs.ReadFile(FS(), file)
		if err != nil {
			http.Error(w, "page not available", http.StatusInternalServerError)
			return
		}
		// The page's own headers (CSP and the rest) come from the web handler: let it set them on a body-less
		// request, then write the page.
		rw := &headerOnly{h: w.Header()}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/"
		r2.Method = http.MethodHead
		page.ServeHTTP(rw, r2)
		w.Header().Del("Content-Length")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if file == "index.html" {
			html = bytes.Replace(html, []byte("<head>"), []byte("<head>\n"+AgentPageMeta), 1)
		}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(html)
		}
	})
}

// headerOnly lets the web handler set its security headers without writing a body or status.
type headerOnly struct{ h http.Header }

func (h *headerOnly) Header() http.Header         { return h.h }
func (h *headerOnly) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerOnly) WriteHeader(int)             {}
