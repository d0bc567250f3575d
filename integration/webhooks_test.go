package integration

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/shared/lull"
)

// verify checks a Standard Webhooks request the way a receiver would,
// written from the specification, independently of lull's signing code.
func verify(secret string, r *http.Request, body []byte) error {
	id, ts, sigs := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("missing headers")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return fmt.Errorf("timestamp %q outside tolerance", ts)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		v, sig, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no valid signature")
}

// receiver is a real HTTP webhook endpoint that verifies and de-duplicates.
type receiver struct {
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	seen   map[string]map[string]any // webhook-id → payload
	dups   int
	bad    []error
	// respond decides the answer to the n-th request (1-based) for an id.
	respond func(w http.ResponseWriter, n int) bool
	tries   map[string]int
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{seen: map[string]map[string]any{}, tries: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get("webhook-id")
		rc.mu.Lock()
		rc.tries[id]++
		n, secret, respond := rc.tries[id], rc.secret, rc.respond
		rc.mu.Unlock()
		if respond != nil && respond(w, n) {
			return
		}
		if err := verify(secret, r, body); err != nil {
			rc.mu.Lock()
			rc.bad = append(rc.bad, err)
			rc.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p map[string]any
		_ = json.Unmarshal(body, &p)
		rc.mu.Lock()
		if _, dup := rc.seen[id]; dup {
			rc.dups++
		} else {
			rc.seen[id] = p
		}
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(func() { rc.srv.CloseClientConnections(); rc.srv.Close() })
	return rc
}

func (rc *receiver) count() int { rc.mu.Lock(); defer rc.mu.Unlock(); return len(rc.seen) }

type webhookView struct {
	ID, Secret, Status string
}

func register(t *testing.T, st *devstack.Stack, key, url string) webhookView {
	t.Helper()
	var wh webhookView
	if code := postJSON(t, st.URL+"/v1/webhooks", key, fmt.Sprintf(`{"url":%q,"description":"test"}`, url), &wh); code != 200 || !strings.HasPrefix(wh.Secret, "whsec_") {
		t.Fatalf("register: %d %+v", code, wh)
	}
	return wh
}

func submitWithHook(t *testing.T, st *devstack.Stack, key, hook, content string) string {
	t.Helper()
	var acc struct{ ID string }
	body := fmt.Sprintf(`{"model":%q,"max_tokens":8,"metadata":{"webhook_id":%q},"messages":[{"role":"user","content":%q}]}`, simModel, hook, content)
	if code := postJSON(t, st.URL+"/v1/slow/chat/completions", key, body, &acc); code != http.StatusAccepted {
		t.Fatalf("submit: %d", code)
	}
	return acc.ID
}

// 200 requests with metadata.webhook_id: one verified generation.completed
// event per generation, with the whole generation in the payload.
func TestWebhooksDeliverEveryCompletion(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: 2, WorkerConcurrency: 32})
	rc := newReceiver(t)
	wh := register(t, st, "sk-lull-dev", rc.srv.URL+"/hook")
	rc.mu.Lock()
	rc.secret = wh.Secret
	rc.mu.Unlock()
	ids := map[string]bool{}
	for i := range 200 {
		ids[submitWithHook(t, st, "sk-lull-dev", wh.ID, fmt.Sprintf("hook me %d", i))] = true
	}
	waitFor(t, 2*time.Minute, "200 webhook events", func() bool { return rc.count() >= 200 })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		t.Fatalf("%d deliveries failed verification: %v", len(rc.bad), rc.bad[0])
	}
	for id, p := range rc.seen {
		data, _ := p["data"].(map[string]any)
		if p["type"] != "generation.completed" || !ids[data["id"].(string)] || data["status"] != "completed" || data["response"] == nil {
			t.Fatalf("event %s: %v", id, p)
		}
		delete(ids, data["id"].(string))
	}
	if len(ids) != 0 {
		t.Fatalf("%d generations got no event", len(ids))
	}
}

// A receiver that fails three times (500, a timeout, 503 with Retry-After)
// still gets the event on the (scaled) schedule; every attempt is listed;
// a 410 disables the endpoint.
func TestWebhookRetriesAndGone(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{WebhookTimeScale: 0.001, WebhookTimeout: 300 * time.Millisecond})
	rc := newReceiver(t)
	rc.respond = func(w http.ResponseWriter, n int) bool {
		switch n {
		case 1:
			w.WriteHeader(http.StatusInternalServerError)
		case 2:
			time.Sleep(600 * time.Millisecond) // past the 300ms delivery timeout
			w.WriteHeader(http.StatusNoContent)
		case 3:
			w.Header().Set("Retry-After", "600") // 600s, scaled to 0.6s
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			return false
		}
		return true
	}
	wh := register(t, st, "sk-lull-dev", rc.srv.URL)
	rc.mu.Lock()
	rc.secret = wh.Secret
	rc.mu.Unlock()
	gen := submitWithHook(t, st, "sk-lull-dev", wh.ID, "retry me")
	waitFor(t, time.Minute, "the event after three failures", func() bool { return rc.count() == 1 })

	ds, _, err := st.Store.ListDeliveries(context.Background(), wh.ID, "", 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries: %v %v", ds, err)
	}
	d := ds[0]
	waitFor(t, 5*time.Second, "delivery recorded as succeeded", func() bool {
		d, _ = st.Store.GetDelivery(context.Background(), wh.ID, d.ID)
		return d.Status == lull.DeliverySucceeded && len(d.Attempts) == 4
	})
	a := d.Attempts
	if a[0].StatusCode != 500 || a[1].StatusCode != 0 || a[1].Error == "" || a[2].StatusCode != 503 || a[3].StatusCode != 204 || d.GenerationID != gen {
		t.Fatalf("attempts %+v", a)
	}
	// Gaps follow the schedule ×0.001: ≥5ms, ≥300ms (5 min), then Retry-After 600s → ≥600ms.
	for i, min := range []time.Duration{5 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond} {
		if gap := a[i+1].At.Sub(a[i].At); gap < min {
			t.Errorf("gap before attempt %d = %s, want ≥ %s", i+2, gap, min)
		}
	}
	// The API lists the same attempts.
	var page struct {
		Data []struct {
			Status   string
			Attempts []struct {
				StatusCode *int `json:"status_code"`
				Error      string
			}
		}
	}
	if code := getJSON(t, st.URL+"/v1/webhooks/"+wh.ID+"/deliveries", "sk-lull-dev", &page); code != 200 || len(page.Data) != 1 || len(page.Data[0].Attempts) != 4 || page.Data[0].Status != "succeeded" {
		t.Fatalf("deliveries API: %d %+v", code, page)
	}

	// 410 Gone disables the endpoint; later requests naming it are refused.
	gone := newReceiver(t)
	gone.respond = func(w http.ResponseWriter, _ int) bool { w.WriteHeader(http.StatusGone); return true }
	wh2 := register(t, st, "sk-lull-dev", gone.srv.URL)
	submitWithHook(t, st, "sk-lull-dev", wh2.ID, "gone")
	waitFor(t, 30*time.Second, "endpoint disabled", func() bool {
		var v webhookView
		getJSON(t, st.URL+"/v1/webhooks/"+wh2.ID, "sk-lull-dev", &v)
		return v.Status == "disabled"
	})
	body := fmt.Sprintf(`{"model":%q,"metadata":{"webhook_id":%q},"messages":[{"role":"user","content":"x"}]}`, simModel, wh2.ID)
	if code := postJSON(t, st.URL+"/v1/slow/chat/completions", "sk-lull-dev", body, nil); code != 400 {
		t.Fatalf("submit to disabled webhook: %d, want 400", code)
	}
}

// Tenant B can neither see, use, rotate nor delete tenant A's webhooks.
func TestWebhookTenantIsolation(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: -1})
	if err := st.AddKey(context.Background(), "sk-b", "tenant-b"); err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t)
	wh := register(t, st, "sk-lull-dev", rc.srv.URL)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/webhooks/" + wh.ID},
		{"DELETE", "/v1/webhooks/" + wh.ID},
		{"POST", "/v1/webhooks/" + wh.ID + "/rotate_secret"},
		{"GET", "/v1/webhooks/" + wh.ID + "/deliveries"},
		{"POST", "/v1/webhooks/" + wh.ID + "/deliveries/dlv_x/retry"},
	} {
		req, _ := http.NewRequest(tc.method, st.URL+tc.path, nil)
		req.Header.Set("Authorization", "Bearer sk-b")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("B %s %s = %d, want 404", tc.method, tc.path, resp.StatusCode)
		}
	}
	var list struct{ Data []any }
	if getJSON(t, st.URL+"/v1/webhooks", "sk-b", &list); len(list.Data) != 0 {
		t.Fatalf("B lists %d webhooks", len(list.Data))
	}
	body := fmt.Sprintf(`{"model":%q,"metadata":{"webhook_id":%q},"messages":[{"role":"user","content":"x"}]}`, simModel, wh.ID)
	if code := postJSON(t, st.URL+"/v1/slow/chat/completions", "sk-b", body, nil); code != 400 {
		t.Fatalf("B submits with A's webhook: %d, want 400", code)
	}
	// A's webhook is untouched; rotation by A returns a new secret.
	var rotated webhookView
	if code := postJSON(t, st.URL+"/v1/webhooks/"+wh.ID+"/rotate_secret", "sk-lull-dev", "", &rotated); code != 200 || rotated.Secret == wh.Secret || rotated.Secret == "" {
		t.Fatalf("A rotates: %d %+v", code, rotated)
	}
}

// In production mode, registering internal or non-https URLs is refused.
func TestWebhookRegistrationSSRF(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: -1, SecureWebhooks: true})
	for _, u := range []string{"http://127.0.0.1:9000/x", "https://127.0.0.1/x", "https://10.0.0.1/x", "https://169.254.169.254/latest/meta-data/",
		"https://[::1]/x", "https://localhost/x", "http://example.com/x"} {
		var e struct {
			Error struct{ Message, Param string } `json:"error"`
		}
		if code := postJSON(t, st.URL+"/v1/webhooks", "sk-lull-dev", fmt.Sprintf(`{"url":%q}`, u), &e); code != 400 || e.Error.Param != "url" || e.Error.Message == "" {
			t.Errorf("register %s: %d %+v, want 400 on url", u, code, e)
		}
	}
}
