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
	// The worker gave its lease up when it released the job after the
	// engine failed (TestLiveLeaseRequeued covers a live lease).
	if _, err := store.Start(ctx, running.ID, "w", now, now); err != nil {
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
	legacy := mk() // a job sent before message_kind
	resp, err := h.Handle(ctx, events.SQSEvent{Records: []events.SQSMessage{
		record("1", job(running)), record("2", job(done)), record("3", "not json"),
		record("4", fmt.Sprintf(`{"generation_id":%q,"tenant":"t","model":"m","endpoint":"/v1/chat/completions"}`, legacy.ID)),
		record("5", `{"message_kind":"no-such-kind","generation_id":"gen_x"}`),
	}})
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %+v, %v", resp, err)
	}
	g, _ := store.Get(ctx, running.ID)
	if g.Status != lull.StatusFailed || g.Failure == nil || g.Failure.Code != "engine_error" || !strings.Contains(g.Failure.Message, "503: overloaded") {
		t.Fatalf("running generation after DLQ: %+v", g)
	}
	if g, _ := store.Get(ctx, legacy.ID); g.Status != lull.StatusFailed {
		t.Fatalf("legacy job's generation after DLQ: %s", g.Status)
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
// batch (which is announced) unless the batch already ended; the job is
// told from a generation's by its declared kind, and one sent before kinds
// were declared is still understood.
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
	stuck, stuckLegacy, ended := mk(lull.BatchValidating), mk(lull.BatchInProgress), mk(lull.BatchCompleted)
	job := func(b *lull.Batch) string {
		body, _ := json.Marshal(lull.BatchJobFor(lull.BatchJobSplit, b))
		return string(body)
	}
	legacyJob := func(b *lull.Batch) string { // as sent before message_kind
		return fmt.Sprintf(`{"kind":"finalize","batch_id":%q,"tenant":%q}`, b.ID, b.Tenant)
	}
	h := newHandler(t, deadletter.Config{Generations: store, Batches: store, Events: events, Logger: slog.New(slog.DiscardHandler)})
	resp, err := h.Handle(ctx, eventsOf(job(stuck), legacyJob(stuckLegacy), job(ended)))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %+v, %v", resp, err)
	}
	for _, s := range []*lull.Batch{stuck, stuckLegacy} {
		if b, _ := store.GetBatch(ctx, s.ID); b.Status != lull.BatchFailed || len(b.Errors) != 1 || b.Errors[0].Code != "internal_error" || b.FailedAt.IsZero() {
			t.Fatalf("stuck batch after DLQ: %+v", b)
		}
	}
	if b, _ := store.GetBatch(ctx, ended.ID); b.Status != lull.BatchCompleted {
		t.Fatalf("ended batch changed to %s", b.Status)
	}
	var msgs []lull.Message
	for len(msgs) < 2 {
		got, err := events.Receive(ctx, 10, time.Second, time.Minute)
		if err != nil || len(got) == 0 {
			t.Fatalf("events sent: %v and then %v, %v", msgs, got, err)
		}
		msgs = append(msgs, got...)
	}
	for _, m := range msgs {
		if !strings.Contains(string(m.Body), `"type":"batch.failed"`) {
			t.Fatalf("event sent: %s", m.Body)
		}
	}
	if extra, _ := events.Receive(ctx, 10, 0, time.Minute); len(extra) != 0 {
		t.Fatalf("more events than the two failed batches: %v", extra)
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

// TestNewNamesMissingDependencies: a handler without its store or logger
// fails at start-up, naming each missing field.
func TestNewNamesMissingDependencies(t *testing.T) {
	t.Parallel()
	_, err := deadletter.New(deadletter.Config{})
	for _, want := range []string{"Generations", "Logger"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(empty) = %v; want an error naming %s", err, want)
		}
	}
}

// TestLiveLeaseRequeued: the dead letter of a generation a worker is running
// under a live lease (a duplicate job, or the holder's own message back too
// often) must not fail it: the job goes back to its request queue, delayed
// until the lease would lapse, and the generation keeps running.
func TestLiveLeaseRequeued(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, be := emutest.Table(t, "dlqlease")
	qurl, _, err := sqs.CreateQueue(ctx, be.Clients.SQS, "dlqlease-"+lull.NewID("q")[2:], time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	requests := sqs.New(be.Clients.SQS, qurl)
	now := time.Now().UTC().Truncate(time.Millisecond)
	g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Model: "m", Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), Request: json.RawMessage(`{}`)}
	if _, _, err := store.Create(ctx, g, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Start(ctx, g.ID, "w1", now, now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	job, _ := json.Marshal(lull.JobFor(g))
	h := newHandler(t, deadletter.Config{Generations: store, Queues: map[string]lull.Sender{"m": requests},
		Logger: slog.New(slog.DiscardHandler)})
	resp, err := h.Handle(ctx, eventsOf(string(job)))
	if err != nil || len(resp.BatchItemFailures) != 0 {
		t.Fatalf("Handle = %+v, %v", resp, err)
	}
	if got, _ := store.Get(ctx, g.ID); got.Status != lull.StatusInProgress {
		t.Fatalf("a generation under a live lease became %s", got.Status)
	}
	// Delayed until the lease lapses (SQS delays are whole seconds).
	if msgs, err := requests.Receive(ctx, 10, 0, time.Minute); err != nil || len(msgs) != 0 {
		t.Fatalf("re-queued job visible at once: %d, %v", len(msgs), err)
	}
	msgs, err := requests.Receive(ctx, 10, 5*time.Second, time.Minute)
	if err != nil || len(msgs) != 1 || string(msgs[0].Body) != string(job) {
		t.Fatalf("re-queued job: %v, %v", msgs, err)
	}
}

// TestDeadEventsRedriven: an event that exhausted its receives on the
// events queue (its handling kept failing) is sent back to the events queue,
// delayed, up to EventRedrives times, then dropped — it is not mistaken for
// a job (which would fail its generation) nor left without a consumer.
func TestDeadEventsRedriven(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, be := emutest.Table(t, "dlqev")
	qurl, _, err := sqs.CreateQueue(ctx, be.Clients.SQS, "dlqev-"+lull.NewID("q")[2:], time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	evq := sqs.New(be.Clients.SQS, qurl)
	now := time.Now().UTC().Truncate(time.Millisecond)
	g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Model: "m", Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), Request: json.RawMessage(`{}`)}
	if _, _, err := store.Create(ctx, g, ""); err != nil {
		t.Fatal(err)
	}
	// A scheduled webhook retry of a generation still queued (e.g. a
	// re-sent event overtaking its write), as the events queue carries it.
	body := `{"id":"evt_x_completed","type":"generation.completed","tenant":"t","generation_id":"` + g.ID +
		`","created_at":"2026-01-01T00:00:00Z","delivery_id":"dlv_x","attempt":3}`
	h := newHandler(t, deadletter.Config{Generations: store, Events: evq, EventRedrives: 2, EventRedriveDelay: time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	for want := 1; want <= 3; want++ {
		resp, err := h.Handle(ctx, eventsOf(body))
		if err != nil || len(resp.BatchItemFailures) != 0 {
			t.Fatalf("Handle = %+v, %v", resp, err)
		}
		msgs, err := evq.Receive(ctx, 10, 3*time.Second, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if want == 3 {
			if len(msgs) != 0 {
				t.Fatalf("redriven a third time: %s", msgs[0].Body)
			}
			break
		}
		if len(msgs) != 1 || !strings.Contains(string(msgs[0].Body), `"delivery_id":"dlv_x"`) ||
			!strings.Contains(string(msgs[0].Body), `"dlq_redrives":`+string(rune('0'+want))) {
			t.Fatalf("redrive %d: %v", want, msgs)
		}
		body = string(msgs[0].Body)
	}
	if got, _ := store.Get(ctx, g.ID); got.Status != lull.StatusQueued {
		t.Fatalf("the event's generation became %s", got.Status)
	}
}
