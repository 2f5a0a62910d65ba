// Package doctor checks a Patchbay installation the way an admin would, one check at a time, and says for each
// what is wrong and what to do: the configuration, certificates, ports, Asterisk (ARI, version, modules, the
// dialplan's Stasis entries and their fallback, RTP range), NAT addresses, Redis, TURN, and optionally a synthetic
// call. `patchbay doctor` wires it; it changes nothing and originates nothing unless asked to place a call.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"time"

	"github.com/patchbay/patchbay/internal/config"
)

// Result is one check's outcome.
type Result struct {
	Name string `json:"name"`
	// Status is "pass", "fail" or "skip" (could not be checked here; not a failure).
	Status string `json:"status"`
	// Detail says what was found; Fix what to do when it failed (or why it was skipped).
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Statuses.
const (
	Pass = "pass"
	Fail = "fail"
	Skip = "skip"
)

// CallReport is what a synthetic call measured (Options.Call fills it).
type CallReport struct {
	Setup time.Duration // offer → first echoed audio
	RTT   time.Duration // median echo round trip
	Loss  float64       // 0..1
	Heard bool          // the echo came back recognisably
}

// Options say what to check.
type Options struct {
	// Config is the loaded configuration; ConfigErr the error loading it returned (then most checks skip).
	Config    *config.Config
	ConfigErr error
	// AsteriskCLI is the command prefix that runs an Asterisk CLI command (its argument follows -rx), e.g.
	// ["asterisk"] on the Asterisk host; nil: look for `asterisk` in PATH. ExtensionsConf is a dialplan file to
	// read when the CLI cannot be used (default /etc/asterisk/extensions.conf if readable).
	AsteriskCLI    []string
	ExtensionsConf string
	// Addrs lists the host's addresses (default: every interface's); tests give their own.
	Addrs func() ([]net.IP, error)
	// Now is the clock for certificate expiry; nil means time.Now.
	Now func() time.Time
	// Call, if set, places a synthetic call to the echo extension (--call).
	Call func(ctx context.Context) (CallReport, error)
	// HTTPClient for ARI; nil uses one with a 5 s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// check is one named check.
type check struct {
	name string
	run  func(ctx context.Context, d *run) Result
}

// run carries what checks share.
type run struct {
	o   Options
	cfg *config.Config
	ari *ariInfo // nil until the ARI check reached Asterisk
}

// Run runs every check in order and returns their results.
func Run(ctx context.Context, o Options) []Result {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Addrs == nil {
		o.Addrs = hostAddrs
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.AsteriskCLI == nil {
		if p, err := exec.LookPath("asterisk"); err == nil {
			o.AsteriskCLI = []string{p}
		}
	}
	d := &run{o: o, cfg: o.Config}
	var out []Result
	for _, c := range checks(o) {
		var r Result
		if d.cfg == nil && c.name != "config" {
			r = Result{Status: Skip, Detail: "not checked", Fix: "fix the configuration first"}
		} else {
			r = c.run(ctx, d)
		}
		r.Name = c.name
		out = append(out, r)
	}
	return out
}

func checks(o Options) []check {
	cs := []check{
		{"config", checkConfig},
		{"certificates", checkCerts},
		{"ports", checkPorts},
		{"asterisk ari", checkARI},
		{"asterisk version", checkVersion},
		{"asterisk modules", checkModules},
		{"dialplan stasis entry", checkDialplan},
		{"rtp range and external_host", checkRTP},
		{"public addresses", checkPublicIPs},
		{"ice addresses", checkICEIPs},
		{"redis", checkRedis},
		{"cluster", checkCluster},
		{"turn", checkTURN},
	}
	if o.Call != nil {
		cs = append(cs, check{"synthetic call", checkCall})
	}
	return cs
}

// Failed reports whether any check failed.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// Print writes one line per check: ✓, ✗ or – with what was found and, under a failure, what to do. With asJSON
// it writes {"ok": bool, "checks": [...]} instead.
func Print(w io.Writer, rs []Result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			OK     bool     `json:"ok"`
			Checks []Result `json:"checks"`
		}{!Failed(rs), rs})
	}
	for _, r := range rs {
		mark := map[string]string{Pass: "✓", Fail: "✗", Skip: "–"}[r.Status]
		if _, err := fmt.Fprintf(w, "%s %-28s %s\n", mark, r.Name, r.Detail); err != nil {
			return err
		}
		if r.Fix != "" && r.Status != Pass {
			if _, err := fmt.Fprintf(w, "  %-28s → %s\n", "", r.Fix); err != nil {
				return err
			}
		}
	}
	return nil
}

func pass(format string, args ...any) Result {
	return Result{Status: Pass, Detail: fmt.Sprintf(format, args...)}
}

func fail(detail, fix string) Result { return Result{Status: Fail, Detail: detail, Fix: fix} }

func skip(detail, why string) Result { return Result{Status: Skip, Detail: detail, Fix: why} }

func checkConfig(_ context.Context, d *run) Result {
	if d.o.ConfigErr != nil {
		return fail(d.o.ConfigErr.Error(), "fix the key named above in the config file (or its PATCHBAY_* variable)")
	}
	if d.cfg == nil {
		return fail("no configuration", "pass --config FILE or set PATCHBAY_CONFIG")
	}
	return pass("valid")
}
