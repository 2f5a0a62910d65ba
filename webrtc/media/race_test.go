//go:build race

package media

// The race detector allocates on synchronisation, so allocation counts are only checked without it.
const raceEnabled = true
