package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/patchbay/patchbay/auth"
	"github.com/patchbay/patchbay/dialplan"
)

// runRoute tells an admin what a call to a number would get under the configuration: the router is built from
// the same rules (config.Rules) that decide real calls.
func runRoute(_ context.Context, args []string) error {
	fs := pflag.NewFlagSet("route", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: patchbay route NUMBER [--json] [--grants ext,pstn | --token TOKEN [--caller-id +E164]]")
		fs.PrintDefaults()
	}
	load := configFlags(fs)
	asJSON := fs.Bool("json", false, "print a JSON object (decision, e164, class, country, trunk, trunks; code and message when refused)")
	grants := fs.StringSlice("grants", nil, "also check these grants, as a token's dial claim: ext, user, room, pstn, *, or exact numbers")
	token := fs.String("token", "", "also check this browser token's grants and caller IDs (verified with auth.token_secret)")
	callerID := fs.String("caller-id", "", "with --token: the caller_id the browser would ask for")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("give exactly one NUMBER (quote it if it has spaces)")
	}
	if *token != "" && fs.Changed("grants") {
		return errors.New("give --grants or --token, not both")
	}
	if *callerID != "" && *token == "" {
		return errors.New("--caller-id needs --token (the caller IDs a token allows)")
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	router, err := dialplan.NewRouter(cfg.Rules())
	if err != nil {
		return fmt.Errorf("dialplan rules (dialplan.pstn): %w", err)
	}
	var g []string
	var claims *auth.Claims
	switch {
	case *token != "":
		signer, err := auth.NewSigner([]byte(cfg.Auth.TokenSecret.Reveal()), cfg.Auth.TokenIssuer)
		if err != nil {
			return err
		}
		if claims, err = signer.Verify(*token); err != nil {
			return fmt.Errorf("--token: %w", err)
		}
		g = append([]string{}, claims.Dial...)
	case fs.Changed("grants"):
		g = append([]string{}, *grants...)
	}
	v := router.Explain(fs.Arg(0), g)
	if claims != nil {
		v.CheckCallerID(claims.CallerIDs, *callerID)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	fmt.Println(v.Words())
	return nil
}
