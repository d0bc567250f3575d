package delivery_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lull-ai/lull/lambdas/api/httpapi"
	"github.com/lull-ai/lull/lambdas/webhooks/delivery"
	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/netguard"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/sqs"
)

// TestGoneKeepsConcurrentRotation holds issue 13 d: when an endpoint
// answers 410 while its secret is being rotated, disabling it writes only
// the disabled flag — the new secret stands (the dispatcher's copy of the
// endpoint, loaded before the rotation, is never written back).
func TestGoneKeepsConcurrentRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, b := emutest.Table(t, "gone")
	qurl, _, err := sqs.CreateQueue(ctx, b.Clients.SQS, "gone-"+lull.NewID("q")[2:], 30*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	eventsQ := sqs.New(b.Clients.SQS, qurl)
	bucket := "gone-" + lull.NewID("b")[2:12]
	if err := s3.CreateBucket(ctx, b.Clients.S3, bucket); err != nil {
		t.Fatal(err)
	}
	blobs := s3.New(b.Clients.S3, bucket)
	api, err := httpapi.New(httpapi.Config{Generations: store, Keys: store, Blobs: blobs,
		Queues: map[string]lull.Sender{"m": eventsQ}, Webhooks: store, Events: eventsQ,
		Guard: &netguard.Guard{AllowInsecure: true}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	apiSrv := httptest.NewServer(api)
	t.Cleanup(apiSrv.Close)
	if err := store.PutKey(ctx, lull.HashKey("sk-t"), "t"); err != nil {
		t.Fatal(err)
	}
	call := func(path, body string) map[string]any {
		req, _ := http.NewRequest(http.MethodPost, apiSrv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-t")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return nil
		}
		defer resp.Body.Close()
		var out map[string]any
		raw, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(raw, &out) != nil || resp.StatusCode != 200 {
			t.Errorf("POST %s: %d %s", path, resp.StatusCode, raw)
		}
		return out
	}
	var id, rotated string
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The owner rotates the secret while this attempt is in flight…
		rotated, _ = call("/v1/webhooks/"+id+"/rotate_secret", "")["secret"].(string)
		w.WriteHeader(http.StatusGone) // …and the endpoint answers 410.
	}))
	t.Cleanup(receiver.Close)
	id = call("/v1/webhooks", `{"url":"`+receiver.URL+`"}`)["id"].(string)

	now := time.Now().UTC().Truncate(time.Millisecond)
	g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Model: "m", Endpoint: lull.EndpointChat,
		Status: lull.StatusQueued, CreatedAt: now, ExpiresAt: now.Add(time.Hour), WebhookID: id}
	if _, _, err := store.Create(ctx, g, ""); err != nil {
		t.Fatal(err)
	}
	done, err := store.Finish(ctx, g.ID, lull.StatusCancelled, lull.Outcome{At: now})
	if err != nil {
		t.Fatal(err)
	}
	h, err := delivery.New(delivery.Config{Webhooks: store, Generations: store, Blobs: blobs, Events: eventsQ,
		Client: &http.Client{Timeout: 10 * time.Second}, Logger: slog.New(slog.DiscardHandler), Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(lull.DeliveryTask{Event: lull.EventFor(done)})
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1", Body: string(body)}}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %+v, %v", resp, err)
	}
	got, err := store.GetWebhook(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Disabled {
		t.Error("endpoint that answered 410 is not disabled")
	}
	if rotated == "" || got.Secret != rotated {
		t.Errorf("secret after the 410 is %q, want the one rotated meanwhile (%q)", got.Secret, rotated)
	}
}
