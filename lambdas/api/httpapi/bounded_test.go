package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lull-ai/lull/lambdas/api/httpapi"
	"github.com/lull-ai/lull/localstack/emulators"
	"github.com/lull-ai/lull/shared/awsclients"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/sqs"
)

// readMeter is a DynamoDB endpoint in front of the emulator that counts
// the items every Query reads (ScannedCount), as DynamoDB bills them.
type readMeter struct {
	queries, scanned atomic.Int64
}

func (m *readMeter) reset() { m.queries.Store(0); m.scanned.Store(0) }

func (m *readMeter) proxy(t *testing.T, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasSuffix(resp.Request.Header.Get("X-Amz-Target"), ".Query") {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var out struct{ Count, ScannedCount int64 }
		_ = json.Unmarshal(body, &out)
		m.queries.Add(1)
		m.scanned.Add(max(out.ScannedCount, out.Count))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL
}

// seed runs f(0..n-1) on 8 goroutines and fails the test on the first error.
func seed(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var next atomic.Int64
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					errs <- nil
					return
				}
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestListsReadBoundedWork holds issue 13 b: a listing call reads a bounded
// part of the index however large the tenant's history is — a ?status= or
// ?purpose= filter that matches little does not walk the whole partition,
// delivery listing does not load the webhook's whole history, and a files
// page holds at most dynamodb.MaxFilesPage files — and the cursor still
// reaches everything.
func TestListsReadBoundedWork(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	emu, err := emulators.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	meter := &readMeter{}
	ep := emu.Endpoints
	ep.DynamoDB = meter.proxy(t, ep.DynamoDB)
	clients, err := awsclients.New(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	store := dynamodb.New(clients.DynamoDB, "bounded-"+lull.NewID("t"))
	if err := store.CreateTable(ctx); err != nil {
		t.Fatal(err)
	}
	bucket := "bounded-" + lull.NewID("b")[2:12]
	if err := s3.CreateBucket(ctx, clients.S3, bucket); err != nil {
		t.Fatal(err)
	}
	qurl, _, err := sqs.CreateQueue(ctx, clients.SQS, "bounded-"+lull.NewID("q")[2:], 30*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	q := sqs.New(clients.SQS, qurl)
	srv, err := httpapi.New(httpapi.Config{
		Generations: store, Keys: store, Blobs: s3.New(clients.S3, bucket), Queues: map[string]lull.Sender{model: q},
		Logger: slog.New(slog.DiscardHandler), Webhooks: store, Events: q, Batches: store, Files: store, Uploads: store, BatchQueue: q,
		KeyCacheTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	const tenant = "tenant-big"
	if err := store.PutKey(ctx, lull.HashKey("sk-big"), tenant); err != nil {
		t.Fatal(err)
	}
	get := func(path string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer sk-big")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v %v", path, resp.StatusCode, out, err)
		}
		return out
	}
	const history = 2*dynamodb.ListBudget + 200
	start := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	gens := make([]*lull.Generation, history)
	seed(t, history, func(i int) error {
		gens[i] = &lull.Generation{ID: lull.NewID("gen"), Tenant: tenant, Model: model, Endpoint: lull.EndpointChat,
			Status: lull.StatusQueued, CreatedAt: start.Add(time.Duration(i) * time.Millisecond), ExpiresAt: start.Add(48 * time.Hour)}
		_, _, err := store.Create(ctx, gens[i], "")
		return err
	})
	oldest := gens[0].ID
	if _, err := store.Finish(ctx, oldest, lull.StatusCancelled, lull.Outcome{At: start}); err != nil {
		t.Fatal(err)
	}
	get("/v1/generations?limit=1") // resolves the key outside the measurement

	t.Run("GenerationsByStatus", func(t *testing.T) {
		after, found := "", false
		for page := 0; !found; page++ {
			meter.reset()
			out := get("/v1/generations?status=cancelled&limit=1" + after)
			if n := meter.scanned.Load(); n > dynamodb.ListBudget+100 {
				t.Fatalf("page %d read %d items in %d queries for one ?status= page (budget %d)", page, n, meter.queries.Load(), dynamodb.ListBudget)
			}
			for _, g := range out["data"].([]any) {
				found = found || g.(map[string]any)["id"] == oldest
			}
			if found {
				break
			}
			last, _ := out["last_id"].(string)
			if out["has_more"] != true || last == "" || page > history/dynamodb.ListBudget+1 {
				t.Fatalf("page %d: has_more %v, last_id %q: the cancelled generation was never reached", page, out["has_more"], last)
			}
			after = "&after=" + last
		}
	})

	t.Run("Deliveries", func(t *testing.T) {
		wh := &lull.Webhook{ID: lull.NewID("wh"), Tenant: tenant, URL: "https://example.com/h", Secret: "whsec_x", CreatedAt: start}
		if err := store.CreateWebhook(ctx, wh); err != nil {
			t.Fatal(err)
		}
		seed(t, 120, func(i int) error {
			at := start.Add(time.Duration(i) * time.Millisecond)
			d := &lull.Delivery{ID: lull.NewID("dlv"), WebhookID: wh.ID, Tenant: tenant, EventID: lull.NewID("evt"),
				EventType: lull.EventGenerationCompleted, Status: lull.DeliveryFailed, CreatedAt: at, UpdatedAt: at}
			if _, err := store.CreateDelivery(ctx, d); err != nil {
				return err
			}
			for n := 1; n <= 2; n++ {
				if err := store.AddAttempt(ctx, wh.ID, d.ID, lull.Attempt{N: n, At: at, StatusCode: 500}); err != nil {
					return err
				}
			}
			return nil
		})
		meter.reset()
		out := get("/v1/webhooks/" + wh.ID + "/deliveries?limit=5")
		if n := meter.scanned.Load(); n > 5+1+5*2+5 {
			t.Fatalf("listing 5 deliveries read %d items in %d queries", n, meter.queries.Load())
		}
		data := out["data"].([]any)
		if len(data) != 5 || out["has_more"] != true {
			t.Fatalf("deliveries page: %d items, has_more %v", len(data), out["has_more"])
		}
		if a := data[0].(map[string]any)["attempts"].([]any); len(a) != 2 {
			t.Fatalf("newest delivery lists %d attempts, want 2", len(a))
		}
		seen := map[string]bool{}
		for after, page := "", 0; ; page++ {
			out := get("/v1/webhooks/" + wh.ID + "/deliveries?limit=500" + after)
			data := out["data"].([]any)
			if len(data) > dynamodb.MaxDeliveriesPage {
				t.Fatalf("a deliveries page holds %d, more than %d", len(data), dynamodb.MaxDeliveriesPage)
			}
			for _, d := range data {
				seen[d.(map[string]any)["id"].(string)] = true
			}
			if out["has_more"] != true {
				break
			}
			after = "&after=" + out["last_id"].(string)
			if page > 10 {
				t.Fatal("delivery pagination does not end")
			}
		}
		if len(seen) != 120 {
			t.Fatalf("paging reached %d of 120 deliveries", len(seen))
		}
	})

	t.Run("Files", func(t *testing.T) {
		seed(t, dynamodb.MaxFilesPage+100, func(i int) error {
			return store.CreateFile(ctx, &lull.File{ID: lull.NewID("file"), Tenant: tenant, Purpose: lull.PurposeBatch,
				Filename: fmt.Sprintf("f%d.jsonl", i), Bytes: 1, CreatedAt: start.Add(time.Duration(i) * time.Millisecond), Key: "files/x"})
		})
		meter.reset()
		out := get("/v1/files?limit=10000")
		if n := len(out["data"].([]any)); n > dynamodb.MaxFilesPage || out["has_more"] != true {
			t.Fatalf("one files page holds %d files (has_more %v), want at most %d and more", n, out["has_more"], dynamodb.MaxFilesPage)
		}
		meter.reset()
		out = get("/v1/files?purpose=batch_output")
		if n := meter.scanned.Load(); n > dynamodb.ListBudget+100 {
			t.Fatalf("?purpose= matching nothing read %d items", n)
		}
		if out["has_more"] != true || out["last_id"] == nil {
			t.Fatalf("a bounded files page that goes on: has_more %v, last_id %v", out["has_more"], out["last_id"])
		}
	})
}
