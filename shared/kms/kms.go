// Package kms is the AWS KMS adapter of lull.Sealer: each secret is
// encrypted under one customer managed key with an encryption context that
// names lull's purpose and the object it belongs to, so a ciphertext opens
// only for that object, and only for the principals the key policy names
// (infra: the API and the webhook dispatcher).
package kms

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"

	"github.com/lull-ai/lull/shared/lull"
)

// Prefix starts every value Seal returns.
const Prefix = "kms:v1:"

// Purpose is the encryption context entry every ciphertext carries.
const Purpose = lull.SealPurpose

// client lists the KMS calls the sealer makes.
type client interface {
	Encrypt(context.Context, *awskms.EncryptInput, ...func(*awskms.Options)) (*awskms.EncryptOutput, error)
	Decrypt(context.Context, *awskms.DecryptInput, ...func(*awskms.Options)) (*awskms.DecryptOutput, error)
}

// Sealer encrypts with one KMS key.
type Sealer struct {
	c     client
	keyID string
}

var _ lull.Sealer = (*Sealer)(nil)

// New returns a sealer over the key keyID (an ID, ARN or alias) through c.
func New(c *awskms.Client, keyID string) *Sealer {
	return &Sealer{c: c, keyID: keyID}
}

func encryptionContext(id string) map[string]string {
	return map[string]string{"lull:purpose": Purpose, "lull:id": id}
}

// Seal implements lull.Sealer.
func (s *Sealer) Seal(ctx context.Context, plaintext []byte, id string) (string, error) {
	out, err := s.c.Encrypt(ctx, &awskms.EncryptInput{KeyId: aws.String(s.keyID), Plaintext: plaintext, EncryptionContext: encryptionContext(id)})
	if err != nil {
		return "", wrap(err, "encrypt secret of %s", id)
	}
	return Prefix + base64.StdEncoding.EncodeToString(out.CiphertextBlob), nil
}

// Open implements lull.Sealer.
func (s *Sealer) Open(ctx context.Context, sealed string, id string) ([]byte, error) {
	raw, ok := strings.CutPrefix(sealed, Prefix)
	if !ok {
		return nil, errors.New("kms: not a KMS-sealed value")
	}
	blob, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, errors.New("kms: malformed sealed value")
	}
	out, err := s.c.Decrypt(ctx, &awskms.DecryptInput{KeyId: aws.String(s.keyID), CiphertextBlob: blob, EncryptionContext: encryptionContext(id)})
	if err != nil {
		return nil, wrap(err, "decrypt secret of %s", id)
	}
	return out.Plaintext, nil
}

// wrap adds context; throttling becomes EUNAVAILABLE (retry later).
func wrap(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ThrottlingException", "KMSInternalException", "DependencyTimeoutException":
			return &lull.Error{Code: lull.EUNAVAILABLE, Message: "The service is busy; retry later.", Err: fmt.Errorf("kms: %s: %w", msg, err)}
		}
	}
	return fmt.Errorf("kms: %s: %w", msg, err)
}
