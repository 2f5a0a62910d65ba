package main

import (
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
)

// captureStdout runs fn with os.Stdout sent to a pipe and returns what it printed.
func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	fn()
	os.Stdout = old
	w.Close()
	return <-done
}

func TestRouteCommand(t *testing.T) {
	env := baseEnv(t)
	var code int
	var stderr string
	out := captureStdout(t, func() { code, stderr = run(t, env, "route", "--json", "+44-0-906-555-1234") })
	if code != 0 {
		t.Fatalf("code %d: %s", code, stderr)
	}
	var v struct{ Decision, E164, Class, Country, Code, Message string }
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if v.Decision != "refuse" || v.E164 != "+449065551234" || v.Class != "PREMIUM_RATE" || v.Country != "GB" ||
		v.Code != "forbidden_destination" || v.Message != "premium-rate numbers are not allowed" {
		t.Errorf("verdict %+v", v)
	}
	out = captureStdout(t, func() { code, _ = run(t, env, "route", "--grants", "ext", "+14155550100") })
	if code != 0 || !strings.HasPrefix(out, "refuse:") || !strings.Contains(out, "does not allow calling pstn") {
		t.Errorf("grants: code %d, %q", code, out)
	}
	if code, stderr = run(t, env, "route"); code != 1 || !strings.Contains(stderr, "exactly one NUMBER") {
		t.Errorf("no number: code %d, %q", code, stderr)
	}
}
