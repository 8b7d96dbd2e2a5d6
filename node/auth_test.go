package node

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// A key that no client should be able to present is refused at load, with
// the key's name: empty, short, space-padded, or the digest of "" (what
// hashing an unset variable gives).
func TestConfigRefusesEmptyAndShortKeys(t *testing.T) {
	empty := sha256.Sum256(nil)
	for _, key := range []string{
		"",
		"short-key",
		strings.Repeat(" ", 20),
		" padded-key-0123456789",
		"sha256:" + hex.EncodeToString(empty[:]),
		"sha256:abcd",
	} {
		cfg := DefaultConfig()
		cfg.APIKeys = []APIKey{{Name: "ops-key", Key: key, Scopes: []string{"admin"}}}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "ops-key") {
			t.Errorf("key %q: Validate = %v, want an error naming ops-key", key, err)
		}
	}
	good := sha256.Sum256([]byte("a-long-random-key-0123"))
	for _, key := range []string{"a-long-random-key-0123", "sha256:" + hex.EncodeToString(good[:])} {
		cfg := DefaultConfig()
		cfg.APIKeys = []APIKey{{Name: "ops-key", Key: key, Scopes: []string{"admin"}}}
		if err := cfg.Validate(); err != nil {
			t.Errorf("key %q: %v", key, err)
		}
	}
}

// Presented keys are trimmed of spaces and tabs only, and the scheme is
// case-insensitive (RFC 7235).
func TestAuthorizeSchemeAndSpaces(t *testing.T) {
	const key = "a-long-random-key-0123"
	kr, err := newKeyring([]APIKey{{Name: "k", Key: key, Scopes: []string{"read"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		header string
		ok     bool
	}{
		{"Bearer " + key, true},
		{"bearer " + key, true},
		{"BEARER " + key, true},
		{"tecton-key " + key, true},
		{"Tecton-Key " + key + " \t", true},
		{"Bearer  " + key, true},
		{"Bearer " + key + "\u00a0", false},
		{"Bearer \u00a0" + key, false},
		{"Bearer \u00a0", false},
		{"Bearer ", false},
		{"Bearer", false},
		{"Bearer" + key, false},
		{"Basic " + key, false},
		{key, false},
	} {
		if ok, _ := kr.authorize([]byte(c.header), ScopeRead); ok != c.ok {
			t.Errorf("%q: authorized %v, want %v", c.header, ok, c.ok)
		}
	}
}
