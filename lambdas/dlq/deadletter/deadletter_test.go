package deadletter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lull-ai/lull/lambdas/dlq/deadletter"
	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/dynamodb"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/sqs"
)

func TestHandle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, b := emutest.Table(t, "dlq")
	now := time.Now().UTC().Truncate(time.Millisecond)
	mk := func() *lull.Generation {
		g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Model: "m", Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour), Request: json.RawMessage(`{}`)}
		if _, _, err := store.Create(ctx, g, ""); err != nil {
			t.Fatal(err)
		}
		return g
	}
	running, done := mk(), mk()
	if _, err := store.Start(ctx, running.ID, "w", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := store.NoteError(ctx, running.ID, "engine answered 503: overloaded"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Finish(ctx, done.ID, lull.StatusCancelled, lull.Outcome{At: now}); err != nil {
		t.Fatal(err)
	}
	record := func(id, body string) events.SQSMessage { return events.SQSMessage{MessageId: id, Body: body} }
	job := func(g *lull.Generation) string { b, _ := json.Marshal(lull.JobFor(g)); return string(b) }

	h := newHandler(t, deadletter.Config{Generations: store, Logger: slog.New(slog.DiscardHandler)})
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{
		record("1", job(running)), record("2", job(done)), record("3", "not json"),
	}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %+v, %v", resp, err)
	}
	g, _ := store.Get(ctx, running.ID)
	if g.Status != lull.StatusFailed || g.Failure == nil || g.Failure.Code != "engine_error" || !strings.Contains(g.Failure.Message, "503: overloaded") {
		t.Fatalf("running generation after DLQ: %+v", g)
	}
	if g, _ := store.Get(ctx, done.ID); g.Status != lull.StatusCancelled {
		t.Fatalf("terminal generation changed to %s", g.Status)
	}

	// A storage failure reports the record for retry instead of dropping it.
	broken := newHandler(t, deadletter.Config{Generations: dynamodb.New(b.Clients.DynamoDB, "no-such-table"), Logger: slog.New(slog.DiscardHandler)})
	resp, err = broken.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{record("9", job(running))}})
	if err != nil || len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "9" {
		t.Fatalf("broken Handle = %+v, %v", resp, err)
	}
}

// TestBatchDeadLetter: a batch job that exhausted its receives fails its
// batch (which is announced) unless the batch already ended.
func TestBatchDeadLetter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, be := emutest.Table(t, "dlqb")
	qurl, _, err := sqs.CreateQueue(ctx, be.Clients.SQS, "dlqb-events-"+lull.NewID("q")[2:], time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	events := sqs.New(be.Clients.SQS, qurl)
	now := time.Now().UTC().Truncate(time.Millisecond)
	mk := func(st lull.BatchStatus) *lull.Batch {
		b := &lull.Batch{ID: lull.NewID("batch"), Tenant: "t", Endpoint: lull.EndpointChat, InputFileID: lull.NewID("file"),
			CompletionWindow: "24h", Status: st, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := store.CreateBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	stuck, ended := mk(lull.BatchValidating), mk(lull.BatchCompleted)
	job := func(b *lull.Batch) string {
		body, _ := json.Marshal(lull.BatchJob{Kind: lull.BatchJobSplit, BatchID: b.ID, Tenant: b.Tenant})
		return string(body)
	}
	h := newHandler(t, deadletter.Config{Generations: store, Batches: store, Events: events, Logger: slog.New(slog.DiscardHandler)})
	resp, err := h.Handle(ctx, eventsOf(job(stuck), job(ended)))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %+v, %v", resp, err)
	}
	if b, _ := store.GetBatch(ctx, stuck.ID); b.Status != lull.BatchFailed || len(b.Errors) != 1 || b.Errors[0].Code != "internal_error" || b.FailedAt.IsZero() {
		t.Fatalf("stuck batch after DLQ: %+v", b)
	}
	if b, _ := store.GetBatch(ctx, ended.ID); b.Status != lull.BatchCompleted {
		t.Fatalf("ended batch changed to %s", b.Status)
	}
	msgs, err := events.Receive(ctx, 10, time.Second, time.Minute)
	if err != nil || len(msgs) != 1 || !strings.Contains(string(msgs[0].Body), `"type":"batch.failed"`) {
		t.Fatalf("events sent: %v, %v", msgs, err)
	}
}

func eventsOf(bodies ...string) events.SQSEvent {
	var ev events.SQSEvent
	for i, b := range bodies {
		ev.Records = append(ev.Records, events.SQSMessage{MessageId: fmt.Sprint(i), Body: b})
	}
	return ev
}

func newHandler(t *testing.T, cfg deadletter.Config) *deadletter.Handler {
	t.Helper()
	h, err := deadletter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
