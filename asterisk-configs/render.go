package asteriskconfigs

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
)

//go:embed *.conf.tmpl
var templateFS embed.FS

// FileMode is the mode of rendered files: ari.conf and pjsip.conf hold secrets, so no file is
// world-readable; the asterisk group reads them.
const FileMode fs.FileMode = 0o640

const tmplSuffix = ".tmpl"

var funcs = template.FuncMap{
	"join": strings.Join,
	// trunkMatch lists identify match entries, defaulting to the trunk host's IP.
	"trunkMatch": func(t Trunk) []string {
		if len(t.Match) > 0 {
			return t.Match
		}
		host, _, err := net.SplitHostPort(t.Host)
		if err != nil {
			return nil
		}
		return []string{host}
	},
}

// parseTemplates parses the embedded templates on each call (cheap, and it keeps package init
// free of panics); a broken template is reported as an error and caught by the unit tests.
func parseTemplates() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "*.conf.tmpl")
	if err != nil {
		return nil, fmt.Errorf("list embedded Asterisk templates: %w", err)
	}
	out := make(map[string]*template.Template, len(names))
	for _, n := range names {
		b, err := templateFS.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("read embedded template %s: %w", n, err)
		}
		t, err := template.New(n).Funcs(funcs).Option("missingkey=error").Parse(string(b))
		if err != nil {
			return nil, fmt.Errorf("parse embedded template %s: %w", n, err)
		}
		out[strings.TrimSuffix(n, tmplSuffix)] = t
	}
	return out, nil
}

// Files lists the names of the files Render writes, sorted.
func Files() []string {
	names, _ := fs.Glob(templateFS, "*.conf.tmpl")
	for i := range names {
		names[i] = strings.TrimSuffix(names[i], tmplSuffix)
	}
	sort.Strings(names)
	return names
}

// RenderFS validates p and renders every template, keyed by file name (e.g. "pjsip.conf").
func RenderFS(p Params) (map[string][]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("render Asterisk configs: fix the parameters: %w", err)
	}
	tmpls, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(tmpls))
	for name, t := range tmpls {
		var buf bytes.Buffer
		if err := t.Execute(&buf, p); err != nil {
			return nil, fmt.Errorf("render %s: %w", name, err)
		}
		out[name] = buf.Bytes()
	}
	return out, nil
}

// Render writes every file into outDir (created 0750 if missing) with mode FileMode and returns
// the paths written, sorted. Each file is written to a temporary name and renamed, so a running
// Asterisk never reads half a file on reload. Unless p.MOHDir names music of its own, Render also
// writes the hold tune into outDir/moh (holdmusic.go); it is not among the paths returned.
func Render(p Params, outDir string) ([]string, error) {
	files, err := RenderFS(p)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o750); err != nil {
		return nil, fmt.Errorf("create Asterisk config dir %s: %w", outDir, err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	paths := make([]string, 0, len(names))
	for _, n := range names {
		dst := filepath.Join(outDir, n)
		if err := writeFileAtomic(dst, files[n]); err != nil {
			return paths, err
		}
		paths = append(paths, dst)
	}
	if p.MOHDir == "" {
		if err := writeHoldTune(outDir); err != nil {
			return paths, err
		}
	}
	return paths, nil
}

func writeFileAtomic(dst string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return fmt.Errorf("write %s: create temp file (is the directory writable?): %w", dst, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(FileMode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: chmod: %w", dst, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("write %s: rename into place: %w", dst, err)
	}
	return nil
}
