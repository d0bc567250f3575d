package integration

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lull-ai/lull/gpuworker/worker"
	"github.com/lull-ai/lull/lambdas/api/httpapi"
	"github.com/lull-ai/lull/localstack/devstack"
	"github.com/lull-ai/lull/shared/lull"
	"github.com/lull-ai/lull/shared/sqs"
)

const simModel = "lull-sim-1"

func submit(t *testing.T, url, key, content string) string {
	t.Helper()
	var acc struct{ ID string }
	if code := postJSON(t, url+"/v1/slow/chat/completions", key, chatBody(simModel, content, 12), &acc); code != http.StatusAccepted {
		t.Fatalf("submit: status %d", code)
	}
	return acc.ID
}

// Guarantee 1: the API stored the generation but could not enqueue it (SQS
// refused the send). The sweeper finds it and it still completes.
func TestSendFailureAfterWriteStillCompletes(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{SweepEvery: 200 * time.Millisecond, SweepGrace: 500 * time.Millisecond})
	// A second API over the same table whose queue does not exist: every
	// SendMessage fails at the (real) SQS emulator after the DynamoDB write.
	broken, err := httpapi.New(httpapi.Config{
		Generations: st.Store, Keys: st.Store, Blobs: st.Blobs, Logger: slog.New(slog.DiscardHandler),
		Queues: map[string]lull.Sender{simModel: sqs.New(st.Clients.SQS, st.QueueURL+"-missing")},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(broken)
	defer srv.Close()
	var ids []string
	for i := range 5 {
		ids = append(ids, submit(t, srv.URL, "sk-lull-dev", "lost send "+string(rune('a'+i))))
	}
	for _, id := range ids {
		g, err := st.Store.Get(context.Background(), id)
		if err != nil || g.Status != lull.StatusQueued {
			t.Fatalf("accepted generation not stored as queued: %+v %v", g, err)
		}
	}
	for id, g := range waitTerminal(t, st, "sk-lull-dev", ids, time.Minute) {
		if g.Status != "completed" {
			t.Fatalf("%s ended %s", id, g.Status)
		}
	}
}

// Guarantee 1 and 2: a worker process killed (SIGKILL) in the middle of its
// generations loses nothing, and nothing completes twice.
func TestWorkerProcessKilledMidGeneration(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: eng.URL(), Visibility: 10 * time.Second})
	bin := filepath.Join(t.TempDir(), "gpuworker")
	if out, err := exec.Command("go", "build", "-o", bin, "../gpuworker").CombinedOutput(); err != nil {
		t.Fatalf("build gpuworker: %v\n%s", err, out)
	}
	eng.setDelay(time.Hour) // generations hang until the process dies
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), st.WorkerEnv()...)
	cmd.Env = append(cmd.Env, "LULL_WORKER_ID=doomed")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	const n = 6
	var ids []string
	for i := range n {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", "kill me "+string(rune('a'+i))))
	}
	waitFor(t, 30*time.Second, "all generations in progress on the doomed worker", func() bool {
		for _, id := range ids {
			g, err := st.Store.Get(context.Background(), id)
			if err != nil || g.Status != lull.StatusInProgress {
				return false
			}
		}
		return true
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	eng.setDelay(0)
	w, err := st.StartWorker(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := waitTerminal(t, st, "sk-lull-dev", ids, time.Minute)
	for id, g := range done {
		if g.Status != "completed" || g.Attempts < 2 {
			t.Fatalf("%s: status %s after %d attempts, want completed on a second attempt", id, g.Status, g.Attempts)
		}
	}
	if got := w.Stats().Completed.Load(); got != n {
		t.Fatalf("survivor completed %d, want %d", got, n)
	}
	if got := eng.requests.Load(); got != n {
		t.Fatalf("engine ran %d generations to the end, want exactly %d", got, n)
	}
}

// A worker whose context is cancelled mid-generation (SIGTERM with a drain
// timeout too short to finish) releases its messages; another worker
// completes each generation exactly once.
func TestWorkerDrainReleasesUnfinished(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: eng.URL(), Visibility: 10 * time.Second})
	eng.setDelay(time.Hour)
	ctx, stop := context.WithCancel(t.Context())
	first, err := st.StartWorker(ctx, func(c *worker.Config) { c.DrainTimeout = 200 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	var ids []string
	for i := range n {
		ids = append(ids, submit(t, st.URL, "sk-lull-dev", "drain me "+string(rune('a'+i))))
	}
	waitFor(t, 20*time.Second, "generations running", func() bool { return first.Stats().InFlight.Load() == n })
	stop()
	waitFor(t, 10*time.Second, "released", func() bool { return first.Stats().Released.Load() == n })
	eng.setDelay(0)
	second, err := st.StartWorker(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for id, g := range waitTerminal(t, st, "sk-lull-dev", ids, 30*time.Second) {
		if g.Status != "completed" {
			t.Fatalf("%s ended %s", id, g.Status)
		}
	}
	// Released at once (visibility 0), not after the 10s visibility timeout.
	if el := time.Since(start); el > 8*time.Second {
		t.Fatalf("released generations took %s to complete; release should make them visible at once", el)
	}
	if first.Stats().Completed.Load() != 0 || second.Stats().Completed.Load() != n || eng.requests.Load() != n {
		t.Fatalf("completions: first %d, second %d, engine %d; want 0, %d, %d",
			first.Stats().Completed.Load(), second.Stats().Completed.Load(), eng.requests.Load(), n, n)
	}
}

// Guarantee 2: a duplicate SQS delivery of a completed generation is
// acknowledged without running it again or touching its result.
func TestDuplicateDeliveryDoesNotRerun(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{VLLMURL: eng.URL()})
	id := submit(t, st.URL, "sk-lull-dev", "only once")
	waitTerminal(t, st, "sk-lull-dev", []string{id}, 30*time.Second)
	before, err := st.Store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	job, _ := json.Marshal(lull.JobFor(before))
	q := sqs.New(st.Clients.SQS, st.QueueURL)
	for range 3 {
		if err := q.Send(context.Background(), job, before.Tenant, 0); err != nil {
			t.Fatal(err)
		}
	}
	w := st.Workers()[0]
	waitFor(t, 20*time.Second, "duplicates consumed", func() bool { return w.Stats().Skipped.Load() >= 3 })
	after, err := st.Store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if eng.requests.Load() != 1 || after.Attempts != 1 || after.ResponseKey != before.ResponseKey || !after.CompletedAt.Equal(before.CompletedAt) {
		t.Fatalf("duplicate delivery re-ran: engine %d runs, attempts %d, response %s→%s", eng.requests.Load(), after.Attempts, before.ResponseKey, after.ResponseKey)
	}
	waitFor(t, 10*time.Second, "queue empty", func() bool {
		v, f, err := q.Depth(context.Background())
		return err == nil && v+f == 0
	})
}

// Cancelled and expired generations are never run.
func TestCancelledAndExpiredAreNotRun(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{Workers: -1, VLLMURL: eng.URL()})
	cancelled := submit(t, st.URL, "sk-lull-dev", "cancel me")
	var c struct{ Status string }
	if code := postJSON(t, st.URL+"/v1/generation/"+cancelled+"/cancel", "sk-lull-dev", "", &c); code != 200 || c.Status != "cancelled" {
		t.Fatalf("cancel: %d %v", code, c)
	}
	// An expired generation: stored with a window already past, then enqueued.
	now := time.Now().UTC().Truncate(time.Millisecond)
	g := &lull.Generation{ID: lull.NewID("gen"), Tenant: "dev", Model: simModel, Endpoint: lull.EndpointChat, Status: lull.StatusQueued,
		CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour), Request: json.RawMessage(chatBody(simModel, "too late", 5))}
	if _, _, err := st.Store.Create(context.Background(), g, ""); err != nil {
		t.Fatal(err)
	}
	job, _ := json.Marshal(lull.JobFor(g))
	if err := sqs.New(st.Clients.SQS, st.QueueURL).Send(context.Background(), job, "dev", 0); err != nil {
		t.Fatal(err)
	}
	w, err := st.StartWorker(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := waitTerminal(t, st, "sk-lull-dev", []string{cancelled, g.ID}, 20*time.Second)
	if got[cancelled].Status != "cancelled" || got[g.ID].Status != "expired" || got[g.ID].Error == nil {
		t.Fatalf("statuses: %+v", got)
	}
	waitFor(t, 10*time.Second, "both deliveries handled", func() bool { return w.Stats().Received.Load() >= 2 })
	if eng.started.Load() != 0 {
		t.Fatalf("engine received %d requests for cancelled/expired generations", eng.started.Load())
	}
}

// A request the engine keeps failing ends failed, with the engine's error,
// through the DLQ consumer; one it rejects as invalid fails at once.
func TestEngineFailuresEndFailed(t *testing.T) {
	t.Parallel()
	eng := newEngine(t, vllmsimConfig())
	st := startStack(t, devstack.Config{VLLMURL: eng.URL(), MaxReceives: 2})
	eng.failNext(400, 1)
	rejected := submit(t, st.URL, "sk-lull-dev", "invalid for the engine")
	g := waitTerminal(t, st, "sk-lull-dev", []string{rejected}, 20*time.Second)[rejected]
	if g.Status != "failed" || g.Error == nil || !strings.Contains(g.Error.Message, "injected failure 400") {
		t.Fatalf("rejected: %+v", g)
	}
	eng.failNext(503, 1000)
	flaky := submit(t, st.URL, "sk-lull-dev", "engine down")
	g = waitTerminal(t, st, "sk-lull-dev", []string{flaky}, 90*time.Second)[flaky]
	if g.Status != "failed" || g.Error == nil || g.Error.Code != "engine_error" || !strings.Contains(g.Error.Message, "503") {
		t.Fatalf("flaky: %+v", g)
	}
	eng.failNext(0, 0)
}

// Guarantee 4 end to end: tenant B gets 404 for everything of tenant A's.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	st := startStack(t, devstack.Config{})
	if err := st.AddKey(context.Background(), "sk-b", "tenant-b"); err != nil {
		t.Fatal(err)
	}
	id := submit(t, st.URL, "sk-lull-dev", "mine")
	waitTerminal(t, st, "sk-lull-dev", []string{id}, 30*time.Second)
	if code := getJSON(t, st.URL+"/v1/generation/"+id, "sk-b", nil); code != 404 {
		t.Fatalf("B get A's: %d", code)
	}
	if code := postJSON(t, st.URL+"/v1/generation/"+id+"/cancel", "sk-b", "", nil); code != 404 {
		t.Fatalf("B cancel A's: %d", code)
	}
	var page struct{ Data []any }
	if getJSON(t, st.URL+"/v1/generations", "sk-b", &page); len(page.Data) != 0 {
		t.Fatalf("B lists %d", len(page.Data))
	}
}
