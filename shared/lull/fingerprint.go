package lull

import (
	"crypto/sha256"
	"encoding/hex"
)

// HashKey returns the SHA-256 hex digest under which an API key is stored.
func HashKey(apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return hex.EncodeToString(sum[:])
}

// Fingerprint identifies a request for idempotency checks: the same key with a
// different fingerprint is a conflict.
func Fingerprint(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
