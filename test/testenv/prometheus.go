package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Prometheus is a real Prometheus server (Debian package prometheus) on a loopback port, scraping the given
// targets every second, its data in a temporary directory; stopped when the test ends.
type Prometheus struct {
	URL string // http://127.0.0.1:PORT
	cmd *exec.Cmd
	log string
}

// ScrapeTarget is one job: host:port and the metrics path.
type ScrapeTarget struct {
	Job, Addr, Path string
}

// StartPrometheus starts Prometheus scraping targets; the test fails if it is not installed
// (scripts/provision.sh installs it).
func StartPrometheus(t testing.TB, targets ...ScrapeTarget) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not found in PATH: run scripts/provision.sh (apt-get install -y prometheus) (%v)", err)
	}
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nscrape_configs:\n")
	for _, tg := range targets {
		fmt.Fprintf(&cfg, "  - job_name: %q\n    metrics_path: %q\n    static_configs:\n      - targets: [%q]\n", tg.Job, tg.Path, tg.Addr)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("free port for Prometheus: %v", err)
	}
	p := &Prometheus{URL: fmt.Sprintf("http://127.0.0.1:%d", port), log: filepath.Join(dir, "prometheus.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("prometheus exited at start:\n%s", astTail(string(b), 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready within 20 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Sample is one series of an instant query's result.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query runs an instant PromQL query and returns its samples (a vector or a scalar as one sample).
func (p *Prometheus) Query(ctx context.Context, expr string) ([]Sample, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", p.URL+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Status, Error string
		Data          struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		}
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("query %q: %w: %s", expr, err, b)
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, out.Error)
	}
	value := func(v []any) float64 {
		if len(v) != 2 {
			return 0
		}
		s, _ := v[1].(string)
		f, _ := strconv.ParseFloat(s, 64)
		return f
	}
	switch out.Data.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string
			Value  []any
		}
		if err := json.Unmarshal(out.Data.Result, &vec); err != nil {
			return nil, err
		}
		res := make([]Sample, 0, len(vec))
		for _, s := range vec {
			res = append(res, Sample{Metric: s.Metric, Value: value(s.Value)})
		}
		return res, nil
	case "scalar":
		var v []any
		if err := json.Unmarshal(out.Data.Result, &v); err != nil {
			return nil, err
		}
		return []Sample{{Value: value(v)}}, nil
	}
	return nil, fmt.Errorf("query %q: result type %s", expr, out.Data.ResultType)
}

// TargetsUp waits until every scrape target is up.
func (p *Prometheus) TargetsUp(ctx context.Context) error {
	for {
		s, err := p.Query(ctx, "min(up)")
		if err == nil && len(s) == 1 && s[0].Value == 1 {
			return nil
		}
		select {
		case <-ctx.Done():
			all, _ := p.Query(context.Background(), "up")
			return fmt.Errorf("scrape targets not all up: %v (last error %v)", all, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
