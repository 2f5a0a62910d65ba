package bench

import (
	"math"
	"slices"
	"time"
)

// Dist is a distribution's size and the percentiles the table shows.
type Dist struct {
	N             int
	P50, P99, Max time.Duration
}

// Percentile returns the q-quantile (0 < q ≤ 1) of sorted by nearest rank; zero for an empty slice.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q * float64(len(sorted))))
	i = min(max(i, 1), len(sorted))
	return sorted[i-1]
}

// Distribution sorts a copy of ds and summarises it.
func Distribution(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Dist{N: len(s), P50: Percentile(s, 0.50), P99: Percentile(s, 0.99), Max: s[len(s)-1]}
}
