// Package localseal is a lull.Sealer with a local AES-256-GCM key, for the
// dev stack and tests; deployments use AWS KMS (shared/kms).
package localseal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/lull-ai/lull/shared/lull"
)

// Prefix starts every value Seal returns.
const Prefix = "local:v1:"

// Sealer seals with one AES-256-GCM key; the object ID is the additional
// authenticated data.
type Sealer struct {
	aead cipher.AEAD
}

var _ lull.Sealer = (*Sealer)(nil)

// New returns a sealer over a 32-byte key.
func New(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("localseal: key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("localseal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("localseal: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// NewKey returns a random 32-byte key.
func NewKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// Seal implements lull.Sealer.
func (s *Sealer) Seal(_ context.Context, plaintext []byte, id string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := s.aead.Seal(nonce, nonce, plaintext, []byte(id))
	return Prefix + base64.RawStdEncoding.EncodeToString(out), nil
}

// Open implements lull.Sealer.
func (s *Sealer) Open(_ context.Context, sealed string, id string) ([]byte, error) {
	raw, ok := strings.CutPrefix(sealed, Prefix)
	if !ok {
		return nil, errors.New("localseal: not a locally sealed value")
	}
	b, err := base64.RawStdEncoding.DecodeString(raw)
	if err != nil || len(b) < s.aead.NonceSize() {
		return nil, errors.New("localseal: malformed sealed value")
	}
	n := s.aead.NonceSize()
	out, err := s.aead.Open(nil, b[:n], b[n:], []byte(id))
	if err != nil {
		return nil, fmt.Errorf("localseal: open for %s: %w", id, err)
	}
	return out, nil
}
