package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"sort"
)

// MinAPIKeyLen is the shortest API key NewAPIKeys accepts.
const MinAPIKeyLen = 16

// APIKeys checks presented API keys against a fixed set. Only SHA-256 digests
// are kept in memory.
type APIKeys struct {
	entries []apiKey
}

type apiKey struct {
	name   string
	digest [sha256.Size]byte
}

// NewAPIKeys builds a checker from name→key pairs.
func NewAPIKeys(keys map[string]string) (*APIKeys, error) {
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	sort.Strings(names) // stable errors and check order
	a := &APIKeys{entries: make([]apiKey, 0, len(keys))}
	seen := make(map[[sha256.Size]byte]string, len(keys))
	for _, n := range names {
		k := keys[n]
		if n == "" {
			return nil, errors.New("auth: API key with an empty name; give every key a name identifying its client")
		}
		if len(k) < MinAPIKeyLen {
			return nil, fmt.Errorf("auth: API key %q is shorter than %d characters; generate one with `openssl rand -hex 32`", n, MinAPIKeyLen)
		}
		d := sha256.Sum256([]byte(k))
		if other, dup := seen[d]; dup {
			return nil, fmt.Errorf("auth: API keys %q and %q are identical; give each client its own key", other, n)
		}
		seen[d] = n
		a.entries = append(a.entries, apiKey{name: n, digest: d})
	}
	return a, nil
}

// Check reports which key, if any, presented is. Every stored digest is
// compared in constant time so timing reveals neither the key nor which entry
// matched.
func (a *APIKeys) Check(presented string) (name string, ok bool) {
	if a == nil || presented == "" {
		return "", false
	}
	d := sha256.Sum256([]byte(presented))
	for _, e := range a.entries {
		if subtle.ConstantTimeCompare(d[:], e.digest[:]) == 1 {
			name, ok = e.name, true
		}
	}
	return name, ok
}
