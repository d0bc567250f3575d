package lull

import "context"

// SealPurpose names what lull seals (webhook signing secrets); the KMS
// adapter puts it in every encryption context and the key policy requires it.
const SealPurpose = "webhook-secret"

// Sealer encrypts the small secrets lull keeps (webhook signing secrets) so
// that its table holds only ciphertext: reading an item is not enough to
// sign as an endpoint's owner. A sealed value opens only with the id it was
// sealed with (the object it belongs to), so a ciphertext copied onto
// another object does not open. Adapters: shared/kms (AWS KMS, deployed)
// and shared/localseal (AES-GCM with a local key: the dev stack, tests).
type Sealer interface {
	// Seal encrypts plaintext for the object id and returns text to store.
	Seal(ctx context.Context, plaintext []byte, id string) (string, error)
	// Open decrypts what Seal returned for id; an error when sealed was not
	// sealed for id, or by this sealer's key.
	Open(ctx context.Context, sealed string, id string) ([]byte, error)
}
