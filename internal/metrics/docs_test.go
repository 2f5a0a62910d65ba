package metrics

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/patchbay/patchbay/internal/cdr"
	"github.com/patchbay/patchbay/wire"
)

// TestEveryFamilyDocumented keeps docs/observability.md in step with the registry: every patchbay_ family New
// registers is in its table with the type and the label names it really has.
func TestEveryFamilyDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		typ    string
		labels []string
	}
	doc := map[string]row{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `patchbay_") {
			continue
		}
		cols := strings.Split(line, "|")
		names := strings.Split(cols[1], ",")
		types := strings.Split(cols[2], ",")
		var labels []string
		for _, l := range strings.Split(cols[3], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		for i, n := range names {
			typ := types[0]
			if len(types) == len(names) {
				typ = types[i]
			}
			doc[strings.Trim(strings.TrimSpace(n), "`")] = row{strings.TrimSpace(typ), labels}
		}
	}

	// Give every family with labels a series, so that Gather lists it.
	m := New(Options{})
	m.CallRefused(cdr.DirAPI, wire.CodeUnavailable)
	m.CallEnded(cdr.Record{Direction: cdr.DirAPI, Browser: &cdr.LegQuality{Loss: 0.01, JitterMS: 3, RTTMS: 20}})
	m.Quality(cdr.DirAPI, wire.QualityNoAudio, cdr.BothDirections)
	m.ObserveARI("GET", "/asterisk/info", 0, time.Millisecond)
	m.Sweep("channel", 1)
	m.RedisError("get")
	m.LimitTrip("token", wire.CodeTooManyCalls)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), Namespace+"_") {
			continue
		}
		n++
		d, ok := doc[f.GetName()]
		if !ok {
			t.Errorf("docs/observability.md does not list %s", f.GetName())
			continue
		}
		if typ := strings.ToLower(f.GetType().String()); d.typ != typ {
			t.Errorf("%s: documented as %s, registered as %s", f.GetName(), d.typ, typ)
		}
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		slices.Sort(labels)
		want := slices.Sorted(slices.Values(d.labels))
		if !slices.Equal(labels, want) {
			t.Errorf("%s: documented labels %v, registered %v", f.GetName(), want, labels)
		}
	}
	if n < 20 {
		t.Errorf("only %d patchbay_ families gathered: a family lost its series", n)
	}
}
