package batchjob_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lull-ai/lull/lambdas/batch/batchjob"
	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/s3"
	"github.com/lull-ai/lull/shared/sqs"
)

// splitEnv is a validating batch of n chat lines for model "m" in a fresh
// table and bucket, with its request and batch queues.
type splitEnv struct {
	store *dynamodb.Store
	q     *sqs.Queue // the request queue of model "m"
	b     *lull.Batch
	h     *batchjob.Handler
	now   time.Time
}

func newSplitEnv(t *testing.T, prefix string, n, chunk int) *splitEnv {
	t.Helper()
	ctx := context.Background()
	store, be := emutest.Table(t, prefix)
	bucket := prefix + "-" + lull.NewID("b")[2:12]
	if err := s3.CreateBucket(ctx, be.Clients.S3, bucket); err != nil {
		t.Fatal(err)
	}
	blobs := s3.New(be.Clients.S3, bucket)
	queue := func(name string) *sqs.Queue {
		url, _, err := sqs.CreateQueue(ctx, be.Clients.SQS, name+"-"+lull.NewID("q")[2:], time.Minute, 0)
		if err != nil {
			t.Fatal(err)
		}
		return sqs.New(be.Clients.SQS, url)
	}
	q, batchQ := queue(prefix), queue(prefix+"-b")
	var file bytes.Buffer
	for i := range n {
		fmt.Fprintf(&file, `{"custom_id":"c%d","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"line %d"}]}}`+"\n", i, i)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	f := &lull.File{ID: lull.NewID("file"), Tenant: "t", Purpose: lull.PurposeBatch, CreatedAt: now, Key: "files/t/" + prefix + ".jsonl", Bytes: int64(file.Len())}
	if err := blobs.Put(ctx, f.Key, file.Bytes(), "application/jsonl"); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateFile(ctx, f); err != nil {
		t.Fatal(err)
	}
	b := &lull.Batch{ID: lull.NewID("batch"), Tenant: "t", Endpoint: lull.EndpointChat, InputFileID: f.ID, CompletionWindow: "24h",
		Status: lull.BatchValidating, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := store.CreateBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
	h, err := batchjob.New(batchjob.Config{
		Batches: store, Generations: store, BatchQueue: batchQ, Logger: slog.New(slog.DiscardHandler),
		Blobs: blobs, Queues: map[string]lull.BatchSender{"m": q}, Chunk: chunk,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &splitEnv{store: store, q: q, b: b, h: h, now: now}
}

// TestSplitResumesWithoutOverwriting: a split job that crashed mid-chunk is
// run again. Lines stored before the crash, one already completed by a
// worker, are kept as they are; every line ends up stored and enqueued
// once per run that reached it; the batch records that the split is done.
func TestSplitResumesWithoutOverwriting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n, chunk = 23, 5
	e := newSplitEnv(t, "split", n, chunk)
	store, b, now := e.store, e.b, e.now
	total := n
	if _, err := store.UpdateBatch(ctx, b.ID, []lull.BatchStatus{lull.BatchValidating},
		lull.BatchChange{Status: lull.BatchInProgress, At: now, Total: &total}); err != nil {
		t.Fatal(err)
	}
	// The crashed run: chunks 0 and 1 recorded (10 lines), chunk 2 half
	// stored, and its line 11 already run to completion by a worker.
	if err := store.SetSplitProgress(ctx, b.ID, 2*chunk, false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 13; i++ {
		g := &lull.Generation{ID: lull.LineID(b.ID, i), Tenant: "t", Model: "m", Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
			CreatedAt: now, ExpiresAt: b.ExpiresAt, BatchID: b.ID, CustomID: fmt.Sprintf("c%d", i), Line: i, Request: []byte(`{}`)}
		if _, _, err := store.Create(ctx, g, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Start(ctx, lull.LineID(b.ID, 11), "w", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Finish(ctx, lull.LineID(b.ID, 11), lull.StatusCompleted, lull.Outcome{At: now, ResponseKey: "outputs/x"}); err != nil {
		t.Fatal(err)
	}

	q, h := e.q, e.h
	if err := h.Run(ctx, lull.BatchJob{Kind: lull.BatchJobSplit, BatchID: b.ID, Tenant: "t"}); err != nil {
		t.Fatal(err)
	}
	got, err := store.GetBatch(ctx, b.ID)
	if err != nil || got.Created != n || !got.SplitDone || got.Status != lull.BatchInProgress {
		t.Fatalf("batch after resume = %+v, %v", got, err)
	}
	done, err := store.Get(ctx, lull.LineID(b.ID, 11))
	if err != nil || done.Status != lull.StatusCompleted || done.ResponseKey != "outputs/x" {
		t.Fatalf("the completed line was overwritten: %+v, %v", done, err)
	}
	for i := range n {
		g, err := store.Get(ctx, lull.LineID(b.ID, i))
		if err != nil || g.CustomID != fmt.Sprintf("c%d", i) || g.Line != i {
			t.Fatalf("line %d = %+v, %v", i, g, err)
		}
	}
	if v, fl, err := q.Depth(ctx); err != nil || v+fl != n-2*chunk {
		t.Fatalf("resumed run enqueued %d jobs (err %v), want %d: the lines after the checkpoint", v+fl, err, n-2*chunk)
	}
}

// TestDuplicateSplitJobs: two deliveries of one split job run at once.
// Exactly one stores and enqueues the lines; the other finds the batch
// validated and the split claimed (or done) and stores nothing.
func TestDuplicateSplitJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n = 60
	e := newSplitEnv(t, "dupsplit", n, 7)
	store, q, b, h := e.store, e.q, e.b, e.h
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- h.Run(ctx, lull.BatchJob{Kind: lull.BatchJobSplit, BatchID: b.ID, Tenant: "t"}) }()
	}
	failed := 0
	for range 2 {
		if err := <-errs; err != nil {
			if !lull.IsConflict(err) {
				t.Fatalf("duplicate run: %v, want nil or a conflict", err)
			}
			failed++
		}
	}
	if failed == 2 {
		t.Fatal("both runs failed")
	}
	got, err := store.GetBatch(ctx, b.ID)
	if err != nil || got.Status != lull.BatchInProgress || got.Total != n || got.Created != n || !got.SplitDone {
		t.Fatalf("batch = %+v, %v", got, err)
	}
	if v, fl, err := q.Depth(ctx); err != nil || v+fl != n {
		t.Fatalf("%d jobs enqueued (err %v), want %d: one run stored the lines", v+fl, err, n)
	}
	// The failed duplicate, retried later, finds nothing to do.
	if err := h.Run(ctx, lull.BatchJob{Kind: lull.BatchJobSplit, BatchID: b.ID, Tenant: "t"}); err != nil {
		t.Fatalf("retried duplicate: %v", err)
	}
	if v, fl, _ := q.Depth(ctx); v+fl != n {
		t.Fatalf("the retried duplicate enqueued again: %d", v+fl)
	}
}

// laggingLines lists a batch's lines as an index that lags the table does:
// the lines in stale show the status they had before they ended.
type laggingLines struct {
	batchjob.Store
	stale map[string]lull.Status
}

func (l *laggingLines) Lines(ctx context.Context, batchID, cursor string, limit int) ([]*lull.Generation, string, error) {
	lines, next, err := l.Store.Lines(ctx, batchID, cursor, limit)
	for i, g := range lines {
		if st, ok := l.stale[g.ID]; ok {
			old := *g
			old.Status, old.ResponseKey, old.CompletedAt = st, "", time.Time{}
			lines[i] = &old
		}
	}
	return lines, next, err
}

// TestFinalizeRereadsLaggingLines: every line completed and was counted,
// but the index finalize lists lines from still shows some as running or
// queued. Finalize must read those again (strongly consistent) and write
// every line to the output file; the counts and the files agree.
func TestFinalizeRereadsLaggingLines(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n = 12
	e := newSplitEnv(t, "lag", n, 5)
	store, b, h := e.store, e.b, e.h
	if err := h.Run(ctx, lull.BatchJob{Kind: lull.BatchJobSplit, BatchID: b.ID, Tenant: "t"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i := range n {
		id := lull.LineID(b.ID, i)
		if _, err := store.Start(ctx, id, "w", now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("outputs/t/%s/1.json", id)
		if err := h.Blobs.Put(ctx, key, []byte(`{"id":"chatcmpl-`+fmt.Sprint(i)+`"}`), "application/json"); err != nil {
			t.Fatal(err)
		}
		g, err := store.Finish(ctx, id, lull.StatusCompleted, lull.Outcome{At: now, ResponseKey: key})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := store.CountLine(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	h.Batches = &laggingLines{Store: store, stale: map[string]lull.Status{
		lull.LineID(b.ID, 3): lull.StatusInProgress, lull.LineID(b.ID, 7): lull.StatusQueued,
	}}
	if err := h.Run(ctx, lull.BatchJob{Kind: lull.BatchJobFinalize, BatchID: b.ID, Tenant: "t"}); err != nil {
		t.Fatal(err)
	}
	got, err := store.GetBatch(ctx, b.ID)
	if err != nil || got.Status != lull.BatchCompleted || got.Completed != n || got.Failed != 0 || got.ErrorFileID != "" {
		t.Fatalf("batch = %+v, %v", got, err)
	}
	f, err := store.GetFile(ctx, got.OutputFileID)
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Blobs.Get(ctx, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	if lines := bytes.Count(out, []byte("\n")); lines != n {
		t.Fatalf("output file has %d lines, want %d:\n%s", lines, n, out)
	}
}

// failingLines fails CreateLines until told otherwise.
type failingLines struct {
	batchjob.Store
	fail atomic.Bool
}

func (f *failingLines) CreateLines(ctx context.Context, lines []*lull.Generation) error {
	if f.fail.Load() {
		return lull.Errorf(lull.EUNAVAILABLE, "throttled")
	}
	return f.Store.CreateLines(ctx, lines)
}

// TestFailedSplitRetriesAtOnce: a split run that fails (DynamoDB
// throttling) gives its claim up, so SQS's redelivery of the job resumes
// the split instead of being dropped as a duplicate of a run that is gone.
func TestFailedSplitRetriesAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const n = 30
	e := newSplitEnv(t, "splitfail", n, 10)
	store, q, b, h := e.store, e.q, e.b, e.h
	flaky := &failingLines{Store: store}
	h.Batches = flaky
	job := lull.BatchJob{Kind: lull.BatchJobSplit, BatchID: b.ID, Tenant: "t"}
	// The first chunk is stored line by line (Create), later ones in
	// batches (CreateLines), which fail.
	flaky.fail.Store(true)
	if err := h.Run(ctx, job); err == nil {
		t.Fatal("a split whose writes fail succeeded")
	}
	flaky.fail.Store(false)
	if err := h.Run(ctx, job); err != nil { // the redelivery
		t.Fatal(err)
	}
	got, err := store.GetBatch(ctx, b.ID)
	if err != nil || !got.SplitDone || got.Created != n {
		t.Fatalf("after the redelivery: %+v, %v", got, err)
	}
	if v, fl, err := q.Depth(ctx); err != nil || v+fl < n {
		t.Fatalf("%d jobs enqueued (err %v), want every line", v+fl, err)
	}
}
