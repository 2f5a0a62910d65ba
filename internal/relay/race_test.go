//go:build race

package relay

// The race detector allocates on synchronisation, so allocation counts are only checked without it.
const raceEnabled = true
