package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	openai "github.com/openai/openai-go/v3"

	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/sqs"
)

// The tests of this file each hold one guarantee under a fault the chaos
// harness (localstack/chaos) met; each fails without its fix.

// TestEngineStallIsRetried: an engine that stalls past the worker's timeout
// is a transient failure — the job is tried again and completes — never a
// rejection that ends the generation failed with invalid_request.
func TestEngineStallIsRetried(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	var calls atomic.Int64
	stalling := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "completions") && calls.Add(1) == 1 {
			_, _ = io.Copy(io.Discard, r.Body) // (the server notices a client gone once the body is read)
			<-r.Context().Done()               // no answer until the worker gives up
			return
		}
		eng.ServeHTTP(w, r)
	}))
	t.Cleanup(stalling.Close)
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: stalling.URL})
	if _, err := st.StartWorker(t.Context(), func(c *worker.Config) { c.RequestTimeout = 300 * time.Millisecond }); err != nil {
		t.Fatal(err)
	}
	id := submit(t, st.URL, "sk-lull-dev", "stall once")
	g := waitTerminal(t, st, "sk-lull-dev", []string{id}, 30*time.Second)[id]
	if g.Status != "completed" {
		t.Fatalf("after an engine stall: %s %+v, want completed on a retry", g.Status, g.Error)
	}
	if calls.Load() < 2 {
		t.Fatalf("engine called %d times, want a retry", calls.Load())
	}
}

// lostFinish is a store whose Finish takes effect but answers a conflict,
// as an SDK retry does after the first attempt's answer was lost (the retry
// finds the generation already terminal).
type lostFinish struct {
	lull.Generations
	lost atomic.Int64
}

func (s *lostFinish) Finish(ctx context.Context, id string, to lull.Status, o lull.Outcome) (*lull.Generation, error) {
	if _, err := s.Generations.Finish(ctx, id, to, o); err != nil {
		return nil, err
	}
	s.lost.Add(1)
	return nil, lull.Errorf(lull.ECONFLICT, "generation %s cannot become %s from its current status", id, to)
}

// TestLostFinishAnswerIsAnnounced: the worker's terminal write took effect
// but its answer was lost; the worker sees a conflict. The completion must
// still be announced (a webhook arrives), not acknowledged silently.
func TestLostFinishAnswerIsAnnounced(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	// No sweep during the test: the worker itself must announce.
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: eng.URL(), SweepEvery: time.Hour})
	rc := newReceiver(t)
	wh := register(t, st, "sk-lull-dev", rc.srv.URL+"/hook")
	rc.mu.Lock()
	rc.secret = wh.Secret
	rc.mu.Unlock()
	cfg := st.WorkerConfig()
	store := &lostFinish{Generations: st.Store}
	w, err := worker.New(cfg, worker.Deps{
		Generations: store, Queue: sqs.New(st.Clients.SQS, cfg.QueueURL), Events: sqs.New(st.Clients.SQS, cfg.EventsQueueURL),
		Blobs: st.Blobs, Engine: worker.NewEngine(cfg),
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = w.Run(t.Context()) }()
	id := submit(t, st.URL, "sk-lull-dev", "answer lost")
	if g := waitTerminal(t, st, "sk-lull-dev", []string{id}, 30*time.Second)[id]; g.Status != "completed" {
		t.Fatalf("status %s", g.Status)
	}
	waitFor(t, 20*time.Second, "the completion's webhook", func() bool { return rc.count() == 1 })
	if store.lost.Load() != 1 {
		t.Fatalf("%d lost answers, want 1", store.lost.Load())
	}
}

// TestDuplicateJobsDoNotFailRunningGeneration: duplicate job messages of a
// generation a worker is running (a sweeper re-send, an SDK retry of
// SendMessage) come back to the other worker again and again while the
// generation runs. They must never reach the DLQ and fail it: it completes.
func TestDuplicateJobsDoNotFailRunningGeneration(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{Workers: 2, VLLMURL: eng.URL(), MaxReceives: 2, Visibility: 10 * time.Second})
	eng.setDelay(28 * time.Second) // longer than MaxReceives × the lease
	id := submit(t, st.URL, "sk-lull-dev", "long and duplicated")
	waitFor(t, 10*time.Second, "the generation running", func() bool {
		g, err := st.Store.Get(context.Background(), id)
		return err == nil && g.Status == lull.StatusInProgress
	})
	g, err := st.Store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	job, _ := json.Marshal(lull.JobFor(g))
	for range 2 {
		if err := sqs.New(st.Clients.SQS, st.QueueURL).Send(context.Background(), job, g.Tenant, 0); err != nil {
			t.Fatal(err)
		}
	}
	got := waitTerminal(t, st, "sk-lull-dev", []string{id}, 90*time.Second)[id]
	if got.Status != "completed" {
		t.Fatalf("a running generation with duplicate jobs ended %s: %+v", got.Status, got.Error)
	}
}

// TestBatchLineCancelledThroughGenerationAPI: a batch line cancelled on its
// own (POST /v1/generation/{id}/cancel) is counted, so its batch still
// ends, with that line in the error file.
func TestBatchLineCancelledThroughGenerationAPI(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: -1})
	c := sdk(st, "sk-lull-dev")
	ctx := context.Background()
	lines, data := batchFile("linecancel", 5)
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(data), "l.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the lines stored", func() bool {
		cur, err := st.Store.GetBatch(ctx, b.ID)
		return err == nil && cur.SplitDone
	})
	line := lull.LineID(b.ID, 2)
	if code := postJSON(t, st.URL+"/v1/generation/"+line+"/cancel", "sk-lull-dev", "", nil); code != http.StatusOK {
		t.Fatalf("cancel line: %d", code)
	}
	if _, err := st.StartWorker(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	done := waitBatch(t, c, b.ID, 30*time.Second)
	if done.Status != openai.BatchStatusCompleted || done.RequestCounts.Completed != 4 || done.RequestCounts.Failed != 1 {
		t.Fatalf("batch %s", done.RawJSON())
	}
	if codes := checkOutputs(t, lines, download(t, c, done.OutputFileID), download(t, c, done.ErrorFileID)); codes["batch_cancelled"] != 1 {
		t.Fatalf("error codes %v", codes)
	}
}

// TestBatchWithoutSplitJobRuns: the API stored a batch and died before
// queueing its split job (no Idempotency-Key, so no client retry finds
// it). The sweeper re-derives what the batch needs and it completes.
func TestBatchWithoutSplitJobRuns(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{SweepEvery: 200 * time.Millisecond, BatchQuiet: time.Second})
	c := sdk(st, "sk-lull-dev")
	ctx := context.Background()
	lines, data := batchFile("nosplit", 6)
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(data), "n.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	b := &lull.Batch{ID: lull.NewID("batch"), Tenant: "dev", Endpoint: lull.EndpointChat, InputFileID: f.ID, CompletionWindow: "24h",
		Status: lull.BatchValidating, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	if err := st.Store.CreateBatch(ctx, b); err != nil { // and no split job
		t.Fatal(err)
	}
	done := waitBatch(t, c, b.ID, time.Minute)
	if done.Status != openai.BatchStatusCompleted || done.RequestCounts.Completed != 6 {
		t.Fatalf("batch %s", done.RawJSON())
	}
	checkOutputs(t, lines, download(t, c, done.OutputFileID), nil)
}

// TestBatchLineEventLostIsCounted: a line's event never reached the counter
// (it landed in the events DLQ, or its sender died); the sweeper counts the
// line from its stored state and the batch ends.
func TestBatchLineEventLostIsCounted(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{Workers: -1, SweepEvery: 200 * time.Millisecond, BatchQuiet: time.Second})
	c := sdk(st, "sk-lull-dev")
	ctx := context.Background()
	lines, data := batchFile("lostevent", 3)
	f, err := c.Files.New(ctx, openai.FileNewParams{File: openai.File(bytes.NewReader(data), "e.jsonl", "application/jsonl"), Purpose: openai.FilePurposeBatch})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Batches.New(ctx, openai.BatchNewParams{InputFileID: f.ID, Endpoint: openai.BatchNewParamsEndpointV1ChatCompletions, CompletionWindow: openai.BatchNewParamsCompletionWindow24h})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the lines stored", func() bool {
		cur, err := st.Store.GetBatch(ctx, b.ID)
		return err == nil && cur.SplitDone
	})
	// A worker without an events queue: it completes the lines and
	// announces nothing, as if every event were lost.
	cfg := st.WorkerConfig()
	w, err := worker.New(cfg, worker.Deps{Generations: st.Store, Queue: sqs.New(st.Clients.SQS, cfg.QueueURL),
		Blobs: st.Blobs, Engine: worker.NewEngine(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = w.Run(t.Context()) }()
	done := waitBatch(t, c, b.ID, time.Minute)
	if done.Status != openai.BatchStatusCompleted || done.RequestCounts.Completed != 3 {
		t.Fatalf("batch %s", done.RawJSON())
	}
	checkOutputs(t, lines, download(t, c, done.OutputFileID), nil)
}
