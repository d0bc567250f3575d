package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lull-ai/lull/gpuworker/vllm"
	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/memory"
)

// These tests run the worker loop against in-memory store, queue and blobs
// (shared/memory) and a small vLLM-compatible engine served by httptest.
// The worker's clock (leases) and the queue's clock (visibility) are one
// manual clock that only the test moves.

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fixture is one worker's world.
type fixture struct {
	clock  *memory.ManualClock
	store  *memory.Store
	queue  *memory.Queue
	events *memory.Queue
	blobs  *memory.Blobs
	engine *engine
}

func newFixture(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, prompt string)) *fixture {
	t.Helper()
	clock := memory.NewClock(t0)
	return &fixture{
		clock:  clock,
		store:  memory.NewStore(),
		queue:  memory.NewQueue(memory.QueueConfig{Name: "requests", Clock: clock}),
		events: memory.NewQueue(memory.QueueConfig{Name: "events", Clock: clock}),
		blobs:  memory.NewBlobs(clock),
		engine: newEngine(t, respond),
	}
}

// newWorker is the one place these tests build a worker: the defaults
// below, changed by tune.
func (f *fixture) newWorker(t *testing.T, tune func(*worker.Config)) *worker.Worker {
	t.Helper()
	cfg := worker.Config{
		Model: "m", WorkerID: "w1", Gate: "fixed", Concurrency: 1, Visibility: 30 * time.Second,
		RequestTimeout: 10 * time.Second, EngineRetries: 1, DrainTimeout: 10 * time.Second,
	}
	if tune != nil {
		tune(&cfg)
	}
	w, err := worker.New(cfg, worker.Deps{
		Generations: f.store, Queue: f.queue, Events: f.events, Blobs: f.blobs,
		Engine: vllm.New(f.engine.srv.URL, nil), Logger: testLogger(t), Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("LULL_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start runs w until the returned stop is called (or the test ends); stop
// waits for Run to return.
func start(t *testing.T, w *worker.Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("worker did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// submit stores a queued generation for prompt and puts its job on the
// queue; change, when set, edits the generation first.
func (f *fixture) submit(t *testing.T, prompt string, change func(*lull.Generation)) *lull.Generation {
	t.Helper()
	g := &lull.Generation{
		ID: lull.NewID("gen"), Tenant: "tenant-a", Model: "m", Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
		CreatedAt: f.clock.Now(), ExpiresAt: f.clock.Now().Add(time.Hour),
		Request: json.RawMessage(fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":%q}]}`, prompt)),
	}
	if change != nil {
		change(g)
	}
	ctx := context.Background()
	if _, _, err := f.store.Create(ctx, g, ""); err != nil {
		t.Fatal(err)
	}
	f.send(t, lull.JobFor(g))
	return g
}

func (f *fixture) send(t *testing.T, job any) {
	t.Helper()
	body, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.queue.Send(context.Background(), body, "tenant-a", 0); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) get(t *testing.T, id string) *lull.Generation {
	t.Helper()
	g, err := f.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// waitQueue waits until cond holds for the request queue's messages.
func (f *fixture) waitQueue(t *testing.T, what string, cond func([]memory.QueuedMessage) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := f.queue.WaitFor(ctx, cond); err != nil {
		t.Fatalf("%s: %v; queue: %+v", what, err, f.queue.Messages())
	}
}

func empty(msgs []memory.QueuedMessage) bool { return len(msgs) == 0 }

// releasedFor reports a single message handed back to the queue to come
// back after d.
func (f *fixture) releasedFor(d time.Duration) func([]memory.QueuedMessage) bool {
	return func(msgs []memory.QueuedMessage) bool {
		return len(msgs) == 1 && msgs[0].ReceiveCount >= 1 && msgs[0].Visibility == d &&
			msgs[0].VisibleAt.Equal(f.clock.Now().Add(d)) && (d > 0 || !msgs[0].InFlight)
	}
}

// requeuedFor matches a job deferred as a fresh message, hidden for d: a
// deferral replaces the received message (deleted) by a new one, so that
// deferrals never add up to the queue's max receives.
func (f *fixture) requeuedFor(d time.Duration) func([]memory.QueuedMessage) bool {
	return func(msgs []memory.QueuedMessage) bool {
		return len(msgs) == 1 && msgs[0].ReceiveCount == 0 && msgs[0].VisibleAt.Equal(msgs[0].SentAt.Add(d.Truncate(time.Second)))
	}
}

// announced returns the events sent so far.
func (f *fixture) announced(t *testing.T) []lull.Event {
	t.Helper()
	var out []lull.Event
	for _, m := range f.events.Messages() {
		var ev lull.Event
		if err := json.Unmarshal(m.Body, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// engine is a vLLM-compatible chat endpoint whose answer per prompt the
// test decides; it counts calls per prompt.
type engine struct {
	srv     *httptest.Server
	mu      sync.Mutex
	calls   map[string]int
	arrived chan string // receives each prompt as its call arrives (buffered)
}

func newEngine(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, prompt string)) *engine {
	t.Helper()
	if respond == nil {
		respond = func(w http.ResponseWriter, _ *http.Request, prompt string) { answer(w, prompt) }
	}
	e := &engine{calls: map[string]int{}, arrived: make(chan string, 100)}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct {
				Content string `json:"content"`
			} `json:"messages"`
		}
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/chat/completions" || json.Unmarshal(body, &req) != nil || len(req.Messages) == 0 {
			http.Error(w, `{"message":"bad request to the test engine"}`, http.StatusBadRequest)
			return
		}
		prompt := req.Messages[0].Content
		e.mu.Lock()
		e.calls[prompt]++
		e.mu.Unlock()
		e.arrived <- prompt
		respond(w, r, prompt)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *engine) count(prompt string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[prompt]
}

func (e *engine) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.calls {
		n += c
	}
	return n
}

// waitArrived waits for the engine to receive n calls.
func (e *engine) waitArrived(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-e.arrived:
		case <-time.After(15 * time.Second):
			t.Fatal("the engine never got the request")
		}
	}
}

// answer writes a chat.completion for prompt.
func answer(w http.ResponseWriter, prompt string) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"echo: %s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`, prompt)
}

// fail writes a vLLM error response.
func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"object":"error","message":%q,"code":%d}`, msg, code)
}

func TestWorkerCompletesAndAnnounces(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	g := f.submit(t, "hello", nil)
	start(t, f.newWorker(t, nil))
	f.waitQueue(t, "message deleted", empty)

	got := f.get(t, g.ID)
	if got.Status != lull.StatusCompleted || got.Attempts != 1 || got.LeaseOwner != "" || !got.CompletedAt.Equal(t0) ||
		got.Usage == nil || got.Usage.TotalTokens != 7 {
		t.Fatalf("generation = %+v", got)
	}
	if want := "outputs/tenant-a/" + g.ID + "/1.json"; got.ResponseKey != want {
		t.Fatalf("ResponseKey = %q, want %q", got.ResponseKey, want)
	}
	out, err := f.blobs.Get(context.Background(), got.ResponseKey)
	if err != nil || !strings.Contains(string(out), `"echo: hello"`) {
		t.Fatalf("stored output = %s, %v", out, err)
	}
	if evs := f.announced(t); len(evs) != 1 || evs[0] != lull.EventFor(got) {
		t.Fatalf("events = %+v, want %+v", evs, lull.EventFor(got))
	}
}

func TestWorkerDrainByDeadline(t *testing.T) {
	t.Parallel()
	finishing := make(chan struct{})
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, prompt string) {
		if prompt == "quick" {
			// Answers only once the drain has begun: it can still finish.
			select {
			case <-finishing:
				answer(w, prompt)
			case <-r.Context().Done():
			}
			return
		}
		<-r.Context().Done() // cannot finish before the deadline
	})
	quick := f.submit(t, "quick", nil)
	stuck := f.submit(t, "stuck", nil)
	w := f.newWorker(t, func(c *worker.Config) { c.Concurrency = 2; c.DrainTimeout = time.Minute })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	f.engine.waitArrived(t, 2)

	began := time.Now()
	w.Drain(began.Add(500 * time.Millisecond)) // the deadline comes well before DrainTimeout
	close(finishing)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after the drain deadline")
	}
	if el := time.Since(began); el < 400*time.Millisecond || el > 10*time.Second {
		t.Fatalf("Run returned %s after Drain, want about the 500ms deadline", el)
	}

	if g := f.get(t, quick.ID); g.Status != lull.StatusCompleted {
		t.Fatalf("the generation that could finish is %s", g.Status)
	}
	g := f.get(t, stuck.ID)
	if g.Status != lull.StatusInProgress || g.LeaseOwner != "w1" || !g.LeaseUntil.Equal(f.clock.Now()) {
		t.Fatalf("unfinished generation = %+v; want in_progress with its lease given up (until now)", g)
	}
	msgs := f.queue.Messages()
	if len(msgs) != 1 || msgs[0].InFlight || !msgs[0].VisibleAt.Equal(f.clock.Now()) {
		t.Fatalf("queue = %+v; want only the unfinished job, visible again at once", msgs)
	}
	var job lull.Job
	if err := json.Unmarshal(msgs[0].Body, &job); err != nil || job.GenerationID != stuck.ID {
		t.Fatalf("released job = %s, %v", msgs[0].Body, err)
	}
	if s := w.Stats(); s.Completed.Load() != 1 || s.Released.Load() != 1 || s.InFlight.Load() != 0 {
		t.Fatalf("stats: completed %d released %d in flight %d", s.Completed.Load(), s.Released.Load(), s.InFlight.Load())
	}
}

func TestWorkerReleasesOnFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// setup makes one dependency fail for the generation g.
		setup func(f *fixture)
		// job, when set, replaces the job sent for g.
		job        func(g *lull.Generation) lull.Job
		wantStatus lull.Status
		// leaseGivenUp: the worker started the generation and must give its
		// lease up so the next delivery can start at once.
		leaseGivenUp bool
		engineCalls  int
	}{
		{"StartUnavailable", func(f *fixture) { f.store.SetFault(memory.FailOn("Start", memory.Unavailable("Start"))) }, nil,
			lull.StatusQueued, false, 0},
		{"RequestBlobMissing", nil, func(g *lull.Generation) lull.Job {
			j := lull.JobFor(g)
			j.Request, j.RequestKey = nil, "inputs/missing.json"
			return j
		}, lull.StatusInProgress, true, 0},
		{"OutputNotStored", func(f *fixture) { f.blobs.SetFault(memory.FailOn("Put", memory.Unavailable("Put"))) }, nil,
			lull.StatusInProgress, true, 1},
		{"TerminalStatusNotRecorded", func(f *fixture) { f.store.SetFault(memory.FailOn("Finish", memory.Unavailable("Finish"))) }, nil,
			lull.StatusInProgress, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			var g *lull.Generation
			if tc.job == nil {
				g = f.submit(t, "hello", nil)
			} else {
				g = &lull.Generation{ID: lull.NewID("gen"), Tenant: "tenant-a", Model: "m", Endpoint: lull.EndpointChat,
					Status: lull.StatusQueued, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), RequestKey: "inputs/missing.json"}
				if _, _, err := f.store.Create(context.Background(), g, ""); err != nil {
					t.Fatal(err)
				}
				f.send(t, tc.job(g))
			}
			if tc.setup != nil {
				tc.setup(f)
			}
			w := f.newWorker(t, nil)
			stop := start(t, w)
			f.waitQueue(t, "message released for 5s", f.releasedFor(5*time.Second))
			stop()
			f.store.SetFault(nil)

			got := f.get(t, g.ID)
			if got.Status != tc.wantStatus || got.ResponseKey != "" {
				t.Fatalf("generation = %+v; want %s with no response", got, tc.wantStatus)
			}
			if tc.leaseGivenUp && (got.LeaseOwner != "w1" || !got.LeaseUntil.Equal(f.clock.Now())) {
				t.Fatalf("lease = %s until %s; want given up (until %s)", got.LeaseOwner, got.LeaseUntil, f.clock.Now())
			}
			if n := f.engine.count("hello"); n != tc.engineCalls {
				t.Fatalf("engine called %d times, want %d", n, tc.engineCalls)
			}
			if evs := f.announced(t); len(evs) != 0 {
				t.Fatalf("announced %+v for an unfinished generation", evs)
			}
			if w.Stats().Released.Load() != 1 {
				t.Fatalf("released %d times, want 1", w.Stats().Released.Load())
			}
		})
	}
}

// A generation whose end could not be announced keeps its message; the
// redelivery announces it without running it again.
func TestWorkerReannouncesAfterFailedAnnounce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	g := f.submit(t, "hello", nil)
	f.events.SetFault(memory.FailOn("Send", memory.Unavailable("Send")))
	w := f.newWorker(t, nil)
	start(t, w)
	f.waitQueue(t, "message released for 5s", f.releasedFor(5*time.Second))
	if got := f.get(t, g.ID); got.Status != lull.StatusCompleted {
		t.Fatalf("generation is %s, want completed", got.Status)
	}

	f.events.SetFault(nil)
	f.clock.Advance(5 * time.Second)
	f.waitQueue(t, "redelivery acknowledged", empty)
	if n := f.engine.count("hello"); n != 1 {
		t.Fatalf("engine called %d times, want 1", n)
	}
	got := f.get(t, g.ID)
	if evs := f.announced(t); len(evs) != 1 || evs[0] != lull.EventFor(got) {
		t.Fatalf("events = %+v, want one %+v", evs, lull.EventFor(got))
	}
}

func TestWorkerDuplicateDelivery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	finish := func(to lull.Status) func(*testing.T, *fixture, *lull.Generation) {
		return func(t *testing.T, f *fixture, g *lull.Generation) {
			if to != lull.StatusCancelled {
				if _, err := f.store.Start(ctx, g.ID, "w0", t0, t0.Add(time.Minute)); err != nil {
					t.Fatal(err)
				}
			}
			out := lull.Outcome{At: t0, Failure: &lull.Failure{Code: "x", Message: "y"}}
			if to == lull.StatusCompleted {
				out = lull.Outcome{At: t0, ResponseKey: "outputs/earlier.json", Usage: &lull.Usage{TotalTokens: 1}}
			}
			if _, err := f.store.Finish(ctx, g.ID, to, out); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		prior func(*testing.T, *fixture, *lull.Generation)
		// wantReleased is the delay the message is released for; 0 means
		// it is acknowledged (deleted).
		wantReleased time.Duration
		wantStatus   lull.Status
		wantEvent    bool
	}{
		{"Completed", finish(lull.StatusCompleted), 0, lull.StatusCompleted, true},
		{"Failed", finish(lull.StatusFailed), 0, lull.StatusFailed, true},
		{"Cancelled", finish(lull.StatusCancelled), 0, lull.StatusCancelled, false},
		{"RunningElsewhere", func(t *testing.T, f *fixture, g *lull.Generation) {
			if _, err := f.store.Start(ctx, g.ID, "w0", t0, t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}, time.Minute + time.Second, lull.StatusInProgress, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			g := f.submit(t, "hello", nil)
			tc.prior(t, f, g)
			before := f.get(t, g.ID)
			w := f.newWorker(t, nil)
			start(t, w)
			if tc.wantReleased == 0 {
				f.waitQueue(t, "duplicate acknowledged", empty)
			} else {
				f.waitQueue(t, "duplicate deferred", f.requeuedFor(tc.wantReleased))
			}
			if n := f.engine.count("hello"); n != 0 {
				t.Fatalf("engine called %d times for a duplicate", n)
			}
			got := f.get(t, g.ID)
			if got.Status != tc.wantStatus || got.Attempts != before.Attempts || got.LeaseOwner != before.LeaseOwner ||
				got.ResponseKey != before.ResponseKey {
				t.Fatalf("generation changed: %+v, was %+v", got, before)
			}
			evs := f.announced(t)
			if tc.wantEvent != (len(evs) == 1) || len(evs) > 1 || (tc.wantEvent && evs[0] != lull.EventFor(got)) {
				t.Fatalf("events = %+v; want re-announced: %v", evs, tc.wantEvent)
			}
			if w.Stats().Skipped.Load() != 1 || w.Stats().Completed.Load() != 0 {
				t.Fatalf("stats: skipped %d completed %d", w.Stats().Skipped.Load(), w.Stats().Completed.Load())
			}
		})
	}
}

// The same job delivered twice in a row runs once.
func TestWorkerSameJobTwice(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	g := f.submit(t, "hello", nil)
	f.send(t, lull.JobFor(g))
	start(t, f.newWorker(t, nil))
	f.waitQueue(t, "both deliveries acknowledged", empty)
	if n := f.engine.count("hello"); n != 1 {
		t.Fatalf("engine called %d times, want 1", n)
	}
	got := f.get(t, g.ID)
	if got.Status != lull.StatusCompleted || got.Attempts != 1 {
		t.Fatalf("generation = %+v", got)
	}
	for _, ev := range f.announced(t) { // announced, and maybe re-announced: always the same event
		if ev != lull.EventFor(got) {
			t.Fatalf("event %+v, want %+v", ev, lull.EventFor(got))
		}
	}
}

func TestWorkerDropsUnrunnableJobs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
	}{
		{"Malformed", `not json`},
		{"NoGenerationID", `{"tenant":"tenant-a"}`},
		{"UnknownGeneration", `{"generation_id":"` + lull.NewID("gen") + `","tenant":"tenant-a"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			if err := f.queue.Send(context.Background(), []byte(tc.body), "tenant-a", 0); err != nil {
				t.Fatal(err)
			}
			start(t, f.newWorker(t, nil))
			f.waitQueue(t, "job dropped", empty)
			if f.engine.total() != 0 || len(f.announced(t)) != 0 {
				t.Fatal("a job that cannot run reached the engine or the events queue")
			}
		})
	}
}

func TestWorkerExpiresWhatItCannotStartInTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	g := f.submit(t, "hello", func(g *lull.Generation) { g.ExpiresAt = t0.Add(-time.Second) })
	start(t, f.newWorker(t, nil))
	f.waitQueue(t, "job acknowledged", empty)
	got := f.get(t, g.ID)
	if got.Status != lull.StatusExpired || got.Failure == nil || got.Failure.Code != "expired" || f.engine.count("hello") != 0 {
		t.Fatalf("generation = %+v, engine calls %d; want expired without running", got, f.engine.count("hello"))
	}
	if evs := f.announced(t); len(evs) != 1 || evs[0].Type != lull.EventGenerationExpired {
		t.Fatalf("events = %+v", evs)
	}
}

func TestWorkerEngineErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request, prompt string)
		tune    func(*worker.Config)
		// transient errors release the message for 10s after every retry
		// was spent; permanent ones fail the generation.
		transient   bool
		engineCalls int
		wantError   string // in LastError (transient) or Failure.Message (permanent)
	}{
		{"ServerError", func(w http.ResponseWriter, _ *http.Request, _ string) { fail(w, 500, "CUDA out of memory") },
			func(c *worker.Config) { c.EngineRetries = 2 }, true, 2, "CUDA out of memory"},
		{"Overloaded", func(w http.ResponseWriter, _ *http.Request, _ string) { fail(w, 429, "too many requests") },
			nil, true, 1, "too many requests"},
		{"Timeout", func(_ http.ResponseWriter, r *http.Request, _ string) { <-r.Context().Done() },
			func(c *worker.Config) { c.RequestTimeout = 200 * time.Millisecond }, true, 1, "no response within 200ms"},
		{"InvalidRequest", func(w http.ResponseWriter, _ *http.Request, _ string) { fail(w, 400, "context too long") },
			func(c *worker.Config) { c.EngineRetries = 3 }, false, 1, "context too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tc.respond)
			g := f.submit(t, "hello", nil)
			w := f.newWorker(t, tc.tune)
			stop := start(t, w)
			released := f.releasedFor(10 * time.Second)
			f.waitQueue(t, "message handled", func(msgs []memory.QueuedMessage) bool { return empty(msgs) || released(msgs) })
			stop()
			if msgs := f.queue.Messages(); tc.transient != (len(msgs) == 1) {
				g := f.get(t, g.ID)
				t.Fatalf("queue = %+v, generation %s (%+v); want the message released (transient: %v) or acknowledged",
					msgs, g.Status, g.Failure, tc.transient)
			}
			if n := f.engine.count("hello"); n != tc.engineCalls {
				t.Fatalf("engine called %d times, want %d", n, tc.engineCalls)
			}
			got := f.get(t, g.ID)
			if tc.transient {
				if got.Status != lull.StatusInProgress || got.Failure != nil || !got.LeaseUntil.Equal(f.clock.Now()) ||
					!strings.Contains(got.LastError, tc.wantError) || got.LastError == "" {
					t.Fatalf("generation = %+v; want in_progress, lease given up, the error noted", got)
				}
				if len(f.announced(t)) != 0 {
					t.Fatal("a transient failure was announced")
				}
				return
			}
			if got.Status != lull.StatusFailed || got.Failure == nil || got.Failure.Code != "invalid_request" || got.Failure.Message != tc.wantError {
				t.Fatalf("generation = %+v, failure %+v; want failed with the engine's message", got, got.Failure)
			}
			if evs := f.announced(t); len(evs) != 1 || evs[0] != lull.EventFor(got) || evs[0].Type != lull.EventGenerationFailed {
				t.Fatalf("events = %+v", evs)
			}
		})
	}
}

func TestWorkerEngineUnreachable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.engine.srv.Close()
	g := f.submit(t, "hello", nil)
	start(t, f.newWorker(t, nil))
	f.waitQueue(t, "message released for 10s", f.releasedFor(10*time.Second))
	if got := f.get(t, g.ID); got.Status != lull.StatusInProgress || !strings.Contains(got.LastError, "unreachable") {
		t.Fatalf("generation = %+v", got)
	}
}

// The generation moved on while it ran (here the expiry sweep ended it):
// the worker's late result must not overwrite that end.
func TestWorkerDoesNotOverwriteAnEndedGeneration(t *testing.T) {
	t.Parallel()
	var f *fixture
	f = newFixture(t, func(w http.ResponseWriter, r *http.Request, prompt string) {
		var job lull.Job
		_ = json.Unmarshal(f.queue.Messages()[0].Body, &job)
		if _, err := f.store.Finish(r.Context(), job.GenerationID, lull.StatusExpired,
			lull.Outcome{At: t0, Failure: &lull.Failure{Code: "expired", Message: "swept"}}); err != nil {
			t.Error(err)
		}
		answer(w, prompt)
	})
	g := f.submit(t, "hello", nil)
	w := f.newWorker(t, nil)
	start(t, w)
	f.waitQueue(t, "message acknowledged", empty)
	got := f.get(t, g.ID)
	if got.Status != lull.StatusExpired || got.ResponseKey != "" || got.Usage != nil || got.Failure.Message != "swept" {
		t.Fatalf("generation = %+v; want the sweep's expiry untouched", got)
	}
	// The worker may announce again what is stored (the sweep's expiry,
	// under its stable event ID, in case the sweep died before announcing),
	// never its own result.
	for _, ev := range f.announced(t) {
		if ev != lull.EventFor(got) {
			t.Fatalf("the worker announced %+v for a generation it did not end", ev)
		}
	}
	if w.Stats().Completed.Load() != 0 {
		t.Fatal("counted as completed")
	}
}

// Another worker took the generation over (this one's lease had lapsed):
// the heartbeat notices, the run is abandoned, nothing is written, and the
// redelivery waits for the new owner's lease.
func TestWorkerAbandonsLostLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, func(_ http.ResponseWriter, r *http.Request, _ string) { <-r.Context().Done() })
	g := f.submit(t, "hello", nil)
	w := f.newWorker(t, func(c *worker.Config) { c.Visibility = 10 * time.Second }) // heartbeat every 3.3s
	start(t, w)
	f.engine.waitArrived(t, 1)
	later := t0.Add(11 * time.Second)
	if _, err := f.store.Start(ctx, g.ID, "w2", later, later.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Released at once, received again and deferred (as a fresh message)
	// until w2's lease ends.
	f.waitQueue(t, "redelivery deferred", f.requeuedFor(later.Add(time.Minute).Sub(t0)+time.Second))
	got := f.get(t, g.ID)
	if got.Status != lull.StatusInProgress || got.LeaseOwner != "w2" || !got.LeaseUntil.Equal(later.Add(time.Minute)) || got.Attempts != 2 {
		t.Fatalf("generation = %+v; want w2's lease untouched", got)
	}
	if n := f.engine.count("hello"); n != 1 || len(f.announced(t)) != 0 || len(f.blobs.Keys()) != 0 {
		t.Fatalf("engine calls %d, events %d, blobs %v; want one abandoned call and nothing written", n, len(f.announced(t)), f.blobs.Keys())
	}
}

// While a generation runs, the heartbeat keeps its message hidden and its
// lease alive past the visibility timeout it was received with.
func TestWorkerHeartbeatExtendsVisibility(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	release := make(chan struct{})
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, prompt string) {
		select {
		case <-release:
			answer(w, prompt)
		case <-r.Context().Done():
		}
	})
	g := f.submit(t, "hello", nil)
	start(t, f.newWorker(t, func(c *worker.Config) { c.Visibility = 10 * time.Second }))
	f.engine.waitArrived(t, 1)
	f.clock.Advance(8 * time.Second) // received at t0: hidden and leased until t0+10s
	extended := t0.Add(18 * time.Second)
	f.waitQueue(t, "visibility extended", func(msgs []memory.QueuedMessage) bool {
		return len(msgs) == 1 && msgs[0].VisibleAt.Equal(extended) && msgs[0].InFlight
	})
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := f.store.WaitFor(wctx, func() bool { return f.get(t, g.ID).LeaseUntil.Equal(extended) }); err != nil {
		t.Fatalf("lease not renewed: %v (%+v)", err, f.get(t, g.ID))
	}

	f.clock.Advance(4 * time.Second) // past the first timeout
	if v, inFlight, _ := f.queue.Depth(ctx); v != 0 || inFlight != 1 {
		t.Fatalf("Depth = %d visible, %d in flight; want the message still hidden", v, inFlight)
	}
	if _, err := f.store.Start(ctx, g.ID, "w2", f.clock.Now(), f.clock.Now().Add(time.Minute)); !lull.IsConflict(err) {
		t.Fatalf("another worker started the running generation: %v", err)
	}
	close(release)
	f.waitQueue(t, "message deleted", empty)
	if got := f.get(t, g.ID); got.Status != lull.StatusCompleted || got.Attempts != 1 {
		t.Fatalf("generation = %+v", got)
	}
}
