package whsign

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Errors Verify returns.
var (
	// ErrMissingHeaders means one of the three Standard Webhooks headers is absent.
	ErrMissingHeaders = errors.New("whsign: missing webhook-id, webhook-timestamp or webhook-signature")
	// ErrTimestamp means the timestamp is malformed or outside the tolerance.
	ErrTimestamp = errors.New("whsign: timestamp outside the tolerance")
	// ErrSignature means no signature matches any of the secrets.
	ErrSignature = errors.New("whsign: no matching signature")
)

// DefaultTolerance is how far a timestamp may be from now, either way.
const DefaultTolerance = 5 * time.Minute

// Verify checks the Standard Webhooks headers of a received request against
// body and secrets (any may match; several "v1," signatures may be listed,
// space-separated). tolerance bounds the clock skew (DefaultTolerance when
// zero) so that a captured request cannot be replayed later. It returns the
// webhook-id on success, or ErrMissingHeaders, ErrTimestamp or ErrSignature.
func Verify(h http.Header, body []byte, now time.Time, tolerance time.Duration, secrets ...string) (string, error) {
	id, tsText, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || tsText == "" || sigs == "" {
		return "", ErrMissingHeaders
	}
	secs, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return "", ErrTimestamp
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	ts := time.Unix(secs, 0)
	if d := now.Sub(ts); d > tolerance || d < -tolerance {
		return "", fmt.Errorf("%w: %s from now", ErrTimestamp, d.Round(time.Second))
	}
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		want, err := Signature(secret, id, ts, body)
		if err != nil {
			return "", err
		}
		for _, got := range strings.Fields(sigs) {
			if hmac.Equal([]byte(got), []byte(want)) {
				return id, nil
			}
		}
	}
	return "", ErrSignature
}
