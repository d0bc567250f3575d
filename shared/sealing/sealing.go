// Package sealing picks the lull.Sealer that a LULL_SECRETS_KEY setting
// names: a KMS key (ID, ARN or alias) in deployments, a local AES key for
// the dev stack.
package sealing

import (
	"encoding/base64"
	"fmt"
	"strings"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/lull-ai/lull/shared/kms"
	"github.com/lull-ai/lull/shared/localseal"
	"github.com/lull-ai/lull/shared/lull"
)

// LocalPrefix starts a setting that holds a local key:
// "local:" + base64 of 32 bytes.
const LocalPrefix = "local:"

// FromSetting returns the sealer setting names: nil for "" (secrets are
// stored as they are), a local AES-GCM sealer for "local:<base64 key>",
// else a KMS sealer over the key setting names, through c.
func FromSetting(setting string, c *awskms.Client) (lull.Sealer, error) {
	switch {
	case setting == "":
		return nil, nil
	case strings.HasPrefix(setting, LocalPrefix):
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(setting, LocalPrefix))
		if err != nil {
			return nil, fmt.Errorf("sealing: LULL_SECRETS_KEY: local key is not base64: %w", err)
		}
		return localseal.New(key)
	default:
		if c == nil {
			return nil, fmt.Errorf("sealing: LULL_SECRETS_KEY names a KMS key but there is no KMS client")
		}
		return kms.New(c, setting), nil
	}
}

// LocalSetting returns a setting for a fresh random local key.
func LocalSetting() string {
	return LocalPrefix + base64.StdEncoding.EncodeToString(localseal.NewKey())
}
