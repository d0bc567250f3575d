package listen_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/cmd/lull/internal/listen"
	"github.com/lull-ai/lull/shared/whsign"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func post(t *testing.T, url, secret, id string, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if err := whsign.Sign(req, id, time.Now(), []byte(body), secret); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

const event = `{"type":"generation.completed","timestamp":"2026-01-01T00:00:00Z","data":{"id":"gen_1","status":"completed"}}`

func TestReceiverVerifiesAndPrints(t *testing.T) {
	t.Parallel()
	secret := whsign.NewSecret()
	var out syncBuffer
	srv := httptest.NewServer(&listen.Receiver{Secrets: []string{secret}, Out: &out})
	t.Cleanup(srv.Close)

	if resp := post(t, srv.URL, secret, "msg_1", event); resp.StatusCode != http.StatusNoContent {
		t.Errorf("signed delivery: %d", resp.StatusCode)
	}
	if resp := post(t, srv.URL, secret, "msg_1", event); resp.StatusCode != http.StatusNoContent {
		t.Errorf("redelivery: %d", resp.StatusCode)
	}
	if resp := post(t, srv.URL, whsign.NewSecret(), "msg_2", event); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("delivery signed with another secret: %d, want 401", resp.StatusCode)
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("printed %d lines:\n%s", len(lines), out.String())
	}
	for i, want := range []string{"generation.completed  gen_1  completed  webhook-id=msg_1", "webhook-id=msg_1 (again)", "rejected  msg_2: whsign: no matching signature"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q lacks %q", i, lines[i], want)
		}
	}
}

func TestReceiverForwards(t *testing.T) {
	t.Parallel()
	secret := whsign.NewSecret()
	type got struct {
		header http.Header
		body   string
	}
	received := make(chan got, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		received <- got{r.Header.Clone(), string(b)}
		w.WriteHeader(http.StatusServiceUnavailable) // lull should see this and retry
	}))
	t.Cleanup(app.Close)
	var out syncBuffer
	srv := httptest.NewServer(&listen.Receiver{Secrets: []string{secret}, Out: &out, ForwardTo: app.URL})
	t.Cleanup(srv.Close)

	resp := post(t, srv.URL, secret, "msg_1", event)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("answer %d, want the application's 503", resp.StatusCode)
	}
	g := <-received
	if g.body != event {
		t.Errorf("forwarded body %q", g.body)
	}
	// The application can verify the signature itself: headers go along unchanged.
	if _, err := whsign.Verify(g.header, []byte(g.body), time.Now(), 0, secret); err != nil {
		t.Errorf("forwarded delivery does not verify: %v", err)
	}
	if !strings.Contains(out.String(), "→ 503") {
		t.Errorf("output %q lacks the forward's status", out.String())
	}

	// An application that is down is a 502 for lull.
	app.Close()
	if resp := post(t, srv.URL, secret, "msg_2", event); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("forward to a closed server: %d, want 502", resp.StatusCode)
	}
}
