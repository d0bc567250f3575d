package httpapi_test

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

	"github.com/lull-ai/lull/lambdas/api/httpapi"
	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/sqs"
)

// TestLargeOutputsRedirect: a Lambda response carries at most 6 MB after
// API Gateway's encoding. GET /v1/generation/{id} of a generation whose
// response is larger than fits answers a redirect to a presigned copy of
// the same object (decided from the recorded size, or by reading at most
// the limit when none was recorded), and file content of 3.5 MiB — 4.7 MB
// once base64-encoded — is a redirect too, with the default limits.
func TestLargeOutputsRedirect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, b := emutest.Table(t, "apilarge")
	bucket := "apilarge-" + lull.NewID("b")[2:12]
	if err := s3.CreateBucket(ctx, b.Clients.S3, bucket); err != nil {
		t.Fatal(err)
	}
	blobs := s3.New(b.Clients.S3, bucket)
	qurl, _, err := sqs.CreateQueue(ctx, b.Clients.SQS, "apilarge-"+lull.NewID("q")[2:], 30*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	q := sqs.New(b.Clients.SQS, qurl)
	srv, err := httpapi.New(httpapi.Config{Generations: store, Keys: store, Blobs: blobs, Queues: map[string]lull.Sender{model: q},
		Logger: slog.New(slog.DiscardHandler), Batches: store, Files: store, Uploads: store, BatchQueue: q})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	if err := store.PutKey(ctx, lull.HashKey("sk-a"), "tenant-a"); err != nil {
		t.Fatal(err)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer sk-a")
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	follow := func(resp *http.Response) []byte {
		t.Helper()
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			n, _ := io.Copy(io.Discard, resp.Body)
			t.Fatalf("status %d with a %d-byte body, want 302", resp.StatusCode, n)
		}
		r2, err := http.Get(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		defer r2.Body.Close()
		body, _ := io.ReadAll(r2.Body)
		return body
	}

	content := strings.Repeat("y", 3<<20)
	response := `{"id":"chatcmpl-large","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"` + content + `"}}]}`
	for _, recorded := range []bool{true, false} {
		now := time.Now().UTC().Truncate(time.Millisecond)
		g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "tenant-a", Model: model, Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour), Request: json.RawMessage(`{"model":"test-model"}`)}
		if _, _, err := store.Create(ctx, g, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Start(ctx, g.ID, "w", now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		key := "outputs/tenant-a/" + g.ID + "/1.json"
		if err := blobs.Put(ctx, key, []byte(response), "application/json"); err != nil {
			t.Fatal(err)
		}
		o := lull.Outcome{At: now, ResponseKey: key}
		if recorded {
			o.ResponseBytes = int64(len(response))
		}
		if _, err := store.Finish(ctx, g.ID, lull.StatusCompleted, o); err != nil {
			t.Fatal(err)
		}
		var v struct {
			ID, Status string
			Request    map[string]any
			Response   struct {
				ID      string
				Choices []struct{ Message struct{ Content string } }
			}
		}
		if err := json.Unmarshal(follow(get("/v1/generation/"+g.ID)), &v); err != nil {
			t.Fatal(err)
		}
		if v.ID != g.ID || v.Status != "completed" || v.Request["model"] != model || v.Response.ID != "chatcmpl-large" ||
			len(v.Response.Choices) != 1 || v.Response.Choices[0].Message.Content != content {
			t.Fatalf("redirected view (size recorded %v): id %q status %q response %q", recorded, v.ID, v.Status, v.Response.ID)
		}
	}

	now := time.Now().UTC()
	f := &lull.File{ID: lull.NewID("file"), Tenant: "tenant-a", Purpose: lull.PurposeBatchOutput, Filename: "out.jsonl",
		Bytes: 7 << 19, CreatedAt: now, Key: "outputs/tenant-a/big.jsonl"}
	if err := blobs.Put(ctx, f.Key, []byte(strings.Repeat("z", 7<<19)), "application/jsonl"); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateFile(ctx, f); err != nil {
		t.Fatal(err)
	}
	if body := follow(get("/v1/files/" + f.ID + "/content")); len(body) != 7<<19 {
		t.Fatalf("file content: %d bytes", len(body))
	}
}
