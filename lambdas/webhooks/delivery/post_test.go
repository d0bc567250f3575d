package delivery

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/whsign"
)

// TestPost: one signed POST reports the status, the Retry-After wait (in
// seconds or as an HTTP date), the latency and, last, the transport error.
func TestPost(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name           string
		status         int
		retryAfter     string
		wantRetryAfter time.Duration
		unreachable    bool
	}{
		{"OK", http.StatusOK, "", 0, false},
		{"RetryAfterSeconds", http.StatusTooManyRequests, "120", 2 * time.Minute, false},
		{"RetryAfterDate", http.StatusServiceUnavailable, now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, false},
		{"RetryAfterInThePast", http.StatusServiceUnavailable, now.Add(-time.Hour).Format(http.TimeFormat), 0, false},
		{"Unreachable", 0, "", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var gotSignature string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotSignature = r.Header.Get("webhook-signature")
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
			}))
			url := srv.URL
			if tc.unreachable {
				srv.Close()
			} else {
				defer srv.Close()
			}
			h := &Handler{Config: Config{Client: srv.Client()}}
			wh := &lull.Webhook{ID: "wh_1", URL: url, Secret: whsign.NewSecret()}
			code, retryAfter, latency, err := h.post(context.Background(), wh, "evt_1", now, []byte(`{}`))
			if tc.unreachable {
				if err == nil || code != 0 {
					t.Fatalf("post to a closed server = %d, %v; want a transport error", code, err)
				}
				return
			}
			if err != nil || code != tc.status || retryAfter != tc.wantRetryAfter || latency <= 0 || gotSignature == "" {
				t.Fatalf("post = %d, %s, %s, %v (signature %q); want %d, %s", code, retryAfter, latency, err, gotSignature, tc.status, tc.wantRetryAfter)
			}
		})
	}
}
