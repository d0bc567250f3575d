package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lull-ai/lull/lambdas/api/httpapi"
	"github.com/lull-ai/lull/lambdas/webhooks/delivery"
	"github.com/lull-ai/lull/shared/genview"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/memory"
	"github.com/lull-ai/lull/shared/whsign"
)

// TestManualRetryOfBatchDelivery follows a batch.completed delivery from
// its failed first attempt through POST …/deliveries/{id}/retry to the
// attempt that retry makes: it must carry the batch again, not
// {"data":{"id":""}}. It runs the API and the webhook handler over
// in-memory state (shared/memory), with no emulator.
func TestManualRetryOfBatchDelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := memory.NewClock(t0)
	store := memory.NewStore()
	blobs := memory.NewBlobs(clock)
	eventsQ := memory.NewQueue(memory.QueueConfig{Name: "events", Clock: clock})

	type post struct {
		id    string
		event genview.EventObject
	}
	var mu sync.Mutex
	var posts []post
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p genview.EventObject
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("payload is not JSON: %s", body)
		}
		mu.Lock()
		posts = append(posts, post{r.Header.Get("webhook-id"), p})
		first := len(posts) == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(recv.Close)

	wh := &lull.Webhook{ID: lull.NewID("wh"), Tenant: "tenant-a", URL: recv.URL, Secret: whsign.NewSecret(), CreatedAt: t0}
	b := &lull.Batch{ID: lull.NewID("batch"), Tenant: "tenant-a", Endpoint: lull.EndpointChat, InputFileID: lull.NewID("file"),
		CompletionWindow: "24h", Status: lull.BatchCompleted, WebhookID: wh.ID, CreatedAt: t0, CompletedAt: t0, Total: 2, Completed: 2}
	if err := store.CreateWebhook(ctx, wh); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := store.PutKey(ctx, lull.HashKey("sk-a"), "tenant-a"); err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Config{
		Generations: store, Keys: store, Blobs: blobs, Queues: map[string]lull.Sender{model: memory.NewQueue(memory.QueueConfig{})},
		Webhooks: store, Events: eventsQ, Batches: store, Files: store, Uploads: store, BatchQueue: memory.NewQueue(memory.QueueConfig{}),
		Logger: slog.New(slog.DiscardHandler), Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	hooks, err := delivery.New(delivery.Config{
		Webhooks: store, Generations: store, Batches: store, Blobs: blobs, Events: eventsQ,
		Client: recv.Client(), Logger: slog.New(slog.DiscardHandler), Now: clock.Now, PublicURL: srv.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	handle := func(body []byte) {
		t.Helper()
		resp, err := hooks.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m", Body: string(body)}}})
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("Handle = %+v, %v", resp, err)
		}
	}

	ev := lull.BatchEventFor(b)
	evBody, _ := json.Marshal(ev)
	clock.Advance(time.Minute) // the delivery starts after the event happened
	handle(evBody)             // first attempt: 500, a retry is scheduled for later
	ds, _, err := store.ListDeliveries(ctx, wh.ID, "", 10)
	if err != nil || len(ds) != 1 || len(ds[0].Attempts) != 1 {
		t.Fatalf("deliveries = %+v, %v", ds, err)
	}

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/webhooks/"+wh.ID+"/deliveries/"+ds[0].ID+"/retry", nil)
	req.Header.Set("Authorization", "Bearer sk-a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("retry answered %d", resp.StatusCode)
	}
	msgs, err := eventsQ.Receive(ctx, 10, 0, time.Minute) // only the manual retry is due now
	if err != nil || len(msgs) != 1 {
		t.Fatalf("due tasks = %d, %v; want the manual retry", len(msgs), err)
	}
	handle(msgs[0].Body)

	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 2 {
		t.Fatalf("%d POSTs, want 2", len(posts))
	}
	// batch.* events are in OpenAI's event shape: the event time, the batch's ID.
	for i, p := range posts {
		if e := p.event; p.id != ev.ID || e.ID != ev.ID || e.Object != "event" || e.Type != lull.EventBatchCompleted ||
			e.Data.ID != b.ID || e.CreatedAt != ev.CreatedAt.Unix() {
			t.Errorf("attempt %d: webhook-id %s, event %+v; want %s, %s, %s and batch %s", i+1, p.id, e, ev.ID, ev.Type, ev.CreatedAt, b.ID)
		}
	}
	if d, err := store.GetDelivery(ctx, wh.ID, ds[0].ID); err != nil || d.Status != lull.DeliverySucceeded || len(d.Attempts) != 2 {
		t.Fatalf("delivery after the retry = %+v, %v", d, err)
	}
}
