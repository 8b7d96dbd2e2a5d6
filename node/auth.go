package node

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
)

// keyring checks presented API keys. It holds only digests.
type keyring struct {
	keys []keyEntry
}

type keyEntry struct {
	name   string
	digest [32]byte
	scopes Scope
}

func newKeyring(keys []APIKey) (*keyring, error) {
	kr := &keyring{}
	for _, k := range keys {
		d, err := keyDigest(k.Key)
		if err != nil {
			return nil, fmt.Errorf("api key %s: %w", k.Name, err)
		}
		e := keyEntry{name: k.Name, digest: d}
		for _, s := range k.Scopes {
			sc, err := parseScope(s)
			if err != nil {
				return nil, fmt.Errorf("api key %s: %w", k.Name, err)
			}
			e.scopes |= sc
		}
		kr.keys = append(kr.keys, e)
	}
	return kr, nil
}

// open reports whether no keys are configured: every request is allowed.
func (kr *keyring) open() bool { return len(kr.keys) == 0 }

var (
	bearerPrefix = []byte("Bearer ")
	tectonPrefix = []byte("Tecton-key ")
)

// authorize returns whether the Authorization header value grants need.
// Every configured key is compared, in constant time, whatever matches, so
// the time taken says nothing about which key or how much of it matched.
func (kr *keyring) authorize(header []byte, need Scope) (ok, known bool) {
	if kr.open() {
		return true, true
	}
	var secret []byte
	switch {
	case bytes.HasPrefix(header, bearerPrefix):
		secret = header[len(bearerPrefix):]
	case bytes.HasPrefix(header, tectonPrefix):
		secret = header[len(tectonPrefix):]
	default:
		return false, false
	}
	d := sha256.Sum256(bytes.TrimSpace(secret))
	var granted Scope
	match := 0
	for i := range kr.keys {
		eq := subtle.ConstantTimeCompare(d[:], kr.keys[i].digest[:])
		match |= eq
		granted |= Scope(subtle.ConstantTimeSelect(eq, int(kr.keys[i].scopes), 0))
	}
	if match == 0 {
		return false, false
	}
	return granted&ScopeAdmin != 0 || granted&need != 0, true
}
