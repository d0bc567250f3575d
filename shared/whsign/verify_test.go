package whsign_test

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/lull-ai/lull/shared/whsign"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	secret, old, other := whsign.NewSecret(), whsign.NewSecret(), whsign.NewSecret()
	body := []byte(`{"type":"generation.completed"}`)
	signed := func(at time.Time, secrets ...string) http.Header {
		req, _ := http.NewRequest(http.MethodPost, "http://x", nil)
		if err := whsign.Sign(req, "msg_1", at, body, secrets...); err != nil {
			t.Fatal(err)
		}
		return req.Header
	}
	tests := []struct {
		name    string
		header  http.Header
		body    []byte
		secrets []string
		want    error
	}{
		{"OK", signed(now, secret), body, []string{secret}, nil},
		{"OKDuringRotation", signed(now, secret, old), body, []string{old}, nil},
		{"OKEitherSecret", signed(now, secret), body, []string{other, secret}, nil},
		{"OKWithinTolerance", signed(now.Add(-4*time.Minute), secret), body, []string{secret}, nil},
		{"ErrSignatureWrongSecret", signed(now, secret), body, []string{other}, whsign.ErrSignature},
		{"ErrSignatureBodyChanged", signed(now, secret), []byte(`{"type":"generation.failed"}`), []string{secret}, whsign.ErrSignature},
		{"ErrTimestampOld", signed(now.Add(-6*time.Minute), secret), body, []string{secret}, whsign.ErrTimestamp},
		{"ErrTimestampFuture", signed(now.Add(6*time.Minute), secret), body, []string{secret}, whsign.ErrTimestamp},
		{"ErrMissingHeaders", http.Header{}, body, []string{secret}, whsign.ErrMissingHeaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := whsign.Verify(tt.header, tt.body, now, 0, tt.secrets...)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if tt.want == nil && id != "msg_1" {
				t.Errorf("id %q", id)
			}
		})
	}
	t.Run("ErrTimestampMalformed", func(t *testing.T) {
		t.Parallel()
		h := signed(now, secret)
		h.Set("webhook-timestamp", "x"+strconv.FormatInt(now.Unix(), 10))
		if _, err := whsign.Verify(h, body, now, 0, secret); !errors.Is(err, whsign.ErrTimestamp) {
			t.Fatalf("err %v", err)
		}
	})
}
