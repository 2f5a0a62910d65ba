package bench

import (
	"math"
	"strings"
	"testing"
)

func TestCompareMetrics(t *testing.T) {
	mk := func(mode string, n int, ast, pb float64) *Result {
		return &Result{Mode: mode, Calls: n, CPUPerCallMin: map[string]float64{"asterisk": ast, "patchbay": pb}}
	}
	tests := []struct {
		name string
		rs   []*Result
		want []string
	}{
		{"within goal", []*Result{
			mk("patchbay", 100, 0.15, 0.15), mk(metricsMode, 100, 0.15, 0.152),
			mk(metricsMode, 100, 0.15, 0.154), mk("patchbay", 100, 0.15, 0.154),
		}, []string{"100", "2 / 2", "1.003×", "  Patchbay alone", "1.007×", "met"}},
		{"over goal", []*Result{mk("patchbay", 50, 0.1, 0.1), mk(metricsMode, 50, 0.1, 0.2)},
			[]string{"1.500× ± 0.000", "MISSED by +47.0 %"}},
		{"pooled over N", []*Result{
			mk("patchbay", 50, 0.2, 0.2), mk(metricsMode, 50, 0.2, 0.2),
			mk("patchbay", 150, 0.1, 0.1), mk(metricsMode, 150, 0.1, 0.1),
		}, []string{"all N, relative", "2 / 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := CompareMetrics(&b, append(tt.rs, mk("native", 100, 0.3, 0))); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
	var b strings.Builder
	if err := CompareMetrics(&b, []*Result{mk("patchbay", 50, 0.1, 0.1), mk("native", 50, 0.3, 0)}); err != nil || b.Len() != 0 {
		t.Errorf("no metrics runs: wrote %q (%v)", b.String(), err)
	}
}

func TestMeanRatio(t *testing.T) {
	f := procCPU("patchbay")
	on := []*Result{{CPUPerCallMin: map[string]float64{"patchbay": 1.1}}, {CPUPerCallMin: map[string]float64{"patchbay": 0.9}}}
	off := []*Result{{CPUPerCallMin: map[string]float64{"patchbay": 1}}, {CPUPerCallMin: map[string]float64{"patchbay": 1}}}
	r, se, ok := meanRatio(on, off, f)
	// mean 1 ± 0.1 (sample sd 0.1414 / √2) against an exact 1.
	if !ok || r != 1 || math.Abs(se-0.1) > 1e-9 {
		t.Errorf("meanRatio = %v ± %v (%v), want 1 ± 0.1", r, se, ok)
	}
	if _, _, ok := meanRatio(nil, off, f); ok {
		t.Error("no values on one side: want not ok")
	}
}

func TestCompareMetricsSideBySide(t *testing.T) {
	half := func(mode, run string, pb float64) *Result {
		return &Result{Mode: mode, ABRun: run, Calls: 50, CPUPerCallMin: map[string]float64{"asterisk": 0.3, "patchbay": pb}}
	}
	rs := []*Result{
		half("patchbay-ab-off", "100-1", 0.20), half("patchbay-ab-on", "100-1", 0.202),
		half("patchbay-ab-on", "100-2", 0.25), half("patchbay-ab-off", "100-2", 0.25),
		half("patchbay-ab-on", "100-3", 0.3), // its other half is missing: left out
		{Mode: "native", Calls: 100, CPUPerCallMin: map[string]float64{"asterisk": 0.3}},
	}
	var b strings.Builder
	if err := CompareMetrics(&b, rs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, w := range []string{"side by side", "100  2 ", "1.010 ; 1.000", "1.005× ± 0.005", "met"} {
		if !strings.Contains(out, w) {
			t.Errorf("lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "0.300") {
		t.Errorf("an unpaired half was counted:\n%s", out)
	}
	// Compare leaves the halves out: they are not runs of their own N.
	b.Reset()
	if err := Compare(&b, rs); err != nil || strings.Contains(b.String(), "patchbay-ab") {
		t.Errorf("Compare shows side-by-side halves (%v):\n%s", err, b.String())
	}
}
