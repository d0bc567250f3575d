package delivery_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lull-ai/lull/lambdas/webhooks/delivery"
	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/whsign"
)

// sender is an events queue that keeps what it is sent and can fail.
type sender struct {
	mu    sync.Mutex
	sent  [][]byte
	fails int // the next fails sends fail
}

func (s *sender) Send(_ context.Context, body []byte, _ string, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fails > 0 {
		s.fails--
		return errors.New("sqs: send: connection reset")
	}
	s.sent = append(s.sent, body)
	return nil
}

// take returns and forgets what was sent.
func (s *sender) take() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sent
	s.sent = nil
	return out
}

type env struct {
	store *dynamodb.Store
	blobs *s3.Blobs
	hook  *lull.Webhook
	q     *sender
	h     *delivery.Handler
	posts atomic.Int64
	// skew moves the handler's clock forward.
	skew atomic.Int64
	// status answers each POST.
	status atomic.Int64
	bodies chan []byte
}

func newEnv(t *testing.T, prefix string) *env {
	t.Helper()
	ctx := context.Background()
	store, b := emutest.Table(t, prefix)
	bucket := prefix + "-" + lull.NewID("b")[2:12]
	if err := s3.CreateBucket(ctx, b.Clients.S3, bucket); err != nil {
		t.Fatal(err)
	}
	e := &env{store: store, blobs: s3.New(b.Clients.S3, bucket), q: &sender{}, bodies: make(chan []byte, 100)}
	e.status.Store(http.StatusNoContent)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.posts.Add(1)
		body, _ := io.ReadAll(r.Body)
		e.bodies <- body
		w.WriteHeader(int(e.status.Load()))
	}))
	t.Cleanup(srv.Close)
	e.hook = &lull.Webhook{ID: lull.NewID("wh"), Tenant: "t", URL: srv.URL, Secret: whsign.NewSecret(), CreatedAt: time.Now().UTC()}
	if err := store.CreateWebhook(ctx, e.hook); err != nil {
		t.Fatal(err)
	}
	h, err := delivery.New(delivery.Config{Webhooks: store, Generations: store, Blobs: e.blobs, Events: e.q, Client: srv.Client(),
		Logger: slog.New(slog.DiscardHandler), TimeScale: 0.001, PublicURL: "https://api.example",
		Now: func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	return e
}

// finished stores a generation that ended completed with response body.
func (e *env) finished(t *testing.T, response []byte, recordSize bool) *lull.Generation {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Model: "m", Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), Request: json.RawMessage(`{"model":"m"}`)}
	if _, _, err := e.store.Create(ctx, g, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Start(ctx, g.ID, "w", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	key := "outputs/t/" + g.ID + "/1.json"
	if err := e.blobs.Put(ctx, key, response, "application/json"); err != nil {
		t.Fatal(err)
	}
	o := lull.Outcome{At: now, ResponseKey: key}
	if recordSize {
		o.ResponseBytes = int64(len(response))
	}
	done, err := e.store.Finish(ctx, g.ID, lull.StatusCompleted, o)
	if err != nil {
		t.Fatal(err)
	}
	return done
}

func (e *env) handle(t *testing.T, bodies ...[]byte) events.SQSEventResponse {
	t.Helper()
	var ev events.SQSEvent
	for i, b := range bodies {
		ev.Records = append(ev.Records, events.SQSMessage{MessageId: string(rune('a' + i)), Body: string(b)})
	}
	resp, err := e.h.Handle(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestRetryChainResumesAfterLostSchedule: attempt 2 of a delivery fails at
// the endpoint and is recorded, but scheduling attempt 3 fails (SQS is
// down, or the Lambda dies right there). The task of attempt 2 is
// redelivered: it must schedule attempt 3, not drop itself because
// attempt 2 is recorded — which left the delivery pending for ever.
func TestRetryChainResumesAfterLostSchedule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "whresume")
	g := e.finished(t, []byte(`{"id":"chatcmpl-1","choices":[]}`), true)
	ev, _ := json.Marshal(lull.EventFor(g))

	e.status.Store(http.StatusInternalServerError)
	if resp := e.handle(t, ev); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("attempt 1: %+v", resp)
	}
	next := e.q.take()
	if len(next) != 1 || !strings.Contains(string(next[0]), `"attempt":2`) {
		t.Fatalf("after attempt 1, scheduled %q", next)
	}
	// Attempt 2 (now due) fails too, and so does scheduling attempt 3.
	e.skew.Store(int64(time.Hour))
	e.q.fails = 1
	if resp := e.handle(t, next[0]); len(resp.BatchItemFailures) != 1 {
		t.Fatalf("attempt 2 with a failing queue: %+v, want the task back for a retry", resp)
	}
	if got := e.q.take(); len(got) != 0 {
		t.Fatalf("scheduled %q", got)
	}
	// SQS redelivers the task of attempt 2.
	if resp := e.handle(t, next[0]); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("redelivered attempt 2: %+v", resp)
	}
	third := e.q.take()
	if len(third) != 1 || !strings.Contains(string(third[0]), `"attempt":3`) {
		t.Fatalf("the redelivered task of attempt 2 scheduled %q; the delivery would stay pending for ever", third)
	}
	if e.posts.Load() != 2 {
		t.Fatalf("%d POSTs, want 2: the recorded attempt is not made again", e.posts.Load())
	}
	e.status.Store(http.StatusNoContent)
	e.skew.Store(int64(2 * time.Hour)) // attempt 3 is due
	if resp := e.handle(t, third[0]); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("attempt 3: %+v", resp)
	}
	ds, _, err := e.store.ListDeliveries(ctx, e.hook.ID, "", 10)
	if err != nil || len(ds) != 1 || ds[0].Status != lull.DeliverySucceeded || len(ds[0].Attempts) != 3 {
		t.Fatalf("deliveries %+v, %v", ds, err)
	}
}

// blobCounter counts the bytes read from one key.
type blobCounter struct {
	lull.Blobs
	key  string
	read atomic.Int64
}

func (b *blobCounter) Get(ctx context.Context, key string) ([]byte, error) {
	body, err := b.Blobs.Get(ctx, key)
	if key == b.key {
		b.read.Add(int64(len(body)))
	}
	return body, err
}

func (b *blobCounter) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	r, err := b.Blobs.Open(ctx, key)
	if err != nil || key != b.key {
		return r, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.TeeReader(r, writerFunc(func(p []byte) { b.read.Add(int64(len(p))) })), r}, nil
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// TestLargeResponseNotLoaded: a response as large as an engine may return
// (here 24 MiB) is delivered as a link, decided from its recorded size
// without loading it; the other event of the same SQS batch is delivered
// whole.
func TestLargeResponseNotLoaded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "whlarge")
	huge := []byte(`{"id":"chatcmpl-big","choices":[{"message":{"content":"` + strings.Repeat("x", 24<<20) + `"}}]}`)
	big := e.finished(t, huge, true)
	small := e.finished(t, []byte(`{"id":"chatcmpl-small","choices":[]}`), true)
	counter := &blobCounter{Blobs: e.blobs, key: big.ResponseKey}
	e.h.Blobs = counter
	evBig, _ := json.Marshal(lull.EventFor(big))
	evSmall, _ := json.Marshal(lull.EventFor(small))
	if resp := e.handle(t, evBig, evSmall); len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle: %+v", resp)
	}
	if n := counter.read.Load(); n > 0 {
		t.Fatalf("read %d bytes of the large response to build its webhook", n)
	}
	got := map[string]map[string]any{}
	for range 2 {
		var p struct{ Data map[string]any }
		if err := json.Unmarshal(<-e.bodies, &p); err != nil {
			t.Fatal(err)
		}
		got[p.Data["id"].(string)] = p.Data
	}
	if got[big.ID]["response_url"] != "https://api.example/v1/generation/"+big.ID || got[big.ID]["response"] != nil {
		t.Fatalf("large payload: %v", got[big.ID])
	}
	if resp, _ := got[small.ID]["response"].(map[string]any); resp["id"] != "chatcmpl-small" {
		t.Fatalf("small payload: %v", got[small.ID])
	}
}
