// Package whsign signs webhook deliveries with the Standard Webhooks scheme:
// headers webhook-id, webhook-timestamp and webhook-signature
// ("v1,<base64 HMAC-SHA256 of id.timestamp.body>", space-separated when
// several secrets sign). Secrets are "whsec_" + base64 of the key.
package whsign

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// NewSecret returns a fresh secret with a 24-byte key.
func NewSecret() string {
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// Signature returns "v1,<sig>" for one secret.
func Signature(secret, id string, ts time.Time, body []byte) (string, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return "", fmt.Errorf("whsign: malformed secret")
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.", id, ts.Unix())
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// Sign sets the Standard Webhooks headers on req for body, signed with every
// non-empty secret (current first, then one kept for a rotation's grace).
func Sign(req *http.Request, id string, ts time.Time, body []byte, secrets ...string) error {
	var sigs []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		sig, err := Signature(s, id, ts, body)
		if err != nil {
			return err
		}
		sigs = append(sigs, sig)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("whsign: no secret")
	}
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", strings.Join(sigs, " "))
	return nil
}
