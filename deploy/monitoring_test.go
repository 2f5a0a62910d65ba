package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/patchbay/patchbay/internal/config"
)

// TestMonitoringProfile: prometheus and grafana run only with --profile monitoring, mount files that exist, and
// scrape where Patchbay's and Asterisk's defaults serve metrics.
func TestMonitoringProfile(t *testing.T) {
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Profiles []string `yaml:"profiles"`
			Volumes  []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"prometheus", "grafana"} {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("service %s missing", name)
		}
		if len(s.Profiles) != 1 || s.Profiles[0] != "monitoring" {
			t.Errorf("service %s: profiles %v, want [monitoring]", name, s.Profiles)
		}
		for _, v := range s.Volumes {
			if src := strings.SplitN(v, ":", 2)[0]; strings.HasPrefix(src, "./") {
				if _, err := os.Stat("../" + src); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			}
		}
	}
	pb, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	def := config.Defaults()
	for _, target := range []string{def.Metrics.Listen, "127.0.0.1:" + strconv.Itoa(def.Asterisk.HTTPPort)} {
		if !strings.Contains(string(pb), `"`+target+`"`) {
			t.Errorf("prometheus.yml does not scrape %s", target)
		}
	}
}

// TestComposeConfigValid runs docker-compose's own validation (no Docker engine needed).
func TestComposeConfigValid(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose not installed: run scripts/provision.sh (%v)", err)
	}
	for _, args := range [][]string{{"config", "-q"}, {"--profile", "monitoring", "config", "-q"}} {
		cmd := exec.Command(bin, append([]string{"-f", "../docker-compose.yml"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("docker-compose %v: %v\n%s", args, err, out)
		}
	}
}

// TestDashboardParses: the Grafana dashboard is JSON, every panel with a query has an expression, and refIds are
// unique per panel. TestMetrics (integration) runs each expression against a real Prometheus.
func TestDashboardParses(t *testing.T) {
	exprs, err := dashboardExprs("grafana/patchbay.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 20 {
		t.Errorf("only %d expressions", len(exprs))
	}
	for _, e := range exprs {
		if strings.Contains(e, "$") && !strings.Contains(e, "$__rate_interval") {
			t.Errorf("expression uses a variable other than $__rate_interval: %s", e)
		}
	}
}

// dashboardExprs lists every PromQL expression of a Grafana dashboard file.
func dashboardExprs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			if t.Expr != "" {
				out = append(out, t.Expr)
			}
		}
	}
	return out, nil
}
