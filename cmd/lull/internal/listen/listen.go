// Package listen is a webhook receiver for development: it verifies each
// delivery's Standard Webhooks signature, prints one line per event, and
// optionally forwards the delivery, headers and body unchanged, to a local
// application, answering lull with that application's status so lull's
// retries behave as they would against the application itself.
package listen

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/lull-ai/lull/shared/whsign"
)

// maxBody is the largest delivery accepted (lull's payload limit is far lower).
const maxBody = 16 << 20

// Receiver handles webhook deliveries. Its zero value is not usable: set
// Secrets and Out.
type Receiver struct {
	// Secrets verify signatures (the endpoint's whsec_ secret; two during a
	// rotation).
	Secrets []string
	// Out receives one line per delivery.
	Out io.Writer
	// ForwardTo, when set, receives every verified delivery.
	ForwardTo string
	// Client forwards; a 30 s-timeout client when nil.
	Client *http.Client
	// Tolerance is the allowed clock skew; whsign.DefaultTolerance when zero.
	Tolerance time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu   sync.Mutex
	seen map[string]bool
}

// event is the part of a delivery's body printed.
type event struct {
	Type string `json:"type"`
	Data struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Error  *struct {
			Code string `json:"code"`
		} `json:"error"`
		RequestCounts *struct {
			Total, Completed, Failed int
		} `json:"request_counts"`
	} `json:"data"`
}

// ServeHTTP verifies, prints and forwards one delivery. It answers 401 to a
// bad signature, 405 to anything but POST, the forward target's status when
// forwarding (502 when it cannot be reached), else 204.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if rc.Now != nil {
		now = rc.Now()
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST webhook deliveries here", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	stamp := now.Format("15:04:05")
	id, err := whsign.Verify(r.Header, body, now, rc.Tolerance, rc.Secrets...)
	if err != nil {
		rc.printf("%s  rejected  %s: %v\n", stamp, cmp.Or(r.Header.Get("webhook-id"), "(no webhook-id)"), err)
		http.Error(w, "signature verification failed", http.StatusUnauthorized)
		return
	}
	var ev event
	_ = json.Unmarshal(body, &ev)
	line := fmt.Sprintf("%s  %-20s  %s  %s", stamp, cmp.Or(ev.Type, "(unknown type)"), cmp.Or(ev.Data.ID, "-"), cmp.Or(ev.Data.Status, "-"))
	if ev.Data.Error != nil && ev.Data.Error.Code != "" {
		line += " (" + ev.Data.Error.Code + ")"
	}
	if c := ev.Data.RequestCounts; c != nil {
		line += fmt.Sprintf(" %d/%d completed, %d failed", c.Completed, c.Total, c.Failed)
	}
	line += "  webhook-id=" + id
	rc.mu.Lock()
	if rc.seen == nil {
		rc.seen = map[string]bool{}
	}
	if rc.seen[id] {
		line += " (again)"
	}
	rc.seen[id] = true
	rc.mu.Unlock()

	if rc.ForwardTo == "" {
		rc.printf("%s\n", line)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	status, answer, err := rc.forward(r, body)
	if err != nil {
		rc.printf("%s  → forward failed: %v\n", line, err)
		http.Error(w, "forward failed", http.StatusBadGateway)
		return
	}
	rc.printf("%s  → %d\n", line, status)
	w.WriteHeader(status)
	_, _ = w.Write(answer)
}

// forward posts the delivery to ForwardTo with lull's headers.
func (rc *Receiver) forward(r *http.Request, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, rc.ForwardTo, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for _, h := range []string{"Content-Type", "webhook-id", "webhook-timestamp", "webhook-signature", "User-Agent"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	client := rc.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, answer, nil
}

func (rc *Receiver) printf(format string, args ...any) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	fmt.Fprintf(rc.Out, format, args...)
}
