package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MinAsteriskMajor is the oldest Asterisk Patchbay supports.
const MinAsteriskMajor = 22

// RequiredModules are what Patchbay's calls need; a missing one breaks calls in a way that is hard to see.
var RequiredModules = []string{
	"res_ari.so", "res_stasis.so", "app_stasis.so", "res_http_websocket.so", "res_ari_channels.so",
	"res_ari_bridges.so", "res_ari_events.so", "chan_rtp.so", "bridge_simple.so", "bridge_softmix.so",
	"codec_ulaw.so", "codec_alaw.so", "app_echo.so",
}

type ariInfo struct {
	version string
	modules map[string]string // name → status
}

// ariGet does one GET on ARI with the configured credentials.
func (d *run) ariGet(ctx context.Context, path string, out any) (int, error) {
	u := strings.TrimSuffix(strings.TrimSuffix(d.cfg.ARI.URL, "/"), "/ari") + "/ari" + path
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth(d.cfg.ARI.User, d.cfg.ARI.Password.Reveal())
	resp, err := d.o.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, nil
	}
	return 200, json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(out)
}

func checkARI(ctx context.Context, d *run) Result {
	var info struct {
		System struct {
			Version string `json:"version"`
		} `json:"system"`
	}
	status, err := d.ariGet(ctx, "/asterisk/info", &info)
	switch {
	case err != nil:
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fail(fmt.Sprintf("Asterisk does not answer at ari.url %s: %v", d.cfg.ARI.URL, op.Err),
				"start Asterisk (`systemctl start asterisk`, or `scripts/asterisk.sh start` for `make run`), and check that http.conf binds the host and port of ari.url")
		}
		return fail(fmt.Sprintf("ARI at %s: %v", d.cfg.ARI.URL, err), "check ari.url and that Asterisk's HTTP server (http.conf) is enabled")
	case status == http.StatusUnauthorized:
		return fail(fmt.Sprintf("Asterisk refused ARI user %q (401): wrong password or no such user in ari.conf", d.cfg.ARI.User),
			"make ari.password match ari.conf: re-render it with `patchbay asterisk-config` and `asterisk -rx 'module reload res_ari.so'`")
	case status == http.StatusNotFound:
		return fail("ARI is not enabled on Asterisk's HTTP server (404 on /ari)", "load res_ari.so and set enabled = yes in ari.conf")
	case status != 200:
		return fail(fmt.Sprintf("ARI answered %d to GET /ari/asterisk/info", status), "see Asterisk's log")
	}
	d.ari = &ariInfo{version: info.System.Version}
	var mods []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	if st, err := d.ariGet(ctx, "/asterisk/modules", &mods); err == nil && st == 200 {
		d.ari.modules = map[string]string{}
		for _, m := range mods {
			d.ari.modules[m.Name] = m.Status
		}
	}
	return pass("user %s logged in at %s", d.cfg.ARI.User, d.cfg.ARI.URL)
}

var versionRe = regexp.MustCompile(`^(?:GIT-)?(\d+)\.`)

func checkVersion(_ context.Context, d *run) Result {
	if d.ari == nil {
		return skip("not checked", "ARI must answer first")
	}
	m := versionRe.FindStringSubmatch(d.ari.version)
	if m == nil {
		return skip("Asterisk reports version "+strconv.Quote(d.ari.version), "check by hand that it is 22 or later")
	}
	if major, _ := strconv.Atoi(m[1]); major < MinAsteriskMajor {
		return fail(fmt.Sprintf("Asterisk %s is older than %d", d.ari.version, MinAsteriskMajor),
			fmt.Sprintf("upgrade to Asterisk %d or later (externalMedia and ARI features Patchbay uses)", MinAsteriskMajor))
	}
	return pass("Asterisk %s", d.ari.version)
}

func checkModules(_ context.Context, d *run) Result {
	if d.ari == nil {
		return skip("not checked", "ARI must answer first")
	}
	if d.ari.modules == nil {
		return skip("ARI did not list modules", "check with `asterisk -rx 'module show'`")
	}
	var missing []string
	for _, m := range RequiredModules {
		if st, ok := d.ari.modules[m]; !ok || !strings.EqualFold(st, "Running") {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return fail("not running: "+strings.Join(missing, ", "),
			"load them in modules.conf (`patchbay asterisk-config` renders one that does) and restart Asterisk")
	}
	extra := ""
	if _, ok := d.ari.modules["res_prometheus.so"]; !ok {
		extra = "; res_prometheus not loaded (Asterisk's own metrics off)"
	}
	return pass("%d required modules running%s", len(RequiredModules), extra)
}

// dialplanText returns the loaded dialplan as the Asterisk CLI shows it, or else the dialplan file, and where it
// came from. The live dialplan is the truth (an admin may have edited extensions.conf by hand or not reloaded);
// ARI cannot list it, so the CLI is asked when this host may run it.
func (d *run) dialplanText(ctx context.Context) (text, from string, err error) {
	if len(d.o.AsteriskCLI) > 0 {
		out, err := d.cli(ctx, "dialplan show")
		if err == nil && strings.Contains(out, "[ Context") {
			// res_stasis adds a stasis-<app> context of its own while the app is connected: not the admin's.
			var keep []string
			for _, line := range strings.Split(out, "\n") {
				if !strings.HasSuffix(strings.TrimSpace(line), "[res_stasis]") {
					keep = append(keep, line)
				}
			}
			return strings.Join(keep, "\n"), "the running Asterisk (`dialplan show`)", nil
		}
	}
	path := d.o.ExtensionsConf
	if path == "" {
		path = "/etc/asterisk/extensions.conf"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("cannot run the Asterisk CLI here and cannot read %s: %w", path, err)
	}
	return string(b), path, nil
}

func (d *run) cli(ctx context.Context, command string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	args := append(slices.Clone(d.o.AsteriskCLI[1:]), "-rx", command)
	out, err := exec.CommandContext(ctx, d.o.AsteriskCLI[0], args...).CombinedOutput()
	return string(out), err
}

func checkDialplan(ctx context.Context, d *run) Result {
	text, from, err := d.dialplanText(ctx)
	if err != nil {
		return skip("dialplan not checked: "+err.Error(),
			"run doctor on the Asterisk host as a user allowed to run `asterisk -rx`, or pass --extensions FILE")
	}
	app := regexp.QuoteMeta(d.cfg.ARI.App)
	entries := len(regexp.MustCompile(`(?i)\bStasis\(\s*`+app+`\s*[,)]`).FindAllString(text, -1))
	fallbacks := strings.Count(text, "STASISSTATUS")
	failed := regexp.MustCompile(`(?m)(^\s*exten\s*=>\s*FAILED\s*,|'FAILED'\s*=>)`).MatchString(text)
	switch {
	case entries == 0:
		return fail(fmt.Sprintf("no Stasis(%s) in the dialplan of %s: phones cannot reach browsers or rooms", d.cfg.ARI.App, from),
			fmt.Sprintf("install Patchbay's dialplan (`patchbay asterisk-config` renders extensions.conf with Stasis(%s,…) entries) and `asterisk -rx 'dialplan reload'`; ari.app must match the name in the dialplan", d.cfg.ARI.App))
	case fallbacks < entries || !failed:
		return fail(fmt.Sprintf("%d Stasis(%s) entries but no fallback for when Patchbay is down (STASISSTATUS=FAILED) in %s: callers hear silence", entries, d.cfg.ARI.App, from),
			"after each Stasis() add `same => n,Goto(stasis-result,${STASISSTATUS},1)` and a stasis-result context whose FAILED extension plays congestion and hangs up (see Patchbay's rendered extensions.conf)")
	}
	return pass("%d Stasis(%s) entries with a fallback, in %s", entries, d.cfg.ARI.App, from)
}

var rtpSettingRe = regexp.MustCompile(`(?im)^\s*(?:Port start|rtpstart)\s*[:=]\s*(\d+)[\s\S]*?^\s*(?:Port end|rtpend)\s*[:=]\s*(\d+)`)

// checkRTP: Asterisk's RTP range must not overlap Patchbay's relay ports on a shared host, and the relay host
// (Asterisk's external_host) must be an address of this host that Asterisk can send to.
func checkRTP(ctx context.Context, d *run) Result {
	c := d.cfg
	rh := net.ParseIP(c.Media.RelayHost)
	if rh == nil || rh.IsUnspecified() {
		return fail(fmt.Sprintf("media.relay_host %q is not an address Asterisk can send RTP to", c.Media.RelayHost),
			"set media.relay_host to this host's address on the network toward Asterisk (127.0.0.1 when Asterisk runs here)")
	}
	if err := tryBind("udp", net.JoinHostPort(c.Media.RelayHost, "0")); err != nil {
		return fail(fmt.Sprintf("media.relay_host %s is not an address of this host (%v): Asterisk's externalMedia RTP would go elsewhere (one-way audio)", c.Media.RelayHost, err),
			"set media.relay_host to one of this host's addresses")
	}
	u, _ := url.Parse(c.ARI.URL)
	astLocal := false
	if u != nil {
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			astLocal = true
		}
	}
	if astLocal && !rh.IsLoopback() && !isLocalAddr(d, rh) {
		return fail(fmt.Sprintf("Asterisk is local but media.relay_host %s is not on this host", rh), "use 127.0.0.1")
	}
	start, end, from := c.Asterisk.RTPStart, c.Asterisk.RTPEnd, "asterisk.rtp_start/rtp_end"
	if len(d.o.AsteriskCLI) > 0 {
		if out, err := d.cli(ctx, "rtp show settings"); err == nil {
			if m := rtpSettingRe.FindStringSubmatch(out); m != nil {
				s, _ := strconv.Atoi(m[1])
				e, _ := strconv.Atoi(m[2])
				if s != start || e != end {
					return fail(fmt.Sprintf("the running Asterisk uses RTP ports %d-%d, Patchbay's config says %d-%d", s, e, start, end),
						"re-render Asterisk's configs with `patchbay asterisk-config` (rtp.conf) and restart Asterisk, or fix asterisk.rtp_start/rtp_end")
				}
				from = "the running Asterisk"
			}
		}
	}
	if astLocal && c.Media.RelayPortStart <= end && start <= c.Media.RelayPortEnd {
		return fail(fmt.Sprintf("Asterisk's RTP range %d-%d overlaps Patchbay's relay ports %d-%d on this host: they take each other's ports", start, end, c.Media.RelayPortStart, c.Media.RelayPortEnd),
			"move media.relay_port_start/end outside asterisk.rtp_start..rtp_end")
	}
	return pass("external_host %s, relay ports %d-%d clear of Asterisk's RTP %d-%d (%s)", c.Media.RelayHost,
		c.Media.RelayPortStart, c.Media.RelayPortEnd, start, end, from)
}

func isLocalAddr(d *run, ip net.IP) bool {
	ips, _ := hostAddrs()
	for _, a := range ips {
		if a.Equal(ip) {
			return true
		}
	}
	return false
}
