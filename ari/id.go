package ari

import (
	"crypto/rand"
	"encoding/hex"
)

// NewID returns a random, unguessable resource ID (128 bits, hex) for channels,
// bridges, playbacks and recordings. Making IDs on the client lets a caller
// subscribe to a resource's events before the resource exists, so none is missed.
func NewID() string {
	var b [16]byte
	// crypto/rand.Read never returns an error on supported platforms (Go ≥ 1.24).
	_, _ = rand.Read(b[:])
	return "pb-" + hex.EncodeToString(b[:])
}
