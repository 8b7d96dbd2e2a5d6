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

// credentials splits an Authorization header value into its scheme and
// secret (RFC 7235: "scheme 1*SP credentials"). Only spaces and tabs
// separate or surround them; any other byte, Unicode spaces included, is
// part of the secret, so a header of only a non-breaking space presents a
// two-byte key, not an empty one.
func credentials(header []byte) (scheme, secret []byte) {
	i := bytes.IndexByte(header, ' ')
	if i <= 0 {
		return nil, nil
	}
	return header[:i], bytes.Trim(header[i+1:], " \t")
}

// authorize returns whether the Authorization header value grants need.
// Every configured key is compared, in constant time, whatever matches, so
// the time taken says nothing about which key or how much of it matched.
func (kr *keyring) authorize(header []byte, need Scope) (ok, known bool) {
	if kr.open() {
		return true, true
	}
	// The scheme is case-insensitive (RFC 7235 section 2.1).
	scheme, secret := credentials(header)
	if len(secret) == 0 || !(bytes.EqualFold(scheme, []byte("Bearer")) || bytes.EqualFold(scheme, []byte("Tecton-key"))) {
		return false, false
	}
	d := sha256.Sum256(secret)
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
