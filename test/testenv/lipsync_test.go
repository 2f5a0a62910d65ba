package testenv

import (
	"slices"
	"testing"
)

func TestPairOffsets(t *testing.T) {
	for _, tc := range []struct {
		name           string
		flashes, beeps []float64
		want           []float64
	}{
		{"sound late", []float64{1000, 2000, 3000}, []float64{1100, 2090, 3120}, []float64{100, 90, 120}},
		{"sound early", []float64{1000, 2000}, []float64{950, 1990}, []float64{-50, -10}},
		{"a missing beep pairs with nothing", []float64{1000, 2000, 3000}, []float64{1040, 3040}, []float64{40, 40}},
		{"an extra beep is ignored", []float64{1000}, []float64{700, 1030, 1600}, []float64{30}},
		{"nothing", nil, []float64{1000}, nil},
	} {
		if got := PairOffsets(tc.flashes, tc.beeps, 500); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSummariseOffsets(t *testing.T) {
	var offs []float64
	for i := 1; i <= 20; i++ {
		offs = append(offs, float64(i))
	}
	offs[19] = -100 // the largest |a−v|, sound early
	s := SummariseOffsets(offs)
	want := OffsetStats{N: 20, Mean: (190.0 - 100) / 20, AbsP50: 10, AbsP95: 19, Max: 100}
	if s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
	if z := SummariseOffsets(nil); z != (OffsetStats{}) {
		t.Errorf("no offsets: %+v", z)
	}
}
