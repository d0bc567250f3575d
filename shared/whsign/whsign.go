// Package whsign signs webhook deliveries with the Standard Webhooks scheme:
// headers webhook-id, webhook-timestamp and webhook-signature
// ("v1,<base64 HMAC-SHA256 of id.timestamp.body>", space-separated when
// several secrets sign). Secrets are "whsec_" + base64 of the key.
package whsign

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
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

// Result is the outcome of one signed POST that got an answer.
type Result struct {
	// Status is the receiver's HTTP status code.
	Status int
	// RetryAfter is the wait the receiver asked for in Retry-After
	// (seconds or an HTTP date), 0 when none.
	RetryAfter time.Duration
	// Latency is the time from sending to the answer's headers.
	Latency time.Duration
}

// Post signs body (see Sign) and POSTs it as JSON to url with client,
// reading at most 64 KiB of the answer. It returns an error, with the
// latency so far, when no answer came (or the request could not be made).
func Post(ctx context.Context, client *http.Client, url, id string, now time.Time, body []byte, secrets ...string) (Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("whsign: build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lull-webhooks/1")
	if err := Sign(req, id, now, body, secrets...); err != nil {
		return Result{}, err
	}
	start := time.Now()
	resp, err := client.Do(req)
	res := Result{Latency: time.Since(start)}
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	res.Status = resp.StatusCode
	if v := resp.Header.Get("Retry-After"); v != "" {
		if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
			res.RetryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(v); err == nil {
			res.RetryAfter = max(t.Sub(now), 0)
		}
	}
	return res, nil
}
