package delivery_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/lull-ai/lull/lambdas/scaler/sweep"
	"github.com/lull-ai/lull/lambdas/webhooks/delivery"
	"github.com/lull-ai/lull/shared/genview"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/memory"
	"github.com/lull-ai/lull/shared/whsign"
)

// These tests run the delivery handler against in-memory store, blobs and
// events queue (shared/memory) and a real receiver served by httptest. The
// handler's clock and the queue's clock are one manual clock: a scheduled
// retry becomes visible when the test moves the clock to it, as SQS
// message delays make it visible in production.

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type fixture struct {
	clock  *memory.ManualClock
	store  *memory.Store
	events *memory.Queue
	blobs  *memory.Blobs
	recv   *receiver
	hook   *lull.Webhook
}

// newFixture registers one endpoint of tenant-a pointing at a receiver
// that answers respond (200 when nil).
func newFixture(t *testing.T, respond func(n int, w http.ResponseWriter)) *fixture {
	t.Helper()
	clock := memory.NewClock(t0)
	f := &fixture{
		clock: clock, store: memory.NewStore(), blobs: memory.NewBlobs(clock),
		events: memory.NewQueue(memory.QueueConfig{Name: "events", Clock: clock}),
	}
	f.recv = newReceiver(t, clock, respond)
	f.hook = &lull.Webhook{ID: lull.NewID("wh"), Tenant: "tenant-a", URL: f.recv.srv.URL + "/hook", Secret: whsign.NewSecret(), CreatedAt: t0}
	if err := f.store.CreateWebhook(context.Background(), f.hook); err != nil {
		t.Fatal(err)
	}
	return f
}

// newHandler is the one place these tests build a handler: the defaults
// below, changed by tune.
func (f *fixture) newHandler(t *testing.T, tune func(*delivery.Config)) *delivery.Handler {
	t.Helper()
	cfg := delivery.Config{
		Webhooks: f.store, Generations: f.store, Batches: f.store, Blobs: f.blobs, Events: f.events,
		Client: f.recv.srv.Client(), Logger: testLogger(t), Now: f.clock.Now, PublicURL: "https://api.example.com/",
	}
	if tune != nil {
		tune(&cfg)
	}
	h, err := delivery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("LULL_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// received is one POST the receiver got.
type received struct {
	at                   time.Time // the clock's time
	id, timestamp, sigs  string
	body                 []byte
	contentType          string
	statusCode           int // what the receiver answered
	payload              delivery.Payload
	event                genview.EventObject // the body read in OpenAI's event shape
	dataID, dataResponse string
}

type receiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	posts []received
}

func newReceiver(t *testing.T, clock memory.Clock, respond func(n int, w http.ResponseWriter)) *receiver {
	t.Helper()
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		p := received{at: clock.Now(), id: req.Header.Get("webhook-id"), timestamp: req.Header.Get("webhook-timestamp"),
			sigs: req.Header.Get("webhook-signature"), body: body, contentType: req.Header.Get("Content-Type")}
		if err := json.Unmarshal(body, &p.payload); err != nil {
			t.Errorf("payload is not JSON: %s", body)
		}
		_ = json.Unmarshal(body, &p.event)
		var data struct {
			ID       string          `json:"id"`
			Response json.RawMessage `json:"response"`
		}
		_ = json.Unmarshal(p.payload.Data, &data)
		p.dataID, p.dataResponse = data.ID, string(data.Response)
		r.mu.Lock()
		n := len(r.posts) + 1
		r.mu.Unlock()
		rec := httptest.NewRecorder()
		if respond != nil {
			respond(n, rec)
		}
		p.statusCode = rec.Code
		r.mu.Lock()
		r.posts = append(r.posts, p)
		r.mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.posts...)
}

// status answers code to every POST.
func status(code int) func(int, http.ResponseWriter) {
	return func(_ int, w http.ResponseWriter) { w.WriteHeader(code) }
}

// completed stores a completed generation of tenant-a whose response is
// response, and returns its event.
func (f *fixture) completed(t *testing.T, response string) (*lull.Generation, lull.Event) {
	t.Helper()
	ctx := context.Background()
	g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "tenant-a", Model: "m", Endpoint: lull.EndpointChat,
		Status: lull.StatusQueued, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), Request: json.RawMessage(`{"model":"m","messages":[]}`)}
	if _, _, err := f.store.Create(ctx, g, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Start(ctx, g.ID, "w", t0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	key := "outputs/tenant-a/" + g.ID + "/1.json"
	if err := f.blobs.Put(ctx, key, []byte(response), "application/json"); err != nil {
		t.Fatal(err)
	}
	g, err := f.store.Finish(ctx, g.ID, lull.StatusCompleted, lull.Outcome{At: t0, ResponseKey: key, Usage: &lull.Usage{TotalTokens: 3}})
	if err != nil {
		t.Fatal(err)
	}
	return g, lull.EventFor(g)
}

// handle runs the handler on one message body and returns the IDs it
// reported as failed.
func handle(t *testing.T, h *delivery.Handler, body []byte) []string {
	t.Helper()
	resp, err := h.Handle(context.Background(), events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m-1", Body: string(body)}}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range resp.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	return ids
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deliver runs the handler on a fresh event and expects no failure.
func deliver(t *testing.T, h *delivery.Handler, ev lull.Event) {
	t.Helper()
	if failed := handle(t, h, mustJSON(t, ev)); len(failed) != 0 {
		t.Fatalf("event %s reported as failed", ev.ID)
	}
}

// pump plays the events queue as SQS and the Lambda event source mapping
// do, and the scaler's sweep for parked deliveries: it moves the clock to
// the next message's visibility (or the next parked delivery's due time,
// where the sweep queues it), hands what is visible to the handler and
// deletes what it handled, until nothing is left. It fails the test if that
// takes more than limit rounds.
func (f *fixture) pump(t *testing.T, h *delivery.Handler, limit int) {
	t.Helper()
	ctx := context.Background()
	sw, err := sweep.New(sweep.Config{Generations: f.store, Webhooks: f.store, Events: f.events, Logger: testLogger(t), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for range limit {
		next, ok := f.events.NextVisible()
		parked, err := f.store.DueDeliveries(ctx, t0.Add(1000*time.Hour), 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(parked) == 1 && (!ok || parked[0].NextAttemptAt.Before(next)) {
			if due := parked[0].NextAttemptAt; due.After(f.clock.Now()) {
				f.clock.Set(due)
			}
			if _, err := sw.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if !ok {
			return
		}
		if next.After(f.clock.Now()) {
			f.clock.Set(next)
		}
		msgs, err := f.events.Receive(ctx, 10, 0, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if failed := handle(t, h, m.Body); len(failed) != 0 {
				t.Fatalf("task %s reported as failed", m.Body)
			}
			if err := f.events.Delete(ctx, m.Receipt); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Fatalf("the events queue still holds %d messages after %d rounds", len(f.events.Messages()), limit)
}

// tasks returns the tasks waiting on the events queue.
func (f *fixture) tasks(t *testing.T) []lull.DeliveryTask {
	t.Helper()
	var out []lull.DeliveryTask
	for _, m := range f.events.Messages() {
		var task lull.DeliveryTask
		if err := json.Unmarshal(m.Body, &task); err != nil {
			t.Fatal(err)
		}
		out = append(out, task)
	}
	return out
}

func (f *fixture) delivery(t *testing.T) *lull.Delivery {
	t.Helper()
	ds, _, err := f.store.ListDeliveries(context.Background(), f.hook.ID, "", 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries = %+v, %v; want one", ds, err)
	}
	return ds[0]
}

// The Standard Webhooks schedule: ten attempts, after 5 s, 5 min, 30 min,
// 2 h, 5 h, 10 h, 14 h, 20 h and 24 h, each up to 10 % later (jitter), and
// the delivery ends failed. Waits above SQS's 15-minute delay park the
// delivery for the scaler's sweep, which queues the attempt when due
// (pump plays the sweep): one message per retry.
func TestRetrySchedule(t *testing.T) {
	t.Parallel()
	f := newFixture(t, status(500))
	h := f.newHandler(t, nil)
	_, ev := f.completed(t, `{"id":"chatcmpl-1"}`)
	deliver(t, h, ev)
	f.pump(t, h, 1000)

	posts := f.recv.got()
	if len(posts) != len(delivery.Schedule)+1 {
		t.Fatalf("%d attempts, want %d", len(posts), len(delivery.Schedule)+1)
	}
	for i, p := range posts {
		if p.id != ev.ID {
			t.Fatalf("attempt %d has webhook-id %q, want %q", i+1, p.id, ev.ID)
		}
		if i == 0 {
			if !p.at.Equal(t0) {
				t.Fatalf("first attempt at %s, want at once", p.at)
			}
			continue
		}
		gap, base := p.at.Sub(posts[i-1].at), delivery.Schedule[i-1]
		// Up to 10 % jitter, plus under a second because SQS delays are
		// whole seconds.
		if gap < base || gap > base+base/10+time.Second {
			t.Errorf("attempt %d came %s after the one before, want %s to %s", i+1, gap, base, base+base/10+time.Second)
		}
	}
	d := f.delivery(t)
	if d.Status != lull.DeliveryFailed || len(d.Attempts) != 10 || !d.NextAttemptAt.IsZero() || d.EventID != ev.ID {
		t.Fatalf("delivery = %+v", d)
	}
	for i, a := range d.Attempts {
		if a.N != i+1 || a.StatusCode != 500 || a.Error != "endpoint answered 500" || !a.At.Equal(posts[i].at) {
			t.Fatalf("attempt %d recorded as %+v", i+1, a)
		}
	}
	// One message per retry: waits longer than SQS's 15-minute delay park
	// the delivery for the sweep instead of hopping through the queue
	// every 15 minutes (issue 13 e: ~300 messages per failing delivery).
	if sent, _ := f.events.Counts(); sent > len(delivery.Schedule) {
		t.Fatalf("%d messages sent to the events queue for %d retries, want at most one each", sent, len(delivery.Schedule))
	}
}

// Jitter spreads retries of many deliveries over [wait, wait + 10 %].
func TestRetryJitter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, status(500))
	h := f.newHandler(t, nil)
	g, ev := f.completed(t, `{}`)
	const n = 40
	for i := range n {
		ev := ev
		ev.ID = fmt.Sprintf("evt_%s_%d", g.ID, i)
		deliver(t, h, ev)
	}
	tasks := f.tasks(t)
	if len(tasks) != n {
		t.Fatalf("%d retries scheduled, want %d", len(tasks), n)
	}
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for _, task := range tasks {
		wait := task.DueAt.Sub(t0)
		if wait < 5*time.Second || wait > 5500*time.Millisecond || task.Attempt != 2 || task.DeliveryID == "" {
			t.Fatalf("retry task %+v: due in %s, want 5s to 5.5s, attempt 2", task, wait)
		}
		lo, hi = min(lo, wait), max(hi, wait)
	}
	if hi-lo < 50*time.Millisecond {
		t.Fatalf("retries of %d deliveries all due within %s: no jitter", n, hi-lo)
	}
	for _, m := range f.events.Messages() {
		if delay := m.VisibleAt.Sub(m.SentAt); delay < 5*time.Second || delay > 6*time.Second {
			t.Fatalf("retry message delayed %s, want 5s to 6s", delay)
		}
	}
}

// 429 and 503 with Retry-After wait that long (at most a day) instead of
// the schedule; other codes ignore it.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		code       int
		retryAfter func(now time.Time) string
		wantMin    time.Duration
		wantMax    time.Duration
	}{
		{"429Seconds", 429, func(time.Time) string { return "120" }, 120 * time.Second, 120 * time.Second},
		{"503Date", 503, func(now time.Time) string { return now.Add(2 * time.Hour).Format(http.TimeFormat) }, 2 * time.Hour, 2 * time.Hour},
		{"503CappedAtADay", 503, func(time.Time) string { return "999999" }, 24 * time.Hour, 24 * time.Hour},
		{"429Zero", 429, func(time.Time) string { return "0" }, 5 * time.Second, 5500 * time.Millisecond},
		{"429Without", 429, func(time.Time) string { return "" }, 5 * time.Second, 5500 * time.Millisecond},
		{"500Ignored", 500, func(time.Time) string { return "3600" }, 5 * time.Second, 5500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var f *fixture
			f = newFixture(t, func(n int, w http.ResponseWriter) {
				if n > 1 {
					return // the retry succeeds
				}
				if v := tc.retryAfter(f.clock.Now()); v != "" {
					w.Header().Set("Retry-After", v)
				}
				w.WriteHeader(tc.code)
			})
			h := f.newHandler(t, nil)
			_, ev := f.completed(t, `{}`)
			deliver(t, h, ev)
			d := f.delivery(t)
			wait := d.NextAttemptAt.Sub(t0)
			if d.Status != lull.DeliveryPending || wait < tc.wantMin || wait > tc.wantMax {
				t.Fatalf("next attempt in %s (delivery %s), want %s to %s", wait, d.Status, tc.wantMin, tc.wantMax)
			}
			tasks := f.tasks(t)
			if wait > 15*time.Minute {
				// Longer than SQS can delay: parked for the sweep, no message.
				if len(tasks) != 0 || !d.Parked {
					t.Fatalf("tasks = %+v, parked %v; want none, parked", tasks, d.Parked)
				}
			} else {
				if len(tasks) != 1 || !tasks[0].DueAt.Truncate(time.Millisecond).Equal(d.NextAttemptAt) || tasks[0].Attempt != 2 {
					t.Fatalf("tasks = %+v, want one due at %s", tasks, d.NextAttemptAt)
				}
				m := f.events.Messages()[0]
				if delay := m.VisibleAt.Sub(m.SentAt); delay < wait {
					t.Fatalf("task delayed %s on the queue; want %s", delay, wait)
				}
			}
			// The next attempt happens then, not before.
			f.pump(t, h, 200)
			if posts := f.recv.got(); len(posts) != 2 || posts[1].at.Sub(posts[0].at) < tc.wantMin {
				t.Fatalf("posts = %+v; want the second %s after the first", posts, tc.wantMin)
			}
		})
	}
}

// 410 Gone disables the endpoint: no retry, and later events are not sent.
func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, status(410))
	h := f.newHandler(t, nil)
	_, ev := f.completed(t, `{}`)
	deliver(t, h, ev)
	w, err := f.store.GetWebhook(ctx, f.hook.ID)
	if err != nil || !w.Disabled || !strings.Contains(w.DisabledReason, "410") {
		t.Fatalf("webhook = %+v, %v; want disabled for the 410", w, err)
	}
	if d := f.delivery(t); d.Status != lull.DeliveryFailed || len(d.Attempts) != 1 || d.Attempts[0].StatusCode != 410 {
		t.Fatalf("delivery = %+v", d)
	}
	if len(f.events.Messages()) != 0 {
		t.Fatal("a retry was scheduled after 410")
	}

	_, later := f.completed(t, `{}`)
	deliver(t, h, later)
	if n := len(f.recv.got()); n != 1 {
		t.Fatalf("disabled endpoint received %d POSTs, want 1", n)
	}
	ds, _, _ := f.store.ListDeliveries(ctx, f.hook.ID, "", 10)
	for _, d := range ds {
		if d.EventID == later.ID && (d.Status != lull.DeliveryFailed || len(d.Attempts) != 0) {
			t.Fatalf("delivery to the disabled endpoint = %+v; want failed without an attempt", d)
		}
	}
	if len(ds) != 2 {
		t.Fatalf("%d deliveries, want 2", len(ds))
	}
}

// Up to the limit the payload is the generation with its response; above
// it the bodies are left out and a link is given.
func TestPayloadSizeLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		response string
		linked   bool
	}{
		{"Small", `{"id":"chatcmpl-1","choices":[]}`, false},
		{"OverLimit", `{"id":"chatcmpl-1","pad":"` + strings.Repeat("x", 4000) + `"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			h := f.newHandler(t, func(c *delivery.Config) { c.MaxPayloadBytes = 2048 })
			g, ev := f.completed(t, tc.response)
			deliver(t, h, ev)
			posts := f.recv.got()
			if len(posts) != 1 {
				t.Fatalf("%d POSTs", len(posts))
			}
			p := posts[0]
			if p.payload.Type != lull.EventGenerationCompleted || !p.payload.Timestamp.Equal(ev.CreatedAt) || p.dataID != g.ID {
				t.Fatalf("payload = %s", p.body)
			}
			var data map[string]any
			if err := json.Unmarshal(p.payload.Data, &data); err != nil {
				t.Fatal(err)
			}
			if !tc.linked {
				if p.dataResponse != tc.response || data["request"] == nil || data["response_url"] != nil {
					t.Fatalf("small payload = %s; want the response inline", p.body)
				}
				return
			}
			if len(p.body) > 2048 || data["response"] != nil || data["request"] != nil ||
				data["response_url"] != "https://api.example.com/v1/generation/"+g.ID || data["status"] != "completed" {
				t.Fatalf("large payload (%d bytes) = %s; want no bodies and a link", len(p.body), p.body)
			}
		})
	}
}

// Every POST is signed as Standard Webhooks says, with the same webhook-id
// on every attempt; during a rotation both secrets sign.
func TestSignatures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.WriteHeader(503)
		}
	})
	prev, next := f.hook.Secret, whsign.NewSecret()
	if err := f.store.RotateSecret(ctx, f.hook.ID, prev, next, t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	f.hook.Secret, f.hook.PrevSecret, f.hook.PrevSecretUntil = next, prev, t0.Add(time.Hour)
	h := f.newHandler(t, nil)
	_, ev := f.completed(t, `{}`)
	deliver(t, h, ev)
	f.clock.Set(t0.Add(2 * time.Hour)) // the previous secret's grace ends before the retry
	f.pump(t, h, 10)
	posts := f.recv.got()
	if len(posts) != 2 || posts[1].statusCode != 200 {
		t.Fatalf("posts = %+v", posts)
	}
	for i, p := range posts {
		secrets := []string{f.hook.Secret}
		if i == 0 {
			secrets = append(secrets, prev)
		}
		ts, err := strconv.ParseInt(p.timestamp, 10, 64)
		if err != nil || ts != p.at.Unix() || p.id != ev.ID || p.contentType != "application/json" {
			t.Fatalf("attempt %d headers: id %q timestamp %q content type %q", i+1, p.id, p.timestamp, p.contentType)
		}
		var want []string
		for _, s := range secrets {
			sig, err := whsign.Signature(s, p.id, time.Unix(ts, 0), p.body)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, sig)
		}
		if p.sigs != strings.Join(want, " ") {
			t.Fatalf("attempt %d webhook-signature = %q, want %q", i+1, p.sigs, strings.Join(want, " "))
		}
	}
	if d := f.delivery(t); d.Status != lull.DeliverySucceeded || len(d.Attempts) != 2 {
		t.Fatalf("delivery = %+v", d)
	}
}

// A POST whose record was lost is made again, with the same webhook-id, so
// the receiver can de-duplicate; a delivered event that comes again is not
// sent again.
func TestAtLeastOnceWithStableID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	h := f.newHandler(t, nil)
	_, ev := f.completed(t, `{}`)
	f.store.SetFault(memory.FailOn("AddAttempt", memory.Unavailable("AddAttempt")))
	if failed := handle(t, h, mustJSON(t, ev)); len(failed) != 1 {
		t.Fatal("a lost attempt record was not reported as a failure (SQS would not redeliver)")
	}
	f.store.SetFault(nil)
	deliver(t, h, ev) // SQS redelivers the event
	deliver(t, h, ev) // and once more after it was delivered
	posts := f.recv.got()
	if len(posts) != 2 || posts[0].id != ev.ID || posts[1].id != ev.ID {
		t.Fatalf("posts = %d; want 2, both with webhook-id %s", len(posts), ev.ID)
	}
	if d := f.delivery(t); d.Status != lull.DeliverySucceeded || len(d.Attempts) != 1 {
		t.Fatalf("delivery = %+v", d)
	}
}

// Batch lines' generation events are counted, never delivered.
func TestBatchLineEventsAreCounted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	lines := &lineCounter{}
	h := f.newHandler(t, func(c *delivery.Config) { c.Lines = lines })
	_, ev := f.completed(t, `{}`)
	ev.BatchID = "batch_1"
	deliver(t, h, ev)
	if len(f.recv.got()) != 0 || len(lines.got) != 1 || lines.got[0].ID != ev.ID || lines.got[0].BatchID != "batch_1" {
		t.Fatalf("posts %d, counted %+v", len(f.recv.got()), lines.got)
	}
}

type lineCounter struct {
	mu  sync.Mutex
	got []lull.Event
}

func (c *lineCounter) LineDone(_ context.Context, ev lull.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, ev)
	return nil
}

// Events go to the endpoint the request named, else to every endpoint of
// the tenant subscribed to the type; never to another tenant's.
func TestTargets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil)
	other := &lull.Webhook{ID: lull.NewID("wh"), Tenant: "tenant-b", URL: f.hook.URL, Secret: whsign.NewSecret(), CreatedAt: t0}
	failedOnly := &lull.Webhook{ID: lull.NewID("wh"), Tenant: "tenant-a", URL: f.hook.URL, Secret: whsign.NewSecret(),
		Events: []string{lull.EventGenerationFailed}, CreatedAt: t0}
	for _, w := range []*lull.Webhook{other, failedOnly} {
		if err := f.store.CreateWebhook(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	h := f.newHandler(t, nil)
	_, ev := f.completed(t, `{}`)
	deliver(t, h, ev) // to f.hook only: failedOnly does not want it, other is another tenant's
	named := ev
	named.ID, named.WebhookID = ev.ID+"_named", other.ID
	deliver(t, h, named) // names another tenant's endpoint: nobody
	posts := f.recv.got()
	if len(posts) != 1 || posts[0].id != ev.ID {
		t.Fatalf("posts = %+v; want one, of %s", posts, ev.ID)
	}
	for _, w := range []*lull.Webhook{other, failedOnly} {
		if ds, _, _ := f.store.ListDeliveries(ctx, w.ID, "", 10); len(ds) != 0 {
			t.Fatalf("endpoint %s got deliveries %+v", w.ID, ds)
		}
	}
}

// retryNow does what POST /v1/webhooks/{id}/deliveries/{delivery}/retry
// does: reopen the delivery and queue its next attempt at once.
func (f *fixture) retryNow(t *testing.T, d *lull.Delivery) {
	t.Helper()
	task := lull.DeliveryTask{Event: d.Event(), DeliveryID: d.ID, Attempt: len(d.Attempts) + 1}
	if err := f.events.Send(context.Background(), mustJSON(t, task), d.Tenant, 0); err != nil {
		t.Fatal(err)
	}
	d.Status, d.NextAttemptAt = lull.DeliveryPending, f.clock.Now()
	if err := f.store.ReopenDelivery(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

// A manual retry makes one more attempt of the same event (same
// webhook-id, same payload), also after the schedule ran out, and also for
// batch events; a retry scheduled earlier that comes late changes nothing.
func TestManualRetry(t *testing.T) {
	t.Parallel()
	t.Run("GenerationAfterScheduleRanOut", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, func(n int, w http.ResponseWriter) {
			if n <= 10 {
				w.WriteHeader(500)
			}
		})
		h := f.newHandler(t, nil)
		g, ev := f.completed(t, `{"id":"chatcmpl-1"}`)
		deliver(t, h, ev)
		f.pump(t, h, 1000)
		d := f.delivery(t)
		if d.Status != lull.DeliveryFailed || len(d.Attempts) != 10 {
			t.Fatalf("before the retry: %+v", d)
		}
		f.retryNow(t, d)
		f.pump(t, h, 10)
		posts := f.recv.got()
		if len(posts) != 11 || posts[10].id != ev.ID || posts[10].dataID != g.ID || posts[10].dataResponse != `{"id":"chatcmpl-1"}` {
			t.Fatalf("%d POSTs; the retry's = %+v", len(posts), posts[len(posts)-1])
		}
		if d := f.delivery(t); d.Status != lull.DeliverySucceeded || len(d.Attempts) != 11 || d.Attempts[10].StatusCode != 200 {
			t.Fatalf("after the retry: %+v", d)
		}
		// An old scheduled attempt arriving now is not made.
		late := lull.DeliveryTask{Event: d.Event(), DeliveryID: d.ID, Attempt: 4}
		if failed := handle(t, h, mustJSON(t, late)); len(failed) != 0 || len(f.recv.got()) != 11 {
			t.Fatalf("a late scheduled attempt was made (failed %v, posts %d)", failed, len(f.recv.got()))
		}
	})
	t.Run("Batch", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		f := newFixture(t, func(n int, w http.ResponseWriter) {
			if n == 1 {
				w.WriteHeader(500)
			}
		})
		h := f.newHandler(t, nil)
		b := &lull.Batch{ID: lull.NewID("batch"), Tenant: "tenant-a", Endpoint: lull.EndpointChat, Status: lull.BatchCompleted,
			WebhookID: f.hook.ID, CreatedAt: t0, CompletedAt: t0, Total: 1, Completed: 1}
		if err := f.store.CreateBatch(ctx, b); err != nil {
			t.Fatal(err)
		}
		ev := lull.BatchEventFor(b)
		f.clock.Advance(time.Minute)
		deliver(t, h, ev)
		f.retryNow(t, f.delivery(t))
		msgs, err := f.events.Receive(ctx, 10, 0, time.Minute) // the manual retry only: the scheduled one is not due
		if err != nil || len(msgs) != 1 {
			t.Fatalf("due tasks = %d, %v", len(msgs), err)
		}
		if failed := handle(t, h, msgs[0].Body); len(failed) != 0 {
			t.Fatal("retry failed")
		}
		posts := f.recv.got()
		if len(posts) != 2 {
			t.Fatalf("%d POSTs", len(posts))
		}
		for i, p := range posts {
			// batch.* events are in OpenAI's event shape.
			if e := p.event; p.id != ev.ID || e.ID != ev.ID || e.Object != "event" || e.Type != lull.EventBatchCompleted ||
				e.Data.ID != b.ID || e.CreatedAt != ev.CreatedAt.Unix() {
				t.Fatalf("attempt %d: webhook-id %s, body %s; want %s of batch %s at %s", i+1, p.id, p.body, ev.ID, b.ID, ev.CreatedAt)
			}
		}
	})
}
