package sweep_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lull-ai/lull/lambdas/scaler/sweep"
	"github.com/lull-ai/lull/localstack/emutest"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/sqs"
)

func TestSweep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, b := emutest.Table(t, "sweep")
	newQueue := func() *sqs.Queue {
		url, _, err := sqs.CreateQueue(ctx, b.Clients.SQS, "sweep-"+lull.NewID("q")[2:], 30*time.Second, 0)
		if err != nil {
			t.Fatal(err)
		}
		return sqs.New(b.Clients.SQS, url)
	}
	requests, events := newQueue(), newQueue()
	now := time.Now().UTC().Truncate(time.Millisecond)
	gen := func(created, expires time.Time) *lull.Generation {
		g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Model: "m", Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
			CreatedAt: created, ExpiresAt: expires, Request: json.RawMessage(`{}`), WebhookID: "wh_1"}
		if _, _, err := store.Create(ctx, g, ""); err != nil {
			t.Fatal(err)
		}
		return g
	}
	stale := gen(now.Add(-time.Minute), now.Add(time.Hour)) // never enqueued, old enough
	fresh := gen(now.Add(-time.Second), now.Add(time.Hour)) // the API may still be sending it
	expired := gen(now.Add(-2*time.Hour), now.Add(-time.Minute))
	if err := store.MarkEnqueued(ctx, expired.ID); err != nil {
		t.Fatal(err)
	}
	s, err := sweep.New(sweep.Config{Generations: store, Queues: map[string]lull.Sender{"m": requests}, Events: events,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }, Grace: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reenqueued != 1 || res.Expired != 1 {
		t.Fatalf("Sweep = %+v, want 1 re-enqueued and 1 expired", res)
	}
	msgs, err := requests.Receive(ctx, 10, time.Second, 30*time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("request queue: %d messages, %v", len(msgs), err)
	}
	var job lull.Job
	if err := json.Unmarshal(msgs[0].Body, &job); err != nil || job.GenerationID != stale.ID {
		t.Fatalf("re-enqueued %+v, want %s", job, stale.ID)
	}
	g, err := store.Get(ctx, expired.ID)
	if err != nil || g.Status != lull.StatusExpired || g.Failure == nil || g.Failure.Code != "expired" {
		t.Fatalf("expired generation: %+v %v", g, err)
	}
	ev, err := events.Receive(ctx, 10, time.Second, 30*time.Second)
	if err != nil || len(ev) != 1 {
		t.Fatalf("events: %d, %v", len(ev), err)
	}
	var e lull.Event
	if err := json.Unmarshal(ev[0].Body, &e); err != nil || e.Type != lull.EventGenerationExpired || e.GenerationID != expired.ID || e.WebhookID != "wh_1" {
		t.Fatalf("event %+v", e)
	}
	// A second sweep finds nothing new: the stale one is marked enqueued,
	// the expired one is terminal, the fresh one is still in its grace time.
	if res, err := s.Sweep(ctx); err != nil || res != (sweep.Result{}) {
		t.Fatalf("second Sweep = %+v, %v", res, err)
	}
	_ = fresh
}

// TestSweepExpiresPastOnePage: a whole batch's worth of generations whose
// window ended expires in one sweep, page after page, each announced once.
func TestSweepExpiresPastOnePage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, b := emutest.Table(t, "sweepmany")
	url, _, err := sqs.CreateQueue(ctx, b.Clients.SQS, "sweepmany-"+lull.NewID("q")[2:], 30*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	events := sqs.New(b.Clients.SQS, url)
	now := time.Now().UTC().Truncate(time.Millisecond)
	const n = 35
	for range n {
		g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Model: "m", Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
			CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute), Request: json.RawMessage(`{}`)}
		if _, _, err := store.Create(ctx, g, ""); err != nil {
			t.Fatal(err)
		}
		if err := store.MarkEnqueued(ctx, g.ID); err != nil {
			t.Fatal(err)
		}
	}
	s, err := sweep.New(sweep.Config{Generations: store, Queues: map[string]lull.Sender{}, Events: events,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }, Limit: 10, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Sweep(ctx)
	if err != nil || res.Expired != n {
		t.Fatalf("Sweep = %+v, %v; want %d expired in one sweep of pages of 10", res, err, n)
	}
	seen := map[string]bool{}
	for len(seen) < n {
		msgs, err := events.Receive(ctx, 10, time.Second, 30*time.Second)
		if err != nil || len(msgs) == 0 {
			t.Fatalf("events: %d of %d, %v", len(seen), n, err)
		}
		for _, m := range msgs {
			var e lull.Event
			if json.Unmarshal(m.Body, &e) != nil || seen[e.GenerationID] {
				t.Fatalf("bad or repeated event %s", m.Body)
			}
			seen[e.GenerationID] = true
		}
	}
}

// failingSender fails its first fails sends, then delegates.
type failingSender struct {
	lull.Sender
	fails atomic.Int64
}

func (f *failingSender) Send(ctx context.Context, body []byte, group string, delay time.Duration) error {
	if f.fails.Add(-1) >= 0 {
		return errors.New("sqs: send: connection reset")
	}
	return f.Sender.Send(ctx, body, group, delay)
}

// TestExpiredButUnannouncedIsAnnounced: the sweep expired a generation but
// its event was never sent (the send failed, or the Lambda died right after
// the write). A later sweep finds it among the unannounced and announces it
// — once: after that it is marked announced.
func TestExpiredButUnannouncedIsAnnounced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, b := emutest.Table(t, "sweepann")
	url, _, err := sqs.CreateQueue(ctx, b.Clients.SQS, "sweepann-"+lull.NewID("q")[2:], 30*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	events := sqs.New(b.Clients.SQS, url)
	now := time.Now().UTC().Truncate(time.Millisecond)
	g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "t", Model: "m", Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
		CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute), Request: json.RawMessage(`{}`)}
	if _, _, err := store.Create(ctx, g, ""); err != nil {
		t.Fatal(err)
	}
	if err := store.MarkEnqueued(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	flaky := &failingSender{Sender: events}
	flaky.fails.Store(1)
	clock := now
	s, err := sweep.New(sweep.Config{Generations: store, Queues: map[string]lull.Sender{}, Events: flaky, Announcements: store,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return clock }, Grace: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.Sweep(ctx); err == nil || res.Expired != 1 {
		t.Fatalf("first Sweep = %+v, %v; want the expiry written and its announcement failed", res, err)
	}
	if got, _ := store.Get(ctx, g.ID); got.Status != lull.StatusExpired {
		t.Fatalf("status %s", got.Status)
	}
	clock = now.Add(time.Minute) // past the grace
	for range 2 {                // the second sweep finds nothing to announce
		if _, err := s.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := events.Receive(ctx, 10, time.Second, 30*time.Second)
	if err != nil || len(msgs) != 1 || !strings.Contains(string(msgs[0].Body), `"type":"generation.expired"`) {
		t.Fatalf("events after the later sweeps: %d %v", len(msgs), err)
	}
}
