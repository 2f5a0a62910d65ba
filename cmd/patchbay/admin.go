package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	asteriskconfigs "github.com/patchbay/patchbay/asterisk-configs"
	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/certs"
	"github.com/patchbay/patchbay/turnconf"
)

func runAsteriskConfig(_ context.Context, args []string) error {
	fs := pflag.NewFlagSet("asterisk-config", pflag.ContinueOnError)
	load := configFlags(fs)
	out := fs.String("out", "", "directory to write the Asterisk config files into (required)")
	certDir := fs.String("cert-dir", "", "where Asterisk reads ca.crt/server.crt/server.key (default: certs.dir)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out DIR is required (e.g. --out /etc/asterisk)")
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	dir := *certDir
	if dir == "" {
		dir = cfg.Certs.Dir
	}
	p := cfg.AsteriskParams(dir)
	files, err := asteriskconfigs.Render(p, *out)
	if err != nil {
		return fmt.Errorf("render Asterisk configs into %s: %w", *out, err)
	}
	fmt.Printf("wrote %d files to %s\n", len(files), *out)
	return nil
}

func runCerts(_ context.Context, args []string) error {
	if len(args) == 0 || args[0] != "init" {
		return errors.New("usage: patchbay certs init [--force] [--dir DIR] [--host NAME ...]")
	}
	fs := pflag.NewFlagSet("certs init", pflag.ContinueOnError)
	load := configFlags(fs)
	force := fs.Bool("force", false, "replace existing keys and certificates")
	dir := fs.String("dir", "", "certificate directory (default: certs.dir)")
	hosts := fs.StringSlice("host", nil, "host names and IPs for the certificate (default: certs.hosts)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	o := certs.Options{Dir: cfg.Certs.Dir, Hosts: cfg.Certs.Hosts, Force: *force}
	if *dir != "" {
		o.Dir = *dir
	}
	if len(*hosts) > 0 {
		o.Hosts = *hosts
	}
	p, err := certs.Ensure(o)
	if err != nil {
		return err
	}
	fmt.Printf("CA:          %s\ncertificate: %s (for %s)\nkey:         %s\n", p.CACert, p.Cert, strings.Join(o.Hosts, ", "), p.Key)
	return nil
}

func runToken(_ context.Context, args []string) error {
	fs := pflag.NewFlagSet("token", pflag.ContinueOnError)
	load := configFlags(fs)
	user := fs.String("user", "", "user name (token subject), e.g. alice (required)")
	name := fs.String("name", "", "display name")
	dial := fs.StringSlice("dial", []string{"ext", "user"}, "what the holder may dial: ext, user, room, pstn, or exact numbers")
	room := fs.String("room", "", "room the token is scoped to")
	role := fs.String("role", "", "role in the room: customer or agent")
	callerIDs := fs.StringSlice("caller-id", nil, "caller IDs the holder may present")
	ttl := fs.Duration("ttl", 0, "lifetime (default: auth.token_ttl)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("--user is required")
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	signer, err := auth.NewSigner([]byte(cfg.Auth.TokenSecret.Reveal()), cfg.Auth.TokenIssuer)
	if err != nil {
		return err
	}
	if *ttl == 0 {
		*ttl = cfg.Auth.TokenTTL
	}
	c := auth.Claims{Name: *name, Dial: *dial, Room: *room, Role: *role, CallerIDs: *callerIDs}
	c.Subject = *user
	tok, err := signer.Mint(c, *ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

// runConfig writes a starter config with fresh random secrets, for `make run` and new installs. It never
// overwrites an existing file: secrets in use must not change behind the admin's back.
func runConfig(_ context.Context, args []string) error {
	if len(args) == 0 || args[0] != "init" {
		return errors.New("usage: patchbay config init --out FILE [--certs-dir DIR]")
	}
	fs := pflag.NewFlagSet("config init", pflag.ContinueOnError)
	out := fs.String("out", "", "file to write (required; not overwritten)")
	certDir := fs.String("certs-dir", "", "certificate directory (default: beside the file, certs/)")
	publicHost := fs.String("public-host", "localhost", "name browsers use to reach Patchbay")
	redisAddr := fs.String("redis", "", "Redis host:port (empty: in-process store)")
	turnHost := fs.String("turn-host", "", "name browsers use to reach coturn (default: --public-host)")
	turnTLSPort := fs.Int("turn-tls-port", 443, "TURN over TLS port (443 gets through most firewalls); 0: no TLS")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out FILE is required")
	}
	if _, err := os.Stat(*out); err == nil {
		fmt.Printf("%s exists; kept as it is\n", *out)
		return nil
	}
	if *certDir == "" {
		*certDir = filepath.Join(filepath.Dir(*out), "certs")
	}
	abs, err := filepath.Abs(*certDir)
	if err != nil {
		return err
	}
	doc := map[string]any{
		"public_host": *publicHost,
		"ari":         map[string]any{"password": randomHex(16)},
		"auth": map[string]any{
			"token_secret": randomHex(32),
			"api_keys":     map[string]string{"admin": randomHex(20)},
		},
		"certs": map[string]any{"dir": abs},
		"asterisk": map[string]any{
			"phones": []map[string]any{
				{"name": "101", "password": randomHex(12), "transport": "udp"},
				{"name": "102", "password": randomHex(12), "transport": "tls", "srtp": true},
			},
		},
		"media": map[string]any{"include_loopback": *publicHost == "localhost"},
	}
	if *redisAddr != "" {
		doc["redis"] = map[string]any{"addr": *redisAddr}
	}
	if *turnHost == "" {
		*turnHost = *publicHost
	}
	turnURLs := []string{"turn:" + *turnHost + ":3478?transport=udp", "turn:" + *turnHost + ":3478?transport=tcp"}
	if *turnTLSPort > 0 {
		turnURLs = append(turnURLs, fmt.Sprintf("turns:%s:%d?transport=tcp", *turnHost, *turnTLSPort))
	}
	doc["turn"] = map[string]any{"urls": turnURLs, "secret": randomHex(32)}
	b, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	header := "# Patchbay configuration written by `patchbay config init` on " + time.Now().UTC().Format(time.RFC3339) +
		".\n# It holds secrets: keep it 0600 and out of version control. Every key is documented in docs/configuration.md.\n"
	if err := os.MkdirAll(filepath.Dir(*out), 0o750); err != nil {
		return err
	}
	if err := os.WriteFile(*out, append([]byte(header), b...), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Printf("wrote %s with fresh secrets\n", *out)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // the OS has no entropy source: nothing safe can continue
	}
	return hex.EncodeToString(b)
}

func runTURNConfig(_ context.Context, args []string) error {
	fs := pflag.NewFlagSet("turn-config", pflag.ContinueOnError)
	load := configFlags(fs)
	out := fs.String("out", "", "file to write coturn's turnserver.conf to (required; written 0600: it holds turn.secret)")
	certDir := fs.String("cert-dir", "", "where coturn reads server.crt/server.key for TURN over TLS (default: certs.dir)")
	pidFile := fs.String("pid-file", "", "where coturn writes its pid (default: none)")
	logFile := fs.String("log-file", "", "coturn's log (default: stdout)")
	loopback := fs.Bool("dev-loopback", false, "allow relaying to 127.0.0.1: only for a single-host development run, never in production")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out FILE is required (e.g. --out /etc/turnserver.conf)")
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if len(cfg.TURN.URLs) == 0 {
		return errors.New("turn.urls is empty: set turn.urls and turn.secret before rendering coturn's config")
	}
	p := cfg.TURNParams(*certDir)
	p.PidFile, p.LogFile = *pidFile, *logFile
	if *loopback {
		p.AllowLoopback = true
		p.AllowedPeerIPs = append(p.AllowedPeerIPs, "127.0.0.1")
	}
	if err := turnconf.Write(p, *out); err != nil {
		return fmt.Errorf("render coturn config: %w", err)
	}
	fmt.Printf("wrote %s\n", *out)
	return nil
}
